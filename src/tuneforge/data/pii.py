"""Personal data (PII) in data files: find it and mask it, with Microsoft Presidio's analyzer.

Presidio's predefined pattern recognizers find e-mail addresses, phone numbers (python-phonenumbers, for the
regions in :data:`PHONE_REGIONS`), credit card numbers (Luhn checksum), IBANs (ISO 7064 checksum) and IP addresses
(validated by :mod:`ipaddress`); two recognizers of our own, Presidio ``PatternRecognizer``\\ s with a validation
step, find mainland China mobile numbers (``1[3-9]`` and nine digits, optionally ``+86``) and Chinese resident
identity numbers (18 characters: a region code, a real birth date, a sequence number and the ISO 7064 MOD 11-2
check character, ``X`` for 10). Presidio runs with its no-op NLP engine: these recognizers need no spaCy model,
so nothing is downloaded. Person names need a language model: give a :data:`NameFinder` (the CLI's
``--pii-ner RUN`` builds one from a TuneForge NER run's ``PER`` entities).

Each found span is replaced by its type's mask (:data:`MASKS`: ``<EMAIL>``, ``<PHONE>``, ``<CREDIT_CARD>``,
``<IBAN>``, ``<IP>``, ``<CN_ID>``, ``<PERSON>``). Overlapping findings keep the most certain (a checksum-validated
number over a phone-number guess), then the longest. Look-alikes stay: an order number ``2024-0815``, dates,
prices, quantities and short digit runs are no phone number, and a 16-digit number failing the Luhn check (an
18-character number failing the ID checksum) is left as it is.

Chinese text has no spaces, so ``\\b`` in Presidio's patterns would not separate ``卡号4111...`` from its number;
the analyzer sees a copy of each text in which every CJK character is a space (same length, same offsets).
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from tuneforge.data.dataset import Dataset

__all__ = ["MASKS", "PHONE_REGIONS", "PII_TYPES", "NameFinder", "PiiDetector", "PiiReport", "PiiSpan",
           "cn_resident_id_valid", "mask_dataset", "mask_text", "scan_dataset"]

#: what each PII type is replaced by
MASKS: dict[str, str] = {"email": "<EMAIL>", "phone": "<PHONE>", "credit_card": "<CREDIT_CARD>", "iban": "<IBAN>",
                         "ip": "<IP>", "cn_id": "<CN_ID>", "person": "<PERSON>"}
PII_TYPES = tuple(MASKS)
#: regions whose numbering plans python-phonenumbers checks numbers without a country code against (a number
#: with ``+`` and a country code is checked against its own country's plan)
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN", "CA", "BR", "CN", "AU", "SG", "HK", "TW", "JP")
#: Presidio entity -> our type
_ENTITIES = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "CN_MOBILE": "phone", "CREDIT_CARD": "credit_card",
             "IBAN_CODE": "iban", "IP_ADDRESS": "ip", "CN_RESIDENT_ID": "cn_id"}
#: findings below this score are Presidio's weakest guesses (the bare ``::`` of IPv6)
_MIN_SCORE = 0.3
#: long texts are analysed in windows of this many characters, overlapping by more than any PII span is long
_WINDOW, _OVERLAP = 4096, 256
#: fields of an example that are never personal text (labels, tags, ids, roles, offsets)
_SKIP = frozenset({"label", "labels", "tags", "id", "role", "spans", "answers", "weight", "augmented"})

#: a function that finds person names: for each text, the ``(start, end)`` character spans of the names in it
NameFinder = Callable[[Sequence[str]], list[list[tuple[int, int]]]]


@dataclass(frozen=True)
class PiiSpan:
    """One finding: its type (a key of :data:`MASKS`), character span and the detector's score."""

    kind: str
    start: int
    end: int
    score: float


@dataclass
class PiiReport:
    """What a scan or masking found: spans per type, and where (the data file's lines, first few per type)."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: int = 0
    """Examples with at least one finding."""
    lines: dict[str, list[int | None]] = field(default_factory=dict)
    scanned: int = 0
    """Examples looked at (a scan may stop early: see :func:`scan_dataset`)."""

    def add(self, spans: Sequence[PiiSpan], line: int | None) -> None:
        for s in spans:
            self.counts[s.kind] += 1
            where = self.lines.setdefault(s.kind, [])
            if len(where) < 8 and (not where or where[-1] != line):
                where.append(line)

    def summary(self) -> str:
        """``3 email, 1 phone`` (most frequent first), or ``none``."""
        return ", ".join(f"{n} {kind}" for kind, n in self.counts.most_common()) or "none"


# --- the recognizers ---------------------------------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def cn_resident_id_valid(value: str) -> bool:
    """Whether ``value`` is a well-formed Chinese resident identity number (GB 11643-1999): 17 digits whose
    positions 7-14 are a real birth date, then the ISO 7064 MOD 11-2 check character (``X`` for 10)."""
    v = value.strip().upper()
    if len(v) != 18 or not v[:17].isdigit() or not (v[17].isdigit() or v[17] == "X") or v[0] == "0":
        return False
    try:
        born = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return False
    if not date(1850, 1, 1) <= born <= date.today():
        return False
    return _ID_CHECK[sum(int(d) * w for d, w in zip(v[:17], _ID_WEIGHTS, strict=True)) % 11] == v[17]


#: words right before a number that make it an order, invoice or reference number, not a phone number
_REFERENCE = re.compile(r"(?:订单|单号|发票|编号|快递|运单|order|invoice|ref|reference|tracking|ticket|no\.?|#)"
                        r"\s*(?:号|number|no\.?|#)?\s*[:：]?\s*$", re.IGNORECASE)


def _international(raw: str) -> bool:
    return raw.lstrip().startswith(("+", "00"))


def _phone_plausible(raw: str) -> bool:
    """A phone number has at least 9 digits (8 after a ``+`` or ``00`` country prefix): shorter valid numbers of
    some plans (German, Hong Kong 8-digit) read like prices, quantities and reference numbers too often."""
    return sum(c.isdigit() for c in raw) >= (8 if _international(raw) else 9)


def _reference_number(text: str, span: PiiSpan) -> bool:
    """A phone-like number without a country prefix right after "order", "订单号", "invoice" ...: that reference
    (read in the original text: the analyzer's copy has no Chinese)."""
    raw = text[span.start:span.end]
    return span.kind == "phone" and not _international(raw) and bool(
        _REFERENCE.search(text[max(0, span.start - 16):span.start]))


@functools.cache
def _analyzer() -> Any:
    """Presidio's AnalyzerEngine with the pattern recognizers only (built once: its import costs seconds)."""
    import tldextract
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
    )

    # tldextract's default downloads the public suffix list; the snapshot it ships is used instead (offline)
    offline_tlds = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):  # type: ignore[misc]
        def validate_result(self, pattern_text: str) -> bool:
            return bool(offline_tlds(pattern_text.rsplit("@", 1)[-1]).suffix)

    class PlausiblePhoneRecognizer(PhoneRecognizer):  # type: ignore[misc]
        """python-phonenumbers, without the short numbers some numbering plans allow (a German number may have 4
        digits: a price such as 1699 would be a phone number)."""

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            return [r for r in super().analyze(text, entities, nlp_artifacts) if _phone_plausible(text[r.start:r.end])]

    class ChinaMobileRecognizer(PatternRecognizer):  # type: ignore[misc]
        def validate_result(self, pattern_text: str) -> bool:
            digits = re.sub(r"\D", "", pattern_text)
            return len(digits.removeprefix("0086").removeprefix("86")) == 11

    class ChinaResidentIdRecognizer(PatternRecognizer):  # type: ignore[misc]
        def validate_result(self, pattern_text: str) -> bool:
            return cn_resident_id_valid(pattern_text)

    mobile = ChinaMobileRecognizer(
        supported_entity="CN_MOBILE", name="ChinaMobileRecognizer", context=["手机", "电话", "mobile", "phone"],
        patterns=[Pattern("China mobile", r"(?<![\d+])(?:(?:\+|00)86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}(?!\d)", 0.6)])
    resident_id = ChinaResidentIdRecognizer(
        supported_entity="CN_RESIDENT_ID", name="ChinaResidentIdRecognizer", context=["身份证", "ID"],
        patterns=[Pattern("China resident ID", r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])"
                                               r"(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![0-9A-Za-z])", 0.5)])
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (OfflineEmailRecognizer(), PlausiblePhoneRecognizer(supported_regions=PHONE_REGIONS),
                       CreditCardRecognizer(), IbanRecognizer(), IpRecognizer(), mobile, resident_id):
        registry.add_recognizer(recognizer)
    engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


@functools.lru_cache(maxsize=4096)
def _blank(c: str) -> bool:
    """Whether a character is CJK text the analyzer should see as a space (full-width digits and letters are
    kept: their NFKC form is ASCII)."""
    if ord(c) < 0x2E80:
        return False
    folded = unicodedata.normalize("NFKC", c)
    return not (len(folded) == 1 and folded.isascii() and not folded.isspace())


def _analysis_view(text: str) -> str:
    if text.isascii():
        return text
    return "".join(" " if _blank(c) else c for c in text)


def _resolve(spans: list[PiiSpan]) -> list[PiiSpan]:
    """Non-overlapping findings: the most certain first, then the longest; in text order."""
    starts: list[int] = []  # the kept spans, sorted by start (they do not overlap, so also by end)
    kept: list[PiiSpan] = []
    for s in sorted(set(spans), key=lambda s: (-s.score, -(s.end - s.start), s.start)):
        i = bisect.bisect_right(starts, s.start)
        if (i > 0 and kept[i - 1].end > s.start) or (i < len(kept) and kept[i].start < s.end):
            continue
        starts.insert(i, s.start)
        kept.insert(i, s)
    return kept


class PiiDetector:
    """Finds PII in texts: Presidio's pattern recognizers, and person names through ``names`` when given."""

    def __init__(self, names: NameFinder | None = None) -> None:
        self.names = names
        self._analyzer = _analyzer()

    def _patterns(self, text: str) -> list[PiiSpan]:
        if not text or not re.search(r"[@\d０-９]", text):
            return []  # every pattern type needs a digit or an @
        view = _analysis_view(text)
        spans: list[PiiSpan] = []
        # Presidio's duplicate removal is quadratic in the findings of one text: a long text is analysed in
        # overlapping windows (a finding that touches a window's edge may be cut; the neighbour holds it whole)
        for at in range(0, max(1, len(view) - _OVERLAP), _WINDOW - _OVERLAP):
            end = min(at + _WINDOW, len(view))
            for r in self._analyzer.analyze(text=view[at:end], language="en"):
                whole = (r.start > 0 or at == 0) and (r.end < end - at or end == len(view))
                if r.entity_type in _ENTITIES and r.score >= _MIN_SCORE and whole:
                    spans.append(PiiSpan(_ENTITIES[r.entity_type], at + r.start, at + r.end, float(r.score)))
            if end == len(view):
                break
        return [s for s in spans if not _reference_number(text, s)]

    def find(self, text: str) -> list[PiiSpan]:
        """The PII spans of one text, non-overlapping, in text order."""
        return self.find_many([text])[0]

    def find_many(self, texts: Sequence[str]) -> list[list[PiiSpan]]:
        """:meth:`find` for many texts (the name finder, a model, runs on them in one batch)."""
        found = [self._patterns(t) for t in texts]
        if self.names is not None:
            ask = [i for i, t in enumerate(texts) if t.strip()]
            for i, spans in zip(ask, self.names([texts[i] for i in ask]), strict=True):
                found[i] += [PiiSpan("person", a, b, 0.85) for a, b in spans if 0 <= a < b <= len(texts[i])]
        return [_resolve(spans) for spans in found]


def mask_text(text: str, spans: Sequence[PiiSpan]) -> tuple[str, Callable[[int], int]]:
    """``text`` with each span (non-overlapping, in order) replaced by its mask, and a function mapping an offset
    of ``text`` to the masked text (an offset inside a span maps to the start of its mask)."""
    parts: list[str] = []
    moved: list[tuple[int, int, int, int]] = []  # (start, end, start of the mask, end of the mask)
    at = pos = 0
    for s in spans:
        parts.append(text[at:s.start])
        pos += s.start - at
        mask = MASKS[s.kind]
        moved.append((s.start, s.end, pos, pos + len(mask)))
        parts.append(mask)
        pos += len(mask)
        at = s.end
    parts.append(text[at:])

    def where(offset: int) -> int:
        delta = 0
        for start, end, new_start, new_end in moved:
            if offset < start:
                break
            if offset < end:
                return new_start
            delta = new_end - end
        return offset + delta

    return "".join(parts), where


# --- datasets ----------------------------------------------------------------------------------------------------


@dataclass
class _Slot:
    """One piece of text in an example: a string field, or a token list (joined with spaces)."""

    holder: Any
    key: Any
    text: str
    tokens: list[tuple[int, int]] | None = None  # the tokens' character spans in ``text``


def _slots(value: Any, holder: Any = None, key: Any = None) -> Iterator[_Slot]:
    if isinstance(value, str):
        yield _Slot(holder, key, value)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k not in _SKIP:
                yield from _tokens_slot(value, k, v) if k == "tokens" else _slots(v, value, k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, dict | list):
                yield from _slots(v, value, i)


def _tokens_slot(holder: dict[str, Any], key: str, tokens: Any) -> Iterator[_Slot]:
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        return
    spans, at = [], 0
    for t in tokens:
        spans.append((at, at + len(t)))
        at += len(t) + 1
    yield _Slot(holder, key, " ".join(tokens), spans)


def _apply(slot: _Slot, spans: list[PiiSpan]) -> None:
    if slot.tokens is None:
        masked, where = mask_text(slot.text, spans)
        holder = slot.holder
        if slot.key == "context" and isinstance(holder, dict) and isinstance(holder.get("answers"), dict):
            _move_answers(holder["answers"], masked, where)
        holder[slot.key] = masked
        return
    tokens = list(slot.holder[slot.key])
    for i, (a, b) in enumerate(slot.tokens):
        hit = next((s for s in spans if a < s.end and s.start < b), None)
        if hit is not None:
            tokens[i] = MASKS[hit.kind]
    slot.holder[slot.key] = tokens


def _move_answers(answers: dict[str, Any], context: str, where: Callable[[int], int]) -> None:
    """QA: the answers as they read in the masked context (an answer that was PII becomes its mask)."""
    starts, texts = answers.get("answer_start"), answers.get("text")
    if not isinstance(starts, list) or not isinstance(texts, list):
        return
    new_starts, new_texts = [], []
    for s, t in zip(starts, texts, strict=False):
        a, b = where(int(s)), where(int(s) + len(t))
        if b <= a:  # the answer lies inside one mask
            b = a + next((len(m) for m in MASKS.values() if context.startswith(m, a)), 0)
        new_starts.append(a)
        new_texts.append(context[a:b])
    answers["answer_start"], answers["text"] = new_starts, new_texts


def _find_in(examples: Sequence[dict[str, Any]], detector: PiiDetector,
             max_chars: int | None = None) -> list[list[tuple[_Slot, list[PiiSpan]]]]:
    slots = [list(_slots(ex)) for ex in examples]
    flat = [s for per in slots for s in per]
    found = iter(detector.find_many([s.text[:max_chars] if max_chars else s.text for s in flat]))
    return [[(s, next(found)) for s in per] for per in slots]


def mask_dataset(ds: Dataset, detector: PiiDetector) -> tuple[Dataset, PiiReport]:
    """A copy of ``ds`` with the PII in every text field masked (labels, tags and ids are left alone; NER tokens
    that are PII become the mask, one per token, so the tags still line up; QA answers follow their context),
    and what was masked."""
    import copy

    examples = copy.deepcopy(list(ds.examples))
    report = PiiReport(scanned=len(examples))
    for i, per in enumerate(_find_in(examples, detector)):
        hits = [(slot, spans) for slot, spans in per if spans]
        for slot, spans in hits:
            report.add(spans, ds.lines[i] if i < len(ds.lines) else None)
            _apply(slot, spans)
        report.examples += bool(hits)
    return replace(ds, examples=examples, warnings=list(ds.warnings)), report


def scan_dataset(ds: Dataset, detector: PiiDetector | None = None, *, limit: int | None = 20_000,
                 max_chars: int | None = 10_000) -> PiiReport:
    """What PII the first ``limit`` examples of ``ds`` hold (all with None), looking at the first ``max_chars``
    characters of each text (python-phonenumbers takes about a second per 10,000 characters dense with numbers),
    without changing anything."""
    detector = detector or PiiDetector()
    examples = list(ds.examples)[: limit if limit is not None else None]
    report = PiiReport(scanned=len(examples))
    for i, per in enumerate(_find_in(examples, detector, max_chars)):
        spans = [s for _, found in per for s in found]
        report.add(spans, ds.lines[i] if i < len(ds.lines) else None)
        report.examples += bool(spans)
    return report
