"""The assistant as a multi-tenant service: tenant-scoped repositories over the solution's tables, and the
service functions the API routes call (create an assistant, converse, record and export feedback).

Tenant scoping happens only in the repositories (subclasses of the store's ``TenantRepo``): another tenant's
assistant, session or feedback is reported exactly like a missing one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
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
from tuneforge.store.ids import new_id
from tuneforge.store.repositories import ModelRepo, TenantRepo
from tuneforge.store.solution_tables.assistant import Assistant as AssistantRow
from tuneforge.store.solution_tables.assistant import AssistantFeedback, AssistantSession, AssistantTurn
from tuneforge.tasks import get_task, task_names
from tuneforge.utils.lru import LRUCache

__all__ = ["AssistantCache", "AssistantRepo", "ConversationRepo", "FeedbackRepo", "add_feedback", "create_assistant",
           "delete_assistant", "export_feedback", "send_message", "start_session"]


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


def create_assistant(db: DbSession, *, tenant_id: str, storage: Any, settings: Any, name: str,
                     encoder: str, config: dict[str, Any], intent_model: str | None = None,
                     knowledge_file: str | None = None, knowledge: Sequence[dict[str, Any]] | None = None,
                     articles: Sequence[dict[str, Any]] | None = None,
                     allowed_encoders: Sequence[str] = ()) -> AssistantRow:
    """Index the knowledge base (an uploaded file and/or inline QA rows) with a base encoder into a bundle in
    artifact storage, and record the assistant. The intent model is one of the tenant's fine-tuned
    classification models (trained with the fine-tuning API on past tickets), referenced, not copied."""
    from tuneforge.store.repositories import FileRepo

    cfg = AssistantConfig.parse({**config, "encoder": encoder}, "config")
    if allowed_encoders and encoder not in allowed_encoders:
        raise InvalidRequestError(f"encoder: '{encoder}' is not a base model here (available: "
                                  f"{', '.join(allowed_encoders)}).", param="encoder", code="model_not_found")
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


def load_assistant(db: DbSession, *, tenant_id: str, storage: Any, settings: Any, row: AssistantRow,
                   cache: AssistantCache) -> Assistant:
    def load() -> Assistant:
        intent = None
        if row.intent_model:
            from tuneforge.inference import load_predictor

            intent = load_predictor(_intent_model_folder(db, tenant_id, storage, row.intent_model))
        return Assistant.load(storage.local_path(row.storage_key), resolve_encoder=encoder_resolver(settings),
                              config=AssistantConfig.parse(row.config, "the assistant's config"),
                              intent_model=intent)

    # the key carries the config, so an edited config is never served from a stale copy
    return cache.get(f"{row.id}:{hash(repr(sorted(row.config.items())))}", load)


def start_session(db: DbSession, *, tenant_id: str, assistant_id: str) -> AssistantSession:
    AssistantRepo(db, tenant_id).get(assistant_id)
    s = AssistantSession(id=new_id("sess"), assistant_id=assistant_id, status="open")
    ConversationRepo(db, tenant_id).add(s)
    db.commit()
    return s


def send_message(db: DbSession, *, tenant_id: str, storage: Any, settings: Any, cache: AssistantCache,
                 assistant_id: str, session_id: str, text: str) -> tuple[dict[str, Any], AssistantSession]:
    """Answer ``text`` in the session with the turns so far as context; both turns are stored."""
    if not text.strip():
        raise InvalidRequestError("text: the message is empty.", param="text")
    row = cast(AssistantRow, AssistantRepo(db, tenant_id).get(assistant_id))
    convs = ConversationRepo(db, tenant_id)
    conv = convs.of_assistant(assistant_id, session_id)
    if conv.status == "handed_over":
        raise ConflictError(f"Session '{session_id}' was handed over to a human; start a new session.",
                            param="session_id", code="session_handed_over")
    history = Session(id=conv.id, turns=[{"role": t.role, "text": t.text, **(t.reply or {})}
                                         for t in convs.turns(conv.id)])
    assistant = load_assistant(db, tenant_id=tenant_id, storage=storage, settings=settings, row=row, cache=cache)
    db.rollback()  # no transaction open during the forward passes
    reply = assistant.answer(history, text).to_json()
    conv = convs.of_assistant(assistant_id, session_id, for_update=True)
    convs.add_turn(conv.id, role="user", text=text.strip())
    stored = {k: reply[k] for k in ("intent", "confidence", "handover", "reason")}
    turn = convs.add_turn(conv.id, role="assistant", text=reply["text"], reply=stored)
    if reply["handover"]:
        conv.status = "handed_over"
    db.flush()
    reply["turn"] = turn.seq
    db.commit()
    return reply, conv


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
