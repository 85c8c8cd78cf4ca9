"""The assistant: an intent classifier, a retrieval index over the knowledge base, optional extractive QA, and
the rules that decide between answering and handing over to a human.

A bundle is a folder::

    assistant.json   config (threshold, handover intents, templates ...), encoder, labels, calibration, stats
    passages.jsonl   the knowledge base as passages (QA pairs, article blocks, past tickets)
    index/           the vector index of the passages (vectors.npy + index.json)
    intent/          a TuneForge classification run folder (optional: without it the intent is retrieval's)
    qa/              a TuneForge QA run folder (optional: points at the answer span inside the passage)
    feedback.jsonl   feedback given from the CLI (the API keeps it in the database)
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneforge import runs
from tuneforge.errors import ConfigError, DataError, DataProblem, ModelFormatError, RunError
from tuneforge.solutions.assistant.index import VectorIndex
from tuneforge.solutions.assistant.knowledge import Passage, read_passages, write_passages
from tuneforge.utils.fs import atomic_dir, atomic_write_json, storage_errors

__all__ = ["BUNDLE_FILE", "Assistant", "AssistantConfig", "Reply", "Session", "build_bundle",
           "calibrate_threshold", "embed_passages", "encoder_resolver", "evaluate_assistant",
           "score_predictions"]

BUNDLE_FILE = "assistant.json"
FORMAT = "tuneforge-assistant"
VERSION = 1
DEFAULT_HANDOVER_PHRASES = ["talk to a human", "speak to a human", "real person", "human agent", "talk to an agent",
                            "speak to an agent", "customer service representative", "live agent", "talk to someone"]

EncoderResolver = Callable[[str], Path]


class AssistantConfig(BaseModel):
    """How the assistant decides; stored in the bundle's assistant.json and editable per deployment."""

    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(0.5, ge=0, le=1, description="Below this confidence the assistant hands over.")
    min_similarity: float = Field(0.0, ge=-1, le=1,
                                  description="Hand over when no passage or past ticket is at least this similar to "
                                              "the message: it is unlike anything seen (0: off).")
    handover_intents: list[str] = Field(default_factory=list,
                                        description="Intents always handed to a human (talk to a human, complaints).")
    handover_phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_HANDOVER_PHRASES),
                                        description="A message containing one of these asks for a human.")
    templates: dict[str, str] = Field(default_factory=dict, description="The reply for an intent.")
    top_k: int = Field(5, ge=1, le=100, description="Passages retrieved per message.")
    context_turns: int = Field(2, ge=0, le=10,
                               description="Earlier user turns read with a short or unclear follow-up.")
    follow_up_words: int = Field(6, ge=0, le=100,
                                 description="A message of at most this many words may be a follow-up.")
    encoder: str = Field("minilm", description="Retrieval encoder: a base model name or folder, or 'intent' for "
                                               "the fine-tuned intent model's encoder.")

    @classmethod
    def parse(cls, values: dict[str, Any], source: str = "the assistant config") -> AssistantConfig:
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            raise ConfigError([f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors()],
                              hint=f"Fix these fields of {source}.") from None


@dataclass
class Session:
    """A conversation: its turns (``role`` user or assistant, ``text``, and for replies ``intent``,
    ``confidence``, ``handover``)."""

    id: str = ""
    turns: list[dict[str, Any]] = field(default_factory=list)

    def user_turns(self) -> list[str]:
        return [t["text"] for t in self.turns if t.get("role") == "user"]

    def last_reply(self) -> dict[str, Any] | None:
        return next((t for t in reversed(self.turns) if t.get("role") == "assistant"), None)

    def transcript(self) -> list[dict[str, str]]:
        return [{"role": str(t["role"]), "text": str(t["text"])} for t in self.turns]


@dataclass
class Reply:
    """The assistant's answer to one message."""

    text: str
    intent: str | None
    confidence: float
    handover: bool
    reason: str
    passages: list[dict[str, Any]] = field(default_factory=list)
    answer_span: dict[str, Any] | None = None
    used_context: bool = False
    transcript: list[dict[str, str]] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def encoder_resolver(settings: Any = None) -> EncoderResolver:
    """Turns a base model name (or folder) into its folder; names in ``settings.base_models`` come first."""
    from tuneforge.models.registry import resolve_base_model
    from tuneforge.settings import Settings

    s = settings or Settings()

    def resolve(name: str) -> Path:
        local = getattr(s, "base_models", {}) or {}
        if name in local:
            return Path(local[name])
        return resolve_base_model(name, s.cache_dir).path

    return resolve


def _load_embedder(path: Path) -> Any:
    from tuneforge.inference.embeddings import Embedder

    return Embedder(path, max_length=128)


def embed_passages(embedder: Any, passages: Sequence[Passage]) -> np.ndarray:
    return np.asarray(embedder.embed([p.text for p in passages]), dtype=np.float32)


def calibrate_threshold(confidence: Sequence[float], correct: Sequence[bool], *, target_precision: float = 0.95,
                        ) -> float:
    """The lowest confidence threshold at which the answered messages (confidence ≥ threshold) are correct at
    least ``target_precision`` of the time; answering as much as that precision allows."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if len(conf) == 0:
        return 0.5
    order = np.argsort(-conf, kind="stable")
    cum = np.cumsum(ok[order]) / np.arange(1, len(conf) + 1)
    good = np.nonzero(cum >= target_precision)[0]
    if len(good) == 0:
        return float(min(1.0, conf.max() + 1e-6))
    cut = good[-1]  # answer the most messages that still meet the precision
    return float(round(conf[order][cut], 6))


class Assistant:
    """A loaded bundle that answers messages. Load with :meth:`load`."""

    def __init__(self, folder: Path, info: dict[str, Any], config: AssistantConfig, passages: list[Passage],
                 index: VectorIndex, embedder: Any, intent_model: Any = None, qa_model: Any = None) -> None:
        self.folder = folder
        self.info = info
        self.config = config
        self.passages = passages
        self.index = index
        self.embedder = embedder
        self.intent_model = intent_model
        self.qa_model = qa_model
        self._by_intent: dict[str, list[int]] = {}
        for i, p in enumerate(passages):
            if p.intent:
                self._by_intent.setdefault(p.intent, []).append(i)
        self._answers: dict[str, str] = {}
        for p in passages:  # the first KB answer written for an intent is its default reply
            if p.intent and p.kind != "ticket" and p.intent not in self._answers:
                self._answers[p.intent] = p.answer

    # --- loading -------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path, *, resolve_encoder: EncoderResolver | None = None,
             config: AssistantConfig | None = None, intent_model: Any = None) -> Assistant:
        """Load a bundle. ``config`` overrides the bundle's; ``intent_model`` (a Predictor) replaces the one in
        ``intent/`` (the API keeps the tenant's fine-tuned model apart from the bundle)."""
        folder = Path(folder)
        info = read_bundle_info(folder)
        cfg = config or AssistantConfig.parse(info.get("config", {}), f"{folder / BUNDLE_FILE}")
        passages = read_passages(folder / "passages.jsonl")
        index = VectorIndex.load(folder / "index")
        if len(index) != len(passages):
            raise ModelFormatError(f"{folder}: the index has {len(index)} vectors for {len(passages)} passages; "
                                   "rebuild the bundle.")
        if intent_model is None and runs.has_manifest(folder / "intent"):
            from tuneforge.inference import load_predictor

            intent_model = load_predictor(folder / "intent")
        qa_model = None
        if runs.has_manifest(folder / "qa"):
            from tuneforge.inference import load_predictor

            qa_model = load_predictor(folder / "qa")
        embedder = _load_embedder(encoder_path(folder, info.get("encoder", cfg.encoder), resolve_encoder))
        if index.dim and embedder.dim != index.dim:
            raise ModelFormatError(f"{folder}: the encoder gives {embedder.dim}-dimensional vectors, the index "
                                   f"holds {index.dim}; rebuild the index with the same encoder.")
        return cls(folder, info, cfg, passages, index, embedder, intent_model, qa_model)

    @property
    def labels(self) -> list[str]:
        if self.intent_model is not None:
            return list(self.intent_model.labels)
        return sorted(self._by_intent)

    # --- the pieces ------------------------------------------------------------------------------------------------
    def classify(self, texts: Sequence[str]) -> list[tuple[str | None, float, np.ndarray | None]]:
        """(intent, confidence, probabilities) per text; without an intent model, from retrieval."""
        if not texts:
            return []
        if self.intent_model is not None:
            probs = self.intent_model.predict_proba(self.intent_model.to_examples(list(texts)))
            labels = self.intent_model.labels
            return [(labels[int(p.argmax())], float(p.max()), p) for p in probs]
        scores, rows = self.retrieve(texts, k=1)
        out: list[tuple[str | None, float, np.ndarray | None]] = []
        for s, r in zip(scores, rows, strict=True):
            if len(r) == 0:
                out.append((None, 0.0, None))
            else:
                out.append((self.passages[int(r[0])].intent, float(max(0.0, s[0])), None))
        return out

    def retrieve(self, texts: Sequence[str], k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)
        return self.index.search(q, k or self.config.top_k)

    def _passage_for(self, intent: str | None, query_vec: np.ndarray, rows: np.ndarray
                     ) -> tuple[Passage | None, str | None]:
        """The passage to answer with and its reply text: a retrieved knowledge-base passage of the intent first,
        else the intent's most similar passage anywhere (a retrieved past ticket points to the intent, but the
        answer and its source are the knowledge base's), else (no intent) the best retrieved answer."""
        candidates = [int(r) for r in rows]
        if intent is not None:
            for r in candidates:
                p = self.passages[r]
                if p.intent == intent and p.kind != "ticket":
                    return p, p.answer
            members = [i for i in self._by_intent.get(intent, []) if self.passages[i].kind != "ticket"]
            if members:
                sims = self.index.vectors[members].astype(np.float32) @ query_vec
                p = self.passages[members[int(np.argmax(sims))]]
                return p, p.answer
            if intent in self._answers:
                return None, self._answers[intent]
            return None, None
        for r in candidates:
            p = self.passages[r]
            if text := self._reply_text(p):
                return p, text
        return None, None

    def _reply_text(self, p: Passage) -> str | None:
        if p.kind != "ticket":
            return p.answer
        # a past ticket is a customer's message: answer with its intent's reply, never the message itself
        if p.intent is None:
            return None
        return self.config.templates.get(p.intent) or self._answers.get(p.intent)

    def _asks_for_human(self, text: str) -> bool:
        low = text.lower()
        return any(ph.lower() in low for ph in self.config.handover_phrases)

    # --- answering -----------------------------------------------------------------------------------------------
    def answer(self, session: Session, message: str) -> Reply:
        """Answer ``message`` in ``session`` (both turns are appended to it)."""
        message = message.strip()
        if not message:
            raise DataError([DataProblem("message", None, "text", "empty message", "send some text")])
        cfg = self.config
        earlier = session.user_turns()[-cfg.context_turns:] if cfg.context_turns else []
        session.turns.append({"role": "user", "text": message})
        (intent, conf, _), = self.classify([message])
        query, used_context = message, False
        short = len(re.findall(r"\w+", message)) <= cfg.follow_up_words
        if earlier and short:
            # a short follow-up ("and how long does that take?") is read together with the turns before it; the
            # reading that the intent model is surer of wins. A long message stands on its own: borrowing the
            # previous intent for an unclear new request would answer the wrong question.
            joined = " ".join([*earlier, message])
            (c_intent, c_conf, _), = self.classify([joined])
            if c_conf > conf:
                intent, conf, query, used_context = c_intent, c_conf, joined, True
        q_vec = np.asarray(self.embedder.embed([query]), dtype=np.float32)[0]
        scores, rows = self.index.search(q_vec[None, :], cfg.top_k)
        retrieved = [self._passage_json(int(r), float(s)) for s, r in zip(scores[0], rows[0], strict=True)]
        top = float(scores[0][0]) if scores.shape[1] else -1.0
        reply = self._decide(session, message, intent, conf, q_vec, rows[0], retrieved, used_context, top)
        session.turns.append({"role": "assistant", "text": reply.text, "intent": reply.intent,
                              "confidence": reply.confidence, "handover": reply.handover, "reason": reply.reason})
        if reply.handover:
            reply.transcript = session.transcript()
        return reply

    def _decide(self, session: Session, message: str, intent: str | None, conf: float, q_vec: np.ndarray,
                rows: np.ndarray, retrieved: list[dict[str, Any]], used_context: bool, top: float) -> Reply:
        cfg = self.config
        conf = round(conf, 6)

        def handover(reason: str) -> Reply:
            return Reply(text="I'm passing you to a member of our team, who will see our conversation so far.",
                         intent=intent, confidence=conf, handover=True, reason=reason, passages=retrieved,
                         used_context=used_context)

        if self._asks_for_human(message):
            return handover("asked_for_human")
        if intent is not None and intent in cfg.handover_intents:
            return handover("handover_intent")
        if conf < cfg.threshold:
            return handover("low_confidence")
        if top < cfg.min_similarity:
            return handover("unfamiliar")
        if intent is not None and intent in cfg.templates:
            return Reply(text=cfg.templates[intent], intent=intent, confidence=conf, handover=False,
                         reason="template", passages=retrieved, used_context=used_context)
        passage, text = self._passage_for(intent, q_vec, rows)
        if text is None:
            return handover("no_answer")
        span = None
        if passage is not None and self.qa_model is not None:
            pred = self.qa_model.predict([{"question": message, "context": passage.answer}])[0]
            if pred.get("answer"):
                span = {"text": pred["answer"], "start": pred["start"], "end": pred["end"], "score": pred["score"]}
        return Reply(text=text, intent=intent, confidence=conf, handover=False,
                     reason="passage" if passage is not None else "intent_answer",
                     passages=self._source_first(passage, retrieved),
                     answer_span=span, used_context=used_context)

    def _source_first(self, passage: Passage | None, retrieved: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The passage the reply comes from first (with its retrieval score when it was retrieved), then the rest."""
        if passage is None:
            return retrieved
        own = next((r for r in retrieved if r["id"] == passage.id), None)
        if own is None:
            own = self._passage_json(self.passages.index(passage), None)
        return [own] + [r for r in retrieved if r["id"] != passage.id]

    def _passage_json(self, row: int, score: float | None) -> dict[str, Any]:
        p = self.passages[row]
        return {"id": p.id, "title": p.title, "anchor": p.anchor, "source": p.source, "kind": p.kind,
                "intent": p.intent, "text": p.answer if p.kind != "ticket" else p.text,
                "score": None if score is None else round(score, 6)}


def read_bundle_info(folder: Path) -> dict[str, Any]:
    path = Path(folder) / BUNDLE_FILE
    if not Path(folder).is_dir() or not path.exists():
        raise RunError(f"{folder} is not an assistant bundle (no {BUNDLE_FILE}).",
                       hint="Build one with: tuneforge solution assistant build --kb ... --output FOLDER")
    try:
        info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"{path} is corrupt: {e}") from None
    if info.get("format") != FORMAT:
        raise ModelFormatError(f"{path} is not an assistant bundle file (format {info.get('format')!r}).")
    return info


def encoder_path(folder: Path, encoder: str, resolve: EncoderResolver | None) -> Path:
    if encoder == "intent":
        if not runs.has_manifest(folder / "intent"):
            raise ConfigError("encoder: 'intent' needs the bundle's intent model (intent/), which it does not have")
        return folder / "intent"
    return (resolve or encoder_resolver())(encoder)


def build_bundle(output: Path, *, passages: list[Passage], config: AssistantConfig,
                 intent_run: Path | None = None, qa_run: Path | None = None,
                 resolve_encoder: EncoderResolver | None = None, extra: dict[str, Any] | None = None,
                 overwrite: bool = False, progress: Callable[[str], None] | None = None) -> Path:
    """Write a bundle: copy the intent (and QA) run folders in, embed the passages with the configured encoder,
    build the index. All or nothing: a failure leaves no folder behind."""
    say = progress or (lambda _m: None)
    if not passages:
        raise DataError([DataProblem("knowledge base", None, None, "no passages to index",
                                     "give a knowledge base (--kb) or past tickets (--tickets)")])
    if config.encoder == "intent" and intent_run is None:
        raise ConfigError("encoder: 'intent' needs an intent model (train one from --tickets)")
    with atomic_dir(output, overwrite=overwrite) as tmp:
        with storage_errors(tmp):
            if intent_run is not None:
                shutil.copytree(intent_run, tmp / "intent", ignore=shutil.ignore_patterns("checkpoints"))
            if qa_run is not None:
                shutil.copytree(qa_run, tmp / "qa", ignore=shutil.ignore_patterns("checkpoints"))
        say(f"Embedding {len(passages)} passages...")
        embedder = _load_embedder(encoder_path(tmp, config.encoder, resolve_encoder))
        vectors = embed_passages(embedder, passages)
        VectorIndex(vectors, [p.id for p in passages]).save(tmp / "index")
        write_passages(tmp / "passages.jsonl", passages)
        labels: list[str] = []
        if intent_run is not None:
            labels = list(runs.read_manifest(intent_run, require_weights=False).get("labels", []))
        atomic_write_json(tmp / BUNDLE_FILE, {
            "format": FORMAT, "version": VERSION, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": config.model_dump(mode="json"), "encoder": config.encoder, "labels": labels,
            "passages": len(passages), "kinds": _count(p.kind for p in passages), **(extra or {})})
    return output


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


def evaluate_assistant(assistant: Assistant, rows: Sequence[dict[str, Any]], *, batch_size: int = 64
                       ) -> dict[str, Any]:
    """Score single messages (``text``, ``label``): intent accuracy on in-scope rows (label known to the
    assistant), hit-rate@1/@k (a retrieved passage of the message's intent), and handover precision / recall,
    where a message should be handed over when its intent is out of scope or a handover intent."""
    texts = [str(r["text"]) for r in rows]
    labels = [str(r["label"]) for r in rows]
    preds: list[tuple[str | None, float, Any]] = []
    retrieved: list[list[str | None]] = []
    top: list[float] = []
    k = assistant.config.top_k
    for b in range(0, len(texts), batch_size):
        chunk = texts[b: b + batch_size]
        preds += assistant.classify(chunk)
        scores, idx = assistant.retrieve(chunk, k)
        retrieved += [[assistant.passages[int(r)].intent for r in rr] for rr in idx]
        top += [float(s[0]) if len(s) else -1.0 for s in scores]
    asks = [assistant._asks_for_human(t) for t in texts]
    return score_predictions([(p[0], p[1]) for p in preds], labels, retrieved, known=assistant.labels,
                             config=assistant.config, asks_for_human=asks, similarity=top)


def score_predictions(preds: Sequence[tuple[str | None, float]], labels: Sequence[str],
                      retrieved: Sequence[Sequence[str | None]] | None, *, known: Sequence[str],
                      config: AssistantConfig, asks_for_human: Sequence[bool] | None = None,
                      similarity: Sequence[float] | None = None) -> dict[str, Any]:
    """The metrics of :func:`evaluate_assistant` from predictions (intent, confidence) per message, the intents
    of the passages retrieved for it and the top similarity; a threshold sweep reuses the same predictions."""
    known_set = set(known)
    asks = asks_for_human or [False] * len(labels)
    sims = similarity if similarity is not None else [1.0] * len(labels)
    in_scope = [lab in known_set and lab not in config.handover_intents for lab in labels]
    correct = [p[0] == lab for p, lab in zip(preds, labels, strict=True)]
    handed = [p[1] < config.threshold or (p[0] in config.handover_intents) or a or sim < config.min_similarity
              for p, a, sim in zip(preds, asks, sims, strict=True)]
    should = [not s for s in in_scope]
    ins = [i for i, s in enumerate(in_scope) if s]
    n_in = len(ins)
    tp = sum(h and s for h, s in zip(handed, should, strict=True))
    n_handed, n_should = sum(handed), sum(should)
    answered = [correct[i] for i in ins if not handed[i]]
    out: dict[str, Any] = {"messages": len(labels), "in_scope": n_in, "out_of_scope": n_should,
                           "intent_accuracy": _ratio(sum(correct[i] for i in ins), n_in)}
    if retrieved is not None:
        k = max((len(r) for r in retrieved), default=0)
        out["hit_rate@1"] = _ratio(sum(bool(retrieved[i]) and retrieved[i][0] == labels[i] for i in ins), n_in)
        out[f"hit_rate@{k}"] = _ratio(sum(labels[i] in retrieved[i] for i in ins), n_in)
    out.update({
        "threshold": config.threshold,
        "min_similarity": config.min_similarity,
        "handover_rate": _ratio(n_handed, len(labels)),
        "handover_precision": _ratio(tp, n_handed),
        "handover_recall": _ratio(tp, n_should),
        "in_scope_handover_rate": _ratio(sum(handed[i] for i in ins), n_in),
        "answered_accuracy": _ratio(sum(answered), len(answered)),
    })
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None
