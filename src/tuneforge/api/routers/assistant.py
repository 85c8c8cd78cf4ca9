"""/v1/solutions/assistant: API routes of :mod:`tuneforge.solutions.assistant`.

Assistants are configured with a ``train`` key (create, delete, export feedback) and used with a ``predict`` key
(sessions, messages, the handover queue, feedback). Every object is the tenant's own; another tenant's ids
answer 404.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tuneforge.api.deps import CurrentPrincipal, PredictPrincipal, SessionDep, SettingsDep, StateDep, TrainPrincipal
from tuneforge.api.schemas import ListPublic
from tuneforge.jobs.service import available_base_models, chat_base_models
from tuneforge.solutions.assistant import service
from tuneforge.store.solution_tables.assistant import Assistant as AssistantRow
from tuneforge.store.solution_tables.assistant import AssistantFeedback, AssistantSession

router = APIRouter(prefix="/v1/solutions/assistant", tags=["solutions"])


class KnowledgeRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field("", max_length=2000)
    answer: str = Field(min_length=1, max_length=20000)
    intent: str | None = Field(None, max_length=255)
    title: str | None = Field(None, max_length=500)


class ArticleRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field("", max_length=500)
    text: str = Field(min_length=1, max_length=1_000_000)
    format: Literal["markdown", "html"] = "markdown"


class AssistantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    knowledge_file: str | None = Field(None, description="An uploaded file (/v1/files, purpose fine-tune): QA pairs "
                                                          "as JSONL, CSV or JSON (question, answer, intent).")
    knowledge: list[KnowledgeRow] | None = Field(None, max_length=5000, description="QA pairs given inline.")
    articles: list[ArticleRow] | None = Field(None, max_length=500, description="Help articles (Markdown or "
                                                                                 "HTML), split into passages.")
    intent_model: str | None = Field(None, description="One of your fine-tuned classification models, trained on "
                                                       "past tickets labelled with intents.")
    encoder: str = Field("minilm", description="The base model that embeds passages and messages.")
    config: dict[str, Any] = Field(default_factory=dict, description="threshold, handover_intents, "
                                                                     "handover_phrases, templates, top_k; "
                                                                     "answer_mode 'generate' with writer (one of "
                                                                     "your fine-tuned generation models or a base "
                                                                     "chat model) for generated, cited answers ...")


class AssistantPublic(BaseModel):
    id: str
    object: Literal["assistant"] = "assistant"
    name: str
    created: int
    intent_model: str | None
    encoder: str
    passages: int
    config: dict[str, Any]

    @classmethod
    def of(cls, a: AssistantRow) -> AssistantPublic:
        return cls(id=a.id, name=a.name, created=int(a.created_at.timestamp()), intent_model=a.intent_model,
                   encoder=a.encoder, passages=a.passages, config=a.config)


class SessionPublic(BaseModel):
    id: str
    object: Literal["assistant.session"] = "assistant.session"
    assistant_id: str
    status: str
    created: int
    turns: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def of(cls, s: AssistantSession, turns: list[dict[str, Any]] | None = None) -> SessionPublic:
        return cls(id=s.id, assistant_id=s.assistant_id, status=s.status, created=int(s.created_at.timestamp()),
                   turns=turns or [])


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=4000)


class ReplyPublic(BaseModel):
    object: Literal["assistant.reply"] = "assistant.reply"
    session_id: str
    turn: int
    text: str
    intent: str | None
    confidence: float
    handover: bool
    reason: str
    passages: list[dict[str, Any]]
    answer_span: dict[str, Any] | None = None
    used_context: bool = False
    transcript: list[dict[str, str]] | None = None
    citations: list[dict[str, Any]] = Field(default_factory=list, description="A generated answer's citations: "
                                                                                "n (its [n] in the text) and the "
                                                                                "passage (id, title, source ...).")
    best_intent: str | None = Field(None, description="An out-of-scope message: the best known intent.")


class HandoverPublic(BaseModel):
    """A conversation handed to a person: an item of the handover queue."""

    object: Literal["assistant.handover"] = "assistant.handover"
    session_id: str
    assistant_id: str
    status: Literal["handed_over", "resolved"]
    reason: str | None
    intent: str | None
    best_intent: str | None
    confidence: float | None
    message: str | None
    turns: int
    handed_over_at: int

    @classmethod
    def of(cls, item: dict[str, Any]) -> HandoverPublic:
        return cls(**{**item, "handed_over_at": int(item["handed_over_at"].timestamp())})


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    helpful: bool
    session_id: str | None = None
    turn: int | None = Field(None, ge=1, description="The reply's number in the session (ReplyPublic.turn).")
    message: str | None = Field(None, max_length=4000)
    correct_intent: str | None = Field(None, max_length=255)
    correct_answer: str | None = Field(None, max_length=20000)


class FeedbackPublic(BaseModel):
    id: str
    object: Literal["assistant.feedback"] = "assistant.feedback"
    assistant_id: str
    session_id: str | None
    message: str
    reply: str | None
    intent: str | None
    helpful: bool
    correct_intent: str | None
    correct_answer: str | None
    created: int

    @classmethod
    def of(cls, f: AssistantFeedback) -> FeedbackPublic:
        return cls(id=f.id, assistant_id=f.assistant_id, session_id=f.session_id, message=f.message, reply=f.reply,
                   intent=f.intent, helpful=f.helpful, correct_intent=f.correct_intent,
                   correct_answer=f.correct_answer, created=int(f.created_at.timestamp()))


class FeedbackExport(BaseModel):
    object: Literal["assistant.feedback_export"] = "assistant.feedback_export"
    intents: list[dict[str, Any]]
    knowledge: list[dict[str, Any]]


def _cache(request: Request) -> service.AssistantCache:
    cache = getattr(request.app.state, "solution_assistants", None)
    if cache is None:
        cache = service.AssistantCache()
        request.app.state.solution_assistants = cache
    return cache


@router.post("/assistants", response_model=AssistantPublic, summary="Create an assistant")
def create_assistant(body: AssistantCreate, principal: TrainPrincipal, session: SessionDep, state: StateDep,
                     settings: SettingsDep) -> AssistantPublic:
    row = service.create_assistant(
        session, tenant_id=principal.tenant_id, storage=state.storage, settings=settings, name=body.name,
        encoder=body.encoder, config=body.config, intent_model=body.intent_model,
        knowledge_file=body.knowledge_file,
        knowledge=[k.model_dump() for k in body.knowledge] if body.knowledge else None,
        articles=[a.model_dump() for a in body.articles] if body.articles else None,
        allowed_encoders=available_base_models(settings), chat_models=chat_base_models(settings))
    return AssistantPublic.of(row)


@router.get("/assistants", response_model=ListPublic, summary="List assistants")
def list_assistants(principal: CurrentPrincipal, session: SessionDep, after: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=100)] = 20) -> ListPublic:
    page = service.AssistantRepo(session, principal.tenant_id).list(after=after, limit=limit)
    return ListPublic.of([AssistantPublic.of(a) for a in page.data], page.has_more)


@router.get("/assistants/{assistant_id}", response_model=AssistantPublic, summary="Retrieve an assistant")
def retrieve_assistant(assistant_id: str, principal: CurrentPrincipal, session: SessionDep) -> AssistantPublic:
    return AssistantPublic.of(service.AssistantRepo(session, principal.tenant_id).get(assistant_id))


@router.delete("/assistants/{assistant_id}", summary="Delete an assistant, its sessions and feedback")
def delete_assistant(request: Request, assistant_id: str, principal: TrainPrincipal, session: SessionDep,
                     state: StateDep) -> dict[str, Any]:
    row = service.delete_assistant(session, tenant_id=principal.tenant_id, storage=state.storage,
                                   assistant_id=assistant_id)
    _cache(request).evict(row.id)
    return {"id": row.id, "object": "assistant", "deleted": True}


@router.post("/assistants/{assistant_id}/sessions", response_model=SessionPublic, summary="Start a conversation")
def start_session(assistant_id: str, principal: PredictPrincipal, session: SessionDep) -> SessionPublic:
    return SessionPublic.of(service.start_session(session, tenant_id=principal.tenant_id, assistant_id=assistant_id))


@router.get("/assistants/{assistant_id}/sessions/{session_id}", response_model=SessionPublic,
            summary="A conversation and its turns")
def retrieve_session(assistant_id: str, session_id: str, principal: PredictPrincipal,
                     session: SessionDep) -> SessionPublic:
    convs = service.ConversationRepo(session, principal.tenant_id)
    conv = convs.of_assistant(assistant_id, session_id)
    turns = [{"turn": t.seq, "role": t.role, "text": t.text, **(t.reply or {})} for t in convs.turns(conv.id)]
    return SessionPublic.of(conv, turns)


@router.post("/assistants/{assistant_id}/sessions/{session_id}/messages", response_model=ReplyPublic,
             summary="Send a customer message; get the reply or a handover")
def send_message(assistant_id: str, session_id: str, body: MessageCreate, principal: PredictPrincipal,
                 session: SessionDep, state: StateDep, settings: SettingsDep, request: Request) -> ReplyPublic:
    reply, conv = service.send_message(session, tenant_id=principal.tenant_id, storage=state.storage,
                                       settings=settings, cache=_cache(request), assistant_id=assistant_id,
                                       session_id=session_id, text=body.text, inference=state.inference)
    return ReplyPublic(session_id=conv.id, **reply)


@router.get("/assistants/{assistant_id}/handovers", response_model=ListPublic, summary="The handover queue")
def list_handovers(assistant_id: str, principal: PredictPrincipal, session: SessionDep,
                   status: Literal["handed_over", "resolved"] = "handed_over",
                   limit: Annotated[int, Query(ge=1, le=100)] = 100) -> ListPublic:
    """Conversations the assistant handed to a person (oldest first), with the reason (``out_of_scope``,
    ``low_confidence``, ``nothing_relevant``, ``asked_for_human`` ...) and the customer's last message;
    ``status=resolved`` lists those already taken care of."""
    items = service.list_handovers(session, tenant_id=principal.tenant_id, assistant_id=assistant_id, status=status,
                                   limit=limit)
    return ListPublic.of([HandoverPublic.of(i) for i in items])


@router.post("/assistants/{assistant_id}/handovers/{session_id}/resolve", response_model=HandoverPublic,
             summary="Take a conversation off the handover queue")
def resolve_handover(assistant_id: str, session_id: str, principal: PredictPrincipal,
                     session: SessionDep) -> HandoverPublic:
    return HandoverPublic.of(service.resolve_handover(session, tenant_id=principal.tenant_id,
                                                      assistant_id=assistant_id, session_id=session_id))


@router.post("/assistants/{assistant_id}/feedback", response_model=FeedbackPublic, summary="Feedback on an answer")
def add_feedback(assistant_id: str, body: FeedbackCreate, principal: PredictPrincipal,
                 session: SessionDep) -> FeedbackPublic:
    fb = service.add_feedback(session, tenant_id=principal.tenant_id, assistant_id=assistant_id,
                              helpful=body.helpful, message=body.message, session_id=body.session_id, turn=body.turn,
                              correct_intent=body.correct_intent, correct_answer=body.correct_answer)
    return FeedbackPublic.of(fb)


@router.get("/assistants/{assistant_id}/feedback", response_model=ListPublic, summary="List feedback")
def list_feedback(assistant_id: str, principal: TrainPrincipal, session: SessionDep) -> ListPublic:
    service.AssistantRepo(session, principal.tenant_id).get(assistant_id)
    rows = service.FeedbackRepo(session, principal.tenant_id).of_assistant(assistant_id)
    return ListPublic.of([FeedbackPublic.of(f) for f in rows])


@router.get("/assistants/{assistant_id}/feedback/export", response_model=FeedbackExport,
            summary="Feedback as training rows for the next model")
def export_feedback(assistant_id: str, principal: TrainPrincipal, session: SessionDep) -> FeedbackExport:
    """``intents``: {text, label} rows for the next intent classifier (corrected intents, and confirmed ones of
    helpful answers); ``knowledge``: {question, answer, intent} rows for the knowledge base (corrected answers)."""
    return FeedbackExport(**service.export_feedback(session, tenant_id=principal.tenant_id,
                                                    assistant_id=assistant_id))
