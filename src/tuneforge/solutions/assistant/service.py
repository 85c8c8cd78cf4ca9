"""The assistant as a multi-tenant service: tenant-scoped repositories over the solution's tables, and the
service functions the API routes call (create an assistant, converse, hand over to a person and work the
handover queue, record and export feedback).

A handover is an event: the session's status becomes ``handed_over`` (it joins the assistant's handover queue,
:func:`list_handovers`, until a person marks it ``resolved``, :func:`resolve_handover`), the reply turn keeps
its reason (``out_of_scope``, ``low_confidence``, ``nothing_relevant`` ...), and an ``assistant.handover`` record
is logged.

Tenant scoping happens only in the repositories (subclasses of the store's ``TenantRepo``): another tenant's
assistant, session or feedback is reported exactly like a missing one.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from tuneforge.errors import ConflictError, DataError, DataProblem, InvalidRequestError, NotFoundError
from tuneforge.solutions.assistant.assistant import (
    Assistant,
    AssistantConfig,
    Session,
    build_bundle,
    encoder_resolver,
)
from tuneforge.solutions.assistant.feedback import Feedback, export_training_rows
from tuneforge.solutions.assistant.knowledge import (
    Passage,
    load_knowledge,
    passages_from_article,
    passages_from_rows,
)
from tuneforge.solutions.assistant.writer import ServedWriter, Writer
from tuneforge.store.ids import new_id
from tuneforge.store.repositories import ModelRepo, TenantRepo
from tuneforge.store.solution_tables.assistant import Assistant as AssistantRow
from tuneforge.store.solution_tables.assistant import AssistantFeedback, AssistantSession, AssistantTurn
from tuneforge.tasks import get_task, task_names
from tuneforge.utils.lru import LRUCache

__all__ = ["AssistantCache", "AssistantRepo", "ConversationRepo", "FeedbackRepo", "add_feedback", "create_assistant",
           "delete_assistant", "export_feedback", "list_handovers", "resolve_handover", "send_message",
           "start_session"]

log = logging.getLogger(__name__)

#: session statuses: answering, waiting in the handover queue, taken care of by a person
OPEN, HANDED_OVER, RESOLVED = "open", "handed_over", "resolved"


class AssistantRepo(TenantRepo[Any]):
    model = AssistantRow
    noun = "assistant"
    param = "assistant_id"


class ConversationRepo(TenantRepo[Any]):
    """The tenant's conversations (sessions) and their turns."""

    model = AssistantSession
    noun = "session"
    param = "session_id"

    def of_assistant(self, assistant_id: str, session_id: str, *, for_update: bool = False) -> AssistantSession:
        s = cast(AssistantSession, self.get(session_id, for_update=for_update))
        if s.assistant_id != assistant_id:
            raise NotFoundError(f"No such session: '{session_id}'", param=self.param)
        return s

    def with_status(self, assistant_id: str, status: str, *, limit: int = 100) -> list[AssistantSession]:
        """The assistant's sessions in ``status``, oldest first (a queue is worked from its front)."""
        return list(self.session.scalars(self.select().where(AssistantSession.assistant_id == assistant_id,
                                                             AssistantSession.status == status)
                                         .order_by(AssistantSession.created_at, AssistantSession.id).limit(limit)))

    def turns_of(self, session_ids: Sequence[str]) -> dict[str, list[AssistantTurn]]:
        """The turns of several sessions, in order, by session."""
        out: dict[str, list[AssistantTurn]] = {sid: [] for sid in session_ids}
        if not session_ids:
            return out
        for t in self.session.scalars(self.select(of=AssistantTurn).where(AssistantTurn.session_id.in_(session_ids))
                                      .order_by(AssistantTurn.session_id, AssistantTurn.seq)):
            out[t.session_id].append(t)
        return out

    def turns(self, session_id: str) -> list[AssistantTurn]:
        return list(self.session.scalars(self.select(of=AssistantTurn).where(AssistantTurn.session_id == session_id)
            .order_by(AssistantTurn.seq)))

    def add_turn(self, session_id: str, *, role: str, text: str, reply: dict[str, Any] | None = None
                 ) -> AssistantTurn:
        seq = int(self.session.scalar(select(func.coalesce(func.max(AssistantTurn.seq), 0)).where(
            AssistantTurn.session_id == session_id)) or 0) + 1
        turn = AssistantTurn(tenant_id=self.tenant_id, session_id=session_id, seq=seq, role=role, text=text,
                             reply=reply)
        self.session.add(turn)
        return turn


class FeedbackRepo(TenantRepo[Any]):
    model = AssistantFeedback
    noun = "feedback"
    param = "feedback_id"

    def of_assistant(self, assistant_id: str) -> list[AssistantFeedback]:
        return list(self.session.scalars(self.select().where(AssistantFeedback.assistant_id == assistant_id)
                                         .order_by(AssistantFeedback.created_at, AssistantFeedback.id)))


class AssistantCache(LRUCache[Assistant]):
    """Loaded assistants (encoders and models stay in memory between messages), ``capacity`` of them, least
    recently used out. Keys are ``<assistant id>:<config hash>``."""

    def __init__(self, capacity: int = 4) -> None:
        super().__init__(capacity)

    def evict(self, key: str) -> None:
        """Forget the entry ``key``, or every loaded copy of the assistant when ``key`` is an assistant id."""
        self.evict_where(lambda k: k == key or k.split(":", 1)[0] == key)


def _intent_model_folder(db: DbSession, tenant_id: str, storage: Any, model_id: str) -> Path:
    m = ModelRepo(db, tenant_id).get(model_id)
    if m.task not in task_names() or not get_task(m.task).sequence_level:  # an intent per message
        raise InvalidRequestError(f"intent_model: '{model_id}' is a {m.task} model; the assistant needs an intent "
                                  "classifier (a classification model).", param="intent_model",
                                  code="wrong_task")
    return Path(storage.local_path(m.storage_key))


def _writer_model_folder(db: DbSession, tenant_id: str, storage: Any, model_id: str) -> Path:
    m = ModelRepo(db, tenant_id).get(model_id)
    if m.task not in task_names() or not get_task(m.task).generative:
        raise InvalidRequestError(f"config.writer: '{model_id}' is a {m.task} model; the writer of generated answers "
                                  "must be a chat model (a fine-tuned generation model or a base chat model).",
                                  param="config.writer", code="wrong_task")
    return Path(storage.local_path(m.storage_key))


def _check_writer(db: DbSession, tenant_id: str, storage: Any, cfg: AssistantConfig,
                  chat_models: Sequence[str]) -> None:
    if cfg.writer is None:
        if cfg.answer_mode == "generate":
            bases = ", ".join(chat_models) or "none installed"
            raise InvalidRequestError("config.writer: answer_mode 'generate' needs a writer: one of your fine-tuned "
                                      f"generation models or a base chat model ({bases}).", param="config.writer")
        return
    if cfg.writer in chat_models:
        return
    if cfg.writer.startswith("ft:"):
        _writer_model_folder(db, tenant_id, storage, cfg.writer)
        return
    raise InvalidRequestError(f"config.writer: '{cfg.writer}' is not a chat model here (base chat models: "
                              f"{', '.join(chat_models) or 'none'}; or one of your fine-tuned generation models).",
                              param="config.writer", code="model_not_found")


def create_assistant(db: DbSession, *, tenant_id: str, storage: Any, settings: Any, name: str,
                     encoder: str, config: dict[str, Any], intent_model: str | None = None,
                     knowledge_file: str | None = None, knowledge: Sequence[dict[str, Any]] | None = None,
                     articles: Sequence[dict[str, Any]] | None = None,
                     allowed_encoders: Sequence[str] = (), chat_models: Sequence[str] = ()) -> AssistantRow:
    """Index the knowledge base (an uploaded file and/or inline QA rows) with a base encoder into a bundle in
    artifact storage, and record the assistant. The intent model is one of the tenant's fine-tuned
    classification models (trained with the fine-tuning API on past tickets), referenced, not copied; so is the
    writer of generated answers (``config.writer``: one of the tenant's fine-tuned generation models, or one of
    the base ``chat_models``)."""
    from tuneforge.store.repositories import FileRepo

    cfg = AssistantConfig.parse({**config, "encoder": encoder}, "config")
    if allowed_encoders and encoder not in allowed_encoders:
        raise InvalidRequestError(f"encoder: '{encoder}' is not a base model here (available: "
                                  f"{', '.join(allowed_encoders)}).", param="encoder", code="model_not_found")
    _check_writer(db, tenant_id, storage, cfg, chat_models)
    if knowledge_file is None and not knowledge and not articles:
        raise InvalidRequestError("Give the knowledge base: knowledge_file (an uploaded file id), knowledge "
                                  "(a list of {question, answer, intent}) or articles (Markdown or HTML).",
                                  param="knowledge_file")
    passages: list[Passage] = []
    if knowledge_file is not None:
        f = FileRepo(db, tenant_id).get(knowledge_file)
        path = Path(storage.local_path(f.storage_key))
        try:
            passages += load_knowledge([path])
        except DataError as e:  # name the upload, not the storage path
            raise DataError([DataProblem(f.filename, p.line, p.field, p.message, p.hint) for p in e.problems],
                            hint=e.hint) from None
    if knowledge:
        passages += passages_from_rows(list(knowledge), "knowledge")
    for i, art in enumerate(articles or []):
        passages += passages_from_article(str(art["text"]), title=str(art.get("title") or ""),
                                          fmt=str(art.get("format") or "markdown"),
                                          source=str(art.get("title") or f"article {i + 1}"))
    if not passages:
        raise InvalidRequestError("The knowledge base holds no text to answer from.", param="knowledge")
    intent_folder = _intent_model_folder(db, tenant_id, storage, intent_model) if intent_model else None
    labels: list[str] = []
    if intent_folder is not None:
        from tuneforge.runs import read_manifest

        labels = list(read_manifest(intent_folder).get("labels", []))
    unknown = sorted(set(cfg.handover_intents) - set(labels) - {p.intent for p in passages if p.intent})
    if unknown and (labels or any(p.intent for p in passages)):
        raise InvalidRequestError(f"config.handover_intents: {', '.join(unknown)} are not intents of the model or "
                                  "the knowledge base.", param="config.handover_intents")
    db.rollback()  # hold no transaction while embedding
    aid = new_id("asst")
    key = f"solutions/assistant/{tenant_id}/{aid}"
    work = Path(tempfile.mkdtemp(prefix="assistant-", dir=_work_dir(settings)))
    try:
        folder = build_bundle(work / "bundle", passages=passages, config=cfg,
                              resolve_encoder=encoder_resolver(settings),
                              extra={"labels": labels, "intent_model": intent_model})
        storage.put_dir(key, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row = AssistantRow(id=aid, name=name, storage_key=key, intent_model=intent_model, encoder=encoder,
                       config=cfg.model_dump(mode="json"), passages=len(passages))
    AssistantRepo(db, tenant_id).add(row)
    db.commit()
    return row


def _work_dir(settings: Any) -> Path | None:
    d = getattr(settings, "data_dir", None)
    if d is None:
        return None
    p = Path(d) / "tmp"
    p.mkdir(parents=True, exist_ok=True)
    return p


def delete_assistant(db: DbSession, *, tenant_id: str, storage: Any, assistant_id: str) -> AssistantRow:
    row = cast(AssistantRow, AssistantRepo(db, tenant_id).get(assistant_id))
    db.delete(row)
    db.commit()
    storage.delete(row.storage_key)
    return row


def _served_writer(db: DbSession, tenant_id: str, storage: Any, settings: Any, inference: Any, spec: str
                   ) -> Callable[[], Writer]:
    """The writer ``spec`` (a base chat model or the tenant's fine-tuned generation model) served by the chat
    models' batcher: a LoRA writer shares its base model's one loaded copy with chat completions."""
    if spec.startswith("ft:"):
        folder = _writer_model_folder(db, tenant_id, storage, spec)
        return lambda: ServedWriter(lambda: inference.chat_run(folder, cache_dir=settings.cache_dir))
    local = getattr(settings, "base_models", {}) or {}
    if spec in local:
        path = Path(local[spec])
    else:
        from tuneforge.models.registry import resolve_base_model

        path = resolve_base_model(spec, settings.cache_dir).path
    return lambda: ServedWriter(lambda: inference.chat_base(path))


def load_assistant(db: DbSession, *, tenant_id: str, storage: Any, settings: Any, row: AssistantRow,
                   cache: AssistantCache, inference: Any = None) -> Assistant:
    def load() -> Assistant:
        intent = None
        if row.intent_model:
            from tuneforge.inference import load_predictor

            intent = load_predictor(_intent_model_folder(db, tenant_id, storage, row.intent_model))
        cfg = AssistantConfig.parse(row.config, "the assistant's config")
        writer = None
        if cfg.writer and inference is not None:
            writer = _served_writer(db, tenant_id, storage, settings, inference, cfg.writer)
        return Assistant.load(storage.local_path(row.storage_key), resolve_encoder=encoder_resolver(settings),
                              config=cfg, intent_model=intent, writer=writer, settings=settings)

    # the key carries the config, so an edited config is never served from a stale copy
    return cache.get(f"{row.id}:{hash(repr(sorted(row.config.items())))}", load)


def start_session(db: DbSession, *, tenant_id: str, assistant_id: str) -> AssistantSession:
    AssistantRepo(db, tenant_id).get(assistant_id)
    s = AssistantSession(id=new_id("sess"), assistant_id=assistant_id, status=OPEN)
    ConversationRepo(db, tenant_id).add(s)
    db.commit()
    return s


def send_message(db: DbSession, *, tenant_id: str, storage: Any, settings: Any, cache: AssistantCache,
                 assistant_id: str, session_id: str, text: str, inference: Any = None
                 ) -> tuple[dict[str, Any], AssistantSession]:
    """Answer ``text`` in the session with the turns so far as context; both turns are stored. A handover puts
    the session in the handover queue (status ``handed_over``)."""
    if not text.strip():
        raise InvalidRequestError("text: the message is empty.", param="text")
    row = cast(AssistantRow, AssistantRepo(db, tenant_id).get(assistant_id))
    convs = ConversationRepo(db, tenant_id)
    conv = convs.of_assistant(assistant_id, session_id)
    if conv.status != OPEN:
        raise ConflictError(f"Session '{session_id}' was handed over to a human; start a new session.",
                            param="session_id", code="session_handed_over")
    history = Session(id=conv.id, turns=[{"role": t.role, "text": t.text, **(t.reply or {})}
                                         for t in convs.turns(conv.id)])
    assistant = load_assistant(db, tenant_id=tenant_id, storage=storage, settings=settings, row=row, cache=cache,
                               inference=inference)
    db.rollback()  # no transaction open during the forward passes
    reply = assistant.answer(history, text).to_json()
    conv = convs.of_assistant(assistant_id, session_id, for_update=True)
    convs.add_turn(conv.id, role="user", text=text.strip())
    stored = {k: reply[k] for k in ("intent", "confidence", "handover", "reason")}
    if reply.get("best_intent"):
        stored["best_intent"] = reply["best_intent"]
    if reply.get("citations"):
        stored["citations"] = [c["id"] for c in reply["citations"]]
    turn = convs.add_turn(conv.id, role="assistant", text=reply["text"], reply=stored)
    if reply["handover"]:
        conv.status = HANDED_OVER
    db.flush()
    reply["turn"] = turn.seq
    db.commit()
    if reply["handover"]:
        log.info("assistant.handover tenant=%s assistant=%s session=%s reason=%s intent=%s", tenant_id,
                 assistant_id, conv.id, reply["reason"], reply["intent"],
                 extra={"event": "assistant.handover", "tenant_id": tenant_id, "assistant_id": assistant_id,
                        "session_id": conv.id, "reason": reply["reason"], "intent": reply["intent"],
                        "best_intent": reply.get("best_intent")})
    return reply, conv


def _handover_item(conv: AssistantSession, turns: Sequence[AssistantTurn]) -> dict[str, Any]:
    handed = next((t for t in reversed(turns) if t.role == "assistant" and (t.reply or {}).get("handover")), None)
    info = (handed.reply or {}) if handed is not None else {}
    message = next((t.text for t in reversed(turns) if t.role == "user" and (handed is None or t.seq < handed.seq)),
                   None)
    return {"session_id": conv.id, "assistant_id": conv.assistant_id, "status": conv.status,
            "reason": info.get("reason"), "intent": info.get("intent"), "best_intent": info.get("best_intent"),
            "confidence": info.get("confidence"), "message": message, "turns": len(turns),
            "handed_over_at": (handed.created_at if handed is not None else conv.created_at)}


def list_handovers(db: DbSession, *, tenant_id: str, assistant_id: str, status: str = HANDED_OVER,
                   limit: int = 100) -> list[dict[str, Any]]:
    """The handover queue: the assistant's conversations handed to a person (``handed_over``, oldest first) or
    already taken care of (``resolved``), each with the reason, the intent (and the best known one of an
    out-of-scope message) and the customer's last message."""
    if status not in (HANDED_OVER, RESOLVED):
        raise InvalidRequestError(f"status: '{status}' is not a handover status ({HANDED_OVER} or {RESOLVED}).",
                                  param="status")
    AssistantRepo(db, tenant_id).get(assistant_id)
    convs = ConversationRepo(db, tenant_id)
    sessions = convs.with_status(assistant_id, status, limit=limit)
    turns = convs.turns_of([c.id for c in sessions])
    return [_handover_item(c, turns[c.id]) for c in sessions]


def resolve_handover(db: DbSession, *, tenant_id: str, assistant_id: str, session_id: str) -> dict[str, Any]:
    """A person took care of the handed-over conversation: it leaves the queue (status ``resolved``)."""
    AssistantRepo(db, tenant_id).get(assistant_id)
    convs = ConversationRepo(db, tenant_id)
    conv = convs.of_assistant(assistant_id, session_id, for_update=True)
    if conv.status != HANDED_OVER:
        raise ConflictError(f"Session '{session_id}' is {conv.status}, not waiting in the handover queue.",
                            param="session_id", code="not_handed_over")
    conv.status = RESOLVED
    db.flush()
    item = _handover_item(conv, convs.turns(conv.id))
    db.commit()
    return item


def add_feedback(db: DbSession, *, tenant_id: str, assistant_id: str, helpful: bool, message: str | None = None,
                 session_id: str | None = None, turn: int | None = None, correct_intent: str | None = None,
                 correct_answer: str | None = None) -> AssistantFeedback:
    """Feedback on an answer: name the reply by ``session_id`` and ``turn`` (its number in the session), or give
    the ``message`` itself."""
    AssistantRepo(db, tenant_id).get(assistant_id)
    reply_text = intent = None
    if session_id is not None:
        convs = ConversationRepo(db, tenant_id)
        convs.of_assistant(assistant_id, session_id)
        turns = convs.turns(session_id)
        if turn is not None:
            by_seq = {t.seq: t for t in turns}
            answer = by_seq.get(turn)
            if answer is None or answer.role != "assistant":
                raise InvalidRequestError(f"turn: session '{session_id}' has no reply number {turn}.",
                                          param="turn")
            question = by_seq.get(turn - 1)
            message = message or (question.text if question is not None else None)
            reply_text, intent = answer.text, (answer.reply or {}).get("intent")
    if not message or not message.strip():
        raise InvalidRequestError("message: give the customer's message, or session_id and turn of the reply.",
                                  param="message")
    if correct_answer is not None and not correct_answer.strip():
        raise InvalidRequestError("correct_answer: empty; leave it out or write the answer.", param="correct_answer")
    fb = AssistantFeedback(id=new_id("fb"), assistant_id=assistant_id, session_id=session_id, message=message.strip(),
                           reply=reply_text, intent=intent, helpful=helpful, correct_intent=correct_intent,
                           correct_answer=correct_answer)
    FeedbackRepo(db, tenant_id).add(fb)
    db.commit()
    return fb


def export_feedback(db: DbSession, *, tenant_id: str, assistant_id: str) -> dict[str, list[dict[str, Any]]]:
    AssistantRepo(db, tenant_id).get(assistant_id)
    rows = FeedbackRepo(db, tenant_id).of_assistant(assistant_id)
    return export_training_rows(Feedback(message=r.message, helpful=r.helpful, intent=r.intent, reply=r.reply,
                                         correct_intent=r.correct_intent, correct_answer=r.correct_answer,
                                         session_id=r.session_id, created_at=r.created_at.isoformat())
                                for r in rows)
