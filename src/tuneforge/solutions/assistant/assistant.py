"""The assistant: an intent classifier, a retrieval index over the knowledge base, optional extractive QA, and
the rules that decide between answering and handing over to a human.

A bundle is a folder::

    assistant.json   config (threshold, handover intents, templates ...), encoder, labels, calibration, stats
    passages.jsonl   the knowledge base as passages (QA pairs, article blocks, past tickets)
    index/           the vector index of the passages (vectors.npy + index.json)
    intent/          a TuneForge classification run folder (optional: without it the intent is retrieval's)
    qa/              a TuneForge QA run folder (optional: points at the answer span inside the passage)
    writer/          a TuneForge generation run folder (optional: writes generated answers that cite passages)
    feedback.jsonl   feedback given from the CLI (the API keeps it in the database)
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tuneforge import runs
from tuneforge.errors import ConfigError, DataError, DataProblem, ModelFormatError
from tuneforge.solutions.assistant.bundle import (
    BUNDLE_FILE,
    EncoderResolver,
    build_bundle,
    bundle_writer,
    embed_passages,
    encoder_path,
    encoder_resolver,
    load_embedder,
    read_bundle_info,
    set_writer,
)
from tuneforge.solutions.assistant.config import AssistantConfig
from tuneforge.solutions.assistant.index import VectorIndex
from tuneforge.solutions.assistant.knowledge import Passage, read_passages
from tuneforge.solutions.assistant.writer import (
    NO_ANSWER,
    Writer,
    parse_citations,
    says_no_answer,
    writer_messages,
)

# the bundle's functions and the config are re-exported: they are the assistant's API
__all__ = ["BUNDLE_FILE", "NOTHING_FOUND", "Assistant", "AssistantConfig", "Composed", "EncoderResolver",
           "IntentGuess", "Reply", "Session", "build_bundle", "calibrate_threshold", "embed_passages",
           "encoder_resolver", "read_bundle_info", "set_writer"]


#: the reply when no passage is relevant enough to answer from
NOTHING_FOUND = ("I couldn't find anything about this in our help articles, so I'm passing you to a member of our "
                 "team, who will see our conversation so far.")
HANDOVER_TEXT = "I'm passing you to a member of our team, who will see our conversation so far."


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


class IntentGuess(NamedTuple):
    """The intent model's reading of a message. ``rejected``: a model with a reject option found it out of scope
    (``intent`` is then its out-of-scope label, ``best_intent`` the best known intent)."""

    intent: str | None
    confidence: float
    rejected: bool = False
    best_intent: str | None = None


@dataclass
class Reply:
    """The assistant's answer to one message. A generated answer lists the passages it ``citations`` (``n``: the
    number it used in the text, ``id``: the passage), and its ``passages`` begin with the ones it was shown, in
    their numbered order."""

    text: str
    intent: str | None
    confidence: float
    handover: bool
    reason: str
    passages: list[dict[str, Any]] = field(default_factory=list)
    answer_span: dict[str, Any] | None = None
    used_context: bool = False
    transcript: list[dict[str, str]] | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    best_intent: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Composed:
    """An answer composed from the knowledge base, before the handover rules: in ``retrieval`` mode the best
    relevant passage's answer, in ``generate`` mode the writer's reply from the relevant passages (``passages``,
    numbered 1.. in that order). ``nothing_relevant``: no passage passed the similarity floor, or the writer said
    the passages do not answer the message; ``uncited``: a generated reply that cites no passage."""

    text: str
    mode: str
    passages: list[dict[str, Any]] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)
    nothing_relevant: bool = False
    uncited: bool = False
    invalid_citations: list[int] = field(default_factory=list)


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
                 index: VectorIndex, embedder: Any, intent_model: Any = None, qa_model: Any = None,
                 writer: Writer | Callable[[], Writer] | None = None) -> None:
        self.folder = folder
        self.info = info
        self.config = config
        self.passages = passages
        self.index = index
        self.embedder = embedder
        self.intent_model = intent_model
        self.qa_model = qa_model
        # the writer is loaded on first use (a chat model takes seconds to load; retrieval answers never need it)
        self._writer: Writer | None = None
        self._make_writer: Callable[[], Writer] | None = None
        if callable(writer) and not hasattr(writer, "write"):
            self._make_writer = writer
        else:
            self._writer = writer  # type: ignore[assignment]
        self._writer_lock = threading.Lock()
        # generated answers are written from knowledge-base passages only: past tickets are customers' messages
        kb = [i for i, p in enumerate(passages) if p.kind != "ticket"]
        self._kb_rows = np.asarray(kb, dtype=np.int64)
        self._kb_index = index if len(kb) == len(passages) else VectorIndex(
            index.vectors[kb] if kb else np.zeros((0, index.dim), np.float32), [index.ids[i] for i in kb],
            dtype="float32")
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
             config: AssistantConfig | None = None, intent_model: Any = None,
             writer: Writer | Callable[[], Writer] | None = None, settings: Any = None) -> Assistant:
        """Load a bundle. ``config`` overrides the bundle's; ``intent_model`` (a Predictor) replaces the one in
        ``intent/`` (the API keeps the tenant's fine-tuned model apart from the bundle); ``writer`` (a
        :class:`~.writer.Writer`, or a function making one) replaces the bundle's ``writer/`` run or the
        config's ``writer``, which are loaded when first needed."""
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
        embedder = load_embedder(encoder_path(folder, info.get("encoder", cfg.encoder), resolve_encoder))
        if index.dim and embedder.dim != index.dim:
            raise ModelFormatError(f"{folder}: the encoder gives {embedder.dim}-dimensional vectors, the index "
                                   f"holds {index.dim}; rebuild the index with the same encoder.")
        if writer is None:
            writer = bundle_writer(folder, cfg, settings)
        if writer is None and cfg.answer_mode == "generate":
            raise ConfigError("answer_mode: 'generate' needs a writer, and this bundle has none",
                              hint="add one with `tuneforge solution assistant set-writer BUNDLE RUN_OR_BASE` "
                                   "(a generation run, or a base chat model such as smollm2)")
        return cls(folder, info, cfg, passages, index, embedder, intent_model, qa_model, writer)

    @property
    def has_writer(self) -> bool:
        return self._writer is not None or self._make_writer is not None

    @property
    def writer(self) -> Writer:
        """The writer of generated answers (loaded on first use)."""
        with self._writer_lock:
            if self._writer is None:
                if self._make_writer is None:
                    raise ConfigError("writer: this assistant has no writer model, so it cannot generate answers",
                                      hint="add one with `tuneforge solution assistant set-writer BUNDLE "
                                           "RUN_OR_BASE`, or pass --writer")
                self._writer = self._make_writer()
            return self._writer

    @property
    def labels(self) -> list[str]:
        if self.intent_model is not None:
            return list(self.intent_model.labels)
        return sorted(self._by_intent)

    # --- the pieces ------------------------------------------------------------------------------------------------
    def classify(self, texts: Sequence[str]) -> list[IntentGuess]:
        """The intent of each text with its confidence; without an intent model, from retrieval.

        A model's predictions (``predict``) are used as they are, so a model with a reject option marks
        out-of-scope messages (``rejected``) and its calibrated scores are the confidences."""
        if not texts:
            return []
        model = self.intent_model
        if model is not None:
            if hasattr(model, "predict") and not getattr(model, "multi_label", False):
                return [_guess(p) for p in model.predict(list(texts))]
            probs = model.predict_proba(model.to_examples(list(texts)))
            labels = model.labels
            return [IntentGuess(labels[int(p.argmax())], float(p.max())) for p in probs]
        scores, rows = self.retrieve(texts, k=1)
        out: list[IntentGuess] = []
        for s, r in zip(scores, rows, strict=True):
            if len(r) == 0:
                out.append(IntentGuess(None, 0.0))
            else:
                out.append(IntentGuess(self.passages[int(r[0])].intent, float(max(0.0, s[0]))))
        return out

    def retrieve(self, texts: Sequence[str], k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)
        return self.index.search(q, k or self.config.top_k)

    def embed(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """The retrieval vectors of ``texts`` (one row each)."""
        parts = [np.asarray(self.embedder.embed(list(texts[b: b + batch_size])), dtype=np.float32)
                 for b in range(0, len(texts), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.index.dim), np.float32)

    def search_knowledge(self, vectors: np.ndarray, k: int, *, floor: float | None = None
                         ) -> list[list[tuple[int, float]]]:
        """The ``k`` knowledge-base passages (past tickets left out) most similar to each query vector, as
        (row in :attr:`passages`, similarity), best first; those below ``floor`` (default
        ``passage_min_similarity``) are left out."""
        floor = self.config.passage_min_similarity if floor is None else floor
        if len(self._kb_index) == 0:
            return [[] for _ in range(len(vectors))]
        scores, rows = self._kb_index.search(np.asarray(vectors, dtype=np.float32), k)
        return [[(int(self._kb_rows[int(r)]), float(sc)) for sc, r in zip(s, rr, strict=True) if sc >= floor]
                for s, rr in zip(scores, rows, strict=True)]

    def compose(self, questions: Sequence[str], *, mode: str | None = None, vectors: np.ndarray | None = None,
                writer: Writer | None = None) -> list[Composed]:
        """Answer each question from the knowledge base alone, before any handover rule (the evaluation compares
        the modes on the same questions with it): ``retrieval`` takes the best relevant passage's answer,
        ``generate`` has the writer (default :attr:`writer`) write one from the ``writer_passages`` best relevant
        passages, numbered in that order, and reads its citations back."""
        cfg = self.config
        mode = mode or cfg.answer_mode
        if mode not in ("retrieval", "generate"):
            raise ConfigError(f"mode: '{mode}' is not an answer mode (retrieval or generate)")
        vecs = self.embed(questions) if vectors is None else np.asarray(vectors, dtype=np.float32)
        hits = self.search_knowledge(vecs, 1 if mode == "retrieval" else cfg.writer_passages)
        out: list[Composed] = []
        if mode == "retrieval":
            for found in hits:
                if not found:
                    out.append(Composed(NO_ANSWER, mode, nothing_relevant=True))
                    continue
                row, score = found[0]
                source = self._passage_json(row, score)
                out.append(Composed(self.passages[row].answer, mode, [source], [{"n": 1, **_cited(source)}]))
            return out
        todo = [i for i, found in enumerate(hits) if found]
        prompts = [writer_messages(questions[i], [self.passages[r] for r, _ in hits[i]],
                                   chars=cfg.writer_passage_chars) for i in todo]
        from tuneforge.tasks.generation.generate import GenerationOptions

        texts = (writer or self.writer).write(prompts, GenerationOptions(max_new_tokens=cfg.writer_max_new_tokens)
                                              ) if prompts else []
        written = dict(zip(todo, texts, strict=True))
        for i, found in enumerate(hits):
            if i not in written:
                out.append(Composed(NO_ANSWER, mode, nothing_relevant=True))
                continue
            text = written[i]
            shown = [{"n": n, **self._passage_json(r, s)} for n, (r, s) in enumerate(found, 1)]
            cites = parse_citations(text, len(shown))
            citations = [{"n": n, **_cited(shown[n - 1])} for n in cites.numbers]
            out.append(Composed(text, mode, shown, citations,
                                nothing_relevant=not citations and says_no_answer(text), uncited=not citations,
                                invalid_citations=cites.invalid))
        return out

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
        [guess] = self.classify([message])
        query, used_context = message, False
        short = len(re.findall(r"\w+", message)) <= cfg.follow_up_words
        if earlier and short:
            # a short follow-up ("and how long does that take?") is read together with the turns before it; the
            # reading that the intent model is surer of wins. A long message stands on its own: borrowing the
            # previous intent for an unclear new request would answer the wrong question.
            joined = " ".join([*earlier, message])
            [in_context] = self.classify([joined])
            if in_context.confidence > guess.confidence:
                guess, query, used_context = in_context, joined, True
        q_vec = np.asarray(self.embedder.embed([query]), dtype=np.float32)[0]
        scores, rows = self.index.search(q_vec[None, :], cfg.top_k)
        retrieved = [self._passage_json(int(r), float(s)) for s, r in zip(scores[0], rows[0], strict=True)]
        top = float(scores[0][0]) if scores.shape[1] else -1.0
        reply = self._decide(message, query, guess, q_vec, rows[0], retrieved, used_context, top)
        session.turns.append({"role": "assistant", "text": reply.text, "intent": reply.intent,
                              "confidence": reply.confidence, "handover": reply.handover, "reason": reply.reason,
                              **({"best_intent": reply.best_intent} if reply.best_intent else {})})
        if reply.handover:
            reply.transcript = session.transcript()
        return reply

    def _decide(self, message: str, query: str, guess: IntentGuess, q_vec: np.ndarray, rows: np.ndarray,
                retrieved: list[dict[str, Any]], used_context: bool, top: float) -> Reply:
        cfg = self.config
        intent, conf = guess.intent, round(guess.confidence, 6)

        def handover(reason: str, text: str = HANDOVER_TEXT, passages: list[dict[str, Any]] | None = None
                     ) -> Reply:
            return Reply(text=text, intent=intent, confidence=conf, handover=True, reason=reason,
                         passages=retrieved if passages is None else passages, used_context=used_context,
                         best_intent=guess.best_intent)

        if self._asks_for_human(message):
            return handover("asked_for_human")
        if intent is not None and intent in cfg.handover_intents:
            return handover("handover_intent")
        if guess.rejected:  # the intent model's reject option: a question it was never taught
            return handover("out_of_scope")
        if conf < cfg.threshold:
            return handover("low_confidence")
        if top < cfg.min_similarity:
            return handover("unfamiliar")
        if intent is not None and intent in cfg.templates:
            return Reply(text=cfg.templates[intent], intent=intent, confidence=conf, handover=False,
                         reason="template", passages=retrieved, used_context=used_context)
        if cfg.answer_mode == "generate":
            [made] = self.compose([query], mode="generate", vectors=q_vec[None, :])
            shown = made.passages + [r for r in retrieved if r["id"] not in {p["id"] for p in made.passages}]
            if made.nothing_relevant:
                return handover("nothing_relevant", NOTHING_FOUND, shown)
            if made.uncited and cfg.require_citation:
                return handover("uncited", passages=shown)
            return Reply(text=made.text, intent=intent, confidence=conf, handover=False, reason="generated",
                         passages=shown, used_context=used_context, citations=made.citations)
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


def _cited(passage: dict[str, Any]) -> dict[str, Any]:
    return {k: passage[k] for k in ("id", "title", "anchor", "source", "intent")}


def _guess(pred: dict[str, Any]) -> IntentGuess:
    """An intent model's prediction dict as an :class:`IntentGuess`: ``label`` and ``score``, and from a model with
    a reject option ``rejected`` (the label is then the out-of-scope label) and ``best_label``."""
    rejected = bool(pred.get("rejected"))
    score = pred.get("best_score", pred.get("score")) if rejected else pred.get("score")
    return IntentGuess(pred.get("label"), float(score or 0.0), rejected,
                       str(pred["best_label"]) if rejected and pred.get("best_label") else None)
