"""Cleaning primitives: text normalization, near-duplicate search, and the :class:`Cleaner` base each task's
cleaner builds on.

Nothing is dropped silently: every removed example is listed in the :class:`CleanReport` with its source line,
a reason code (``empty``, ``too_short``, ``too_long``, ``duplicate``, ``near_duplicate``, ``label_conflict``) and
a detail. What each task normalizes, dedupes and drops is up to its cleaner (``tuneforge.tasks.<task>.data``);
:func:`tuneforge.tasks.clean_dataset` runs the one of a dataset's task.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tuneforge.data.dataset import Dataset
from tuneforge.errors import ConfigError

__all__ = ["REASONS", "CleanOptions", "CleanReport", "Cleaner", "clean_text", "list_places", "near_duplicates",
           "text_cleaner", "token_cleaner"]

REASONS = ("empty", "too_short", "too_long", "label_conflict", "duplicate", "near_duplicate")
_SHINGLE = 5


@dataclass
class CleanOptions:
    """What cleaning does (:func:`tuneforge.tasks.clean_dataset`). The defaults suit fine-tuning data; each step
    can be switched off."""

    normalize_unicode: bool = True
    """NFKC: full-width letters, digits and punctuation become their ASCII forms; no spaces are ever added."""
    strip_html: bool = True
    """Remove tags (script/style content too) and decode entities (``&amp;`` → ``&``)."""
    collapse_whitespace: bool = True
    """Turn runs of whitespace into one space, trim both ends, drop zero-width spaces."""
    lowercase: bool = False
    min_chars: int = 1
    """Examples whose text (text + text_pair) is shorter are dropped as ``too_short`` (classification)."""
    max_chars: int | None = None
    """Examples whose text is longer are dropped as ``too_long`` (classification); None = no limit."""
    dedupe: bool = True
    """Drop exact duplicates after normalization, keeping the first."""
    near_dedupe: bool = True
    """Drop near-duplicates with the same label (classification), keeping the first."""
    near_threshold: float = 0.9
    """Jaccard similarity of character 5-gram sets at or above which two texts are near-duplicates."""
    normalize_labels: bool = True
    """Merge labels that differ only in case/whitespace into their most frequent spelling."""
    drop_conflicts: bool = True
    """Drop every copy of a text that appears with different labels (or an NER sentence with different tags)."""

    def __post_init__(self) -> None:
        errors = []
        if not 0.0 < self.near_threshold <= 1.0:
            errors.append(f"near_threshold: must be in (0, 1], got {self.near_threshold}")
        if self.min_chars < 0:
            errors.append(f"min_chars: must be 0 or more, got {self.min_chars}")
        if self.max_chars is not None and self.max_chars < max(self.min_chars, 1):
            errors.append(f"max_chars: must be at least min_chars ({self.min_chars}) and 1, got {self.max_chars}")
        if errors:
            raise ConfigError(errors)


@dataclass
class CleanReport:
    """What cleaning did: ``removed`` holds ``(line, reason, detail)`` per dropped example, in file order."""

    kept: int
    removed: list[tuple[int | None, str, str]] = field(default_factory=list)
    changed: int = 0
    """Examples whose text (or tokens, or question) was modified."""
    label_renames: dict[str, str] = field(default_factory=dict)
    """Label spellings merged into another spelling: ``{variant: kept spelling}``."""

    def counts(self) -> dict[str, int]:
        """Removed examples per reason code."""
        return dict(Counter(reason for _, reason, _ in self.removed))


# --- text normalization -------------------------------------------------------------------------------------

_MAYBE_HTML = re.compile(r"<[A-Za-z/!]|&(?:[A-Za-z][A-Za-z0-9]*|#\d+|#[xX][0-9A-Fa-f]+);")
_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_BLOCK_TAG = re.compile(
    r"</?(?:br|p|div|li|ul|ol|tr|td|th|table|thead|tbody|h[1-6]|hr|section|article|header|footer|blockquote|pre"
    r"|dd|dt|dl|figure|figcaption|nav|aside|main)\b[^<>]*>",
    re.IGNORECASE,
)
_INLINE_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>")
_BREAK = "\x00"
_BREAKS = re.compile(r"\s*\x00[\s\x00]*")
_ZERO_WIDTH = re.compile(r"[\u200b\u2060\ufeff]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")
_SPACES = re.compile(r"\s+")


def _is_cjk(c: str) -> bool:
    o = ord(c)
    return (0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x3000 <= o <= 0x30FF
            or 0xFF00 <= o <= 0xFFEF or 0xAC00 <= o <= 0xD7AF or 0x20000 <= o <= 0x2FFFF)


def _break_to_space(m: re.Match[str]) -> str:
    # A block tag separates words ("a<br>b" → "a b"), but Chinese and Japanese have no spaces between words,
    # so between CJK characters the tag just disappears.
    s, i, j = m.string, m.start(), m.end()
    if i == 0 or j == len(s):
        return ""
    had_space = any(c.isspace() for c in m.group())
    return " " if had_space or not (_is_cjk(s[i - 1]) or _is_cjk(s[j])) else ""


def _strip_html(text: str) -> str:
    if not _MAYBE_HTML.search(text):
        return text
    text = _SCRIPT.sub(_BREAK, text)
    text = _COMMENT.sub("", text)
    text = _BLOCK_TAG.sub(_BREAK, text)
    text = _INLINE_TAG.sub("", text)
    text = _BREAKS.sub(_break_to_space, text)
    # Entities last, so an escaped "&lt;b&gt;" stays visible text instead of being taken for a tag.
    return html.unescape(text)


def clean_text(text: str, options: CleanOptions | None = None) -> str:
    """Normalize one text the way dataset cleaning does (HTML, NFKC, whitespace, case).

    Use it on inputs at prediction time so a model sees text normalized the way its training data was.
    """
    return text_cleaner(options or CleanOptions())(text)


def text_cleaner(opts: CleanOptions) -> Callable[[str], str]:
    """The text normalization of ``opts`` as a function (HTML, NFKC, whitespace and control characters, case)."""
    def clean(text: str) -> str:
        if opts.strip_html:
            text = _strip_html(text)
        if opts.normalize_unicode:
            text = unicodedata.normalize("NFKC", text)
        if opts.collapse_whitespace:
            text = _CONTROL.sub("", _ZERO_WIDTH.sub("", text))
            text = _SPACES.sub(" ", text).strip()
        if opts.lowercase:
            text = text.lower()
        return text

    return clean


def token_cleaner(opts: CleanOptions) -> Callable[[str], str]:
    """Normalization of one pre-split token: like :func:`text_cleaner`, but never strips HTML."""
    # No HTML stripping for tokens: "<" or "&" can be a real token, and a token must stay one token.
    def clean(token: str) -> str:
        if opts.normalize_unicode:
            token = unicodedata.normalize("NFKC", token)
        if opts.collapse_whitespace:
            token = _SPACES.sub(" ", _ZERO_WIDTH.sub("", token)).strip()
        if opts.lowercase:
            token = token.lower()
        return token

    return clean


# --- near-duplicates ----------------------------------------------------------------------------------------

_P = np.uint64(0x100000001B3)  # FNV prime: odd, so the rolling hash mixes every code point into every bit above it


def _shingles(text: str) -> np.ndarray:
    """Sorted distinct 64-bit hashes of the text's character 5-grams (the whole text when shorter)."""
    cps = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.uint64)
    n = len(cps)
    width = min(_SHINGLE, n)
    h = np.zeros(n - width + 1, dtype=np.uint64)
    for j in range(width):
        h = h * _P + cps[j:n - width + 1 + j]
    if width < _SHINGLE:
        h = h ^ np.uint64(width)  # keep a 3-character text from colliding with a 5-gram that hashes alike
    return np.unique(h)


def near_duplicates(texts: Sequence[str], threshold: float) -> dict[int, tuple[int, float]]:
    """Map each near-duplicate's index to ``(index of the earlier text it repeats, Jaccard)``.

    Exact Jaccard over character 5-gram sets, found with prefix filtering (AllPairs): shingles are ranked
    rarest first, and two sets with Jaccard >= t must share a shingle within their first ``|x| - ceil(t|x|) + 1``
    ranks, so only those are indexed and probed. Texts are visited in order and compared only with earlier texts
    that were kept, which keeps the first of every group.
    """
    if len(texts) < 2:
        return {}
    sets = [_shingles(t) for t in texts]
    vocab, counts = np.unique(np.concatenate(sets), return_counts=True)
    rank_of = np.empty(len(vocab), dtype=np.int64)
    rank_of[np.lexsort((vocab, counts))] = np.arange(len(vocab))
    # All sets as ranks in one flat array (CSR layout), so a document's candidates are verified in one
    # vectorized pass; each document's set is a view into it.
    sizes = np.array([len(s) for s in sets], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    flat = np.empty(int(sizes.sum()), dtype=np.int64)
    for k, s in enumerate(sets):
        flat[offsets[k]:offsets[k] + sizes[k]] = np.sort(rank_of[np.searchsorted(vocab, s)])
    del sets
    ranked = [flat[offsets[k]:offsets[k] + sizes[k]] for k in range(len(sizes))]
    in_x = np.zeros(len(vocab), dtype=np.int64)

    index: defaultdict[int, list[int]] = defaultdict(list)
    found: dict[int, tuple[int, float]] = {}
    eps = 1e-9
    for j, x in enumerate(ranked):
        size = len(x)
        prefix = x[: size - math.ceil(threshold * size - eps) + 1].tolist()
        candidates: set[int] = set()
        for tok in prefix:
            candidates.update(index.get(tok, ()))
        match = _best_match(candidates, x, sizes, offsets, flat, in_x, threshold - eps) if candidates else None
        if match is not None:
            found[j] = match
            continue
        for tok in prefix:
            index[tok].append(j)
    return found


def _best_match(candidates: set[int], x: np.ndarray, sizes: np.ndarray, offsets: np.ndarray,
                flat: np.ndarray, in_x: np.ndarray, threshold: float) -> tuple[int, float] | None:
    """The earliest candidate whose Jaccard with ``x`` reaches ``threshold``, with that Jaccard."""
    cands = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
    size = len(x)
    lens = sizes[cands]
    cands = cands[(lens >= threshold * size) & (size >= threshold * lens)]  # a size filter before any counting
    if not len(cands):
        return None
    cands.sort()
    lens = sizes[cands]
    seg = np.cumsum(lens) - lens
    positions = np.arange(int(lens.sum())) - np.repeat(seg, lens) + np.repeat(offsets[cands], lens)
    in_x[x] = 1
    inter = np.add.reduceat(in_x[flat[positions]], seg)
    in_x[x] = 0
    sims = inter / (size + lens - inter)
    hits = np.flatnonzero(sims >= threshold)
    if not len(hits):
        return None
    return int(cands[hits[0]]), float(sims[hits[0]])


# --- the base of every task's cleaner -------------------------------------------------------------------


class Cleaner:
    """The base of a task's cleaner: ``prepare`` fills ``examples`` with normalized copies of the dataset's
    examples, ``filter`` drops some with :meth:`drop`, and :meth:`run` returns the kept ones and the report."""

    def __init__(self, ds: Dataset, opts: CleanOptions) -> None:
        self.ds = ds
        self.opts = opts
        self.examples: list[dict[str, Any]] = []
        self.alive: list[bool] = []
        self.removed: list[tuple[int, str, str]] = []  # (index, reason, detail)
        self.changed = 0
        self.renames: dict[str, str] = {}

    def drop(self, i: int, reason: str, detail: str) -> None:
        self.alive[i] = False
        self.removed.append((i, reason, detail))

    def line(self, i: int) -> str:
        line = self.ds.lines[i]
        return f"line {line}" if line is not None else f"example {i}"

    def prepare(self) -> None:
        raise NotImplementedError

    def filter(self) -> None:
        raise NotImplementedError

    def labels(self) -> list[str]:
        return list(self.ds.labels)

    def run(self) -> tuple[Dataset, CleanReport]:
        self.prepare()
        self.alive = [True] * len(self.examples)
        self.filter()
        keep = [i for i, ok in enumerate(self.alive) if ok]
        out = replace(self.ds, examples=[self.examples[i] for i in keep], lines=[self.ds.lines[i] for i in keep],
                      labels=self.labels(), warnings=list(self.ds.warnings))
        removed = [(self.ds.lines[i], reason, detail) for i, reason, detail in sorted(self.removed)]
        return out, CleanReport(kept=len(keep), removed=removed, changed=self.changed, label_renames=self.renames)

    def conflicts_and_duplicates(self, key: Callable[[dict[str, Any]], Any],
                                 target: Callable[[dict[str, Any]], Any],
                                 describe: Callable[[list[tuple[Any, list[str]]]], str]) -> None:
        """Drop conflicts (same key, different target), then exact duplicates (same key and target).

        ``describe`` gets ``[(target, [where, ...]), ...]`` for one conflict and returns the report's detail.
        """
        if self.opts.drop_conflicts:
            groups: defaultdict[Any, list[int]] = defaultdict(list)
            for i, ex in enumerate(self.examples):
                if self.alive[i] and target(ex) is not None:
                    groups[key(ex)].append(i)
            for members in groups.values():
                by_target: dict[Any, list[str]] = {}
                for i in members:
                    by_target.setdefault(target(self.examples[i]), []).append(self.line(i))
                if len(by_target) > 1:
                    detail = describe(list(by_target.items()))
                    for i in members:
                        self.drop(i, "label_conflict", detail)
        if self.opts.dedupe:
            first: dict[Any, int] = {}
            for i, ex in enumerate(self.examples):
                if not self.alive[i]:
                    continue
                k = (key(ex), target(ex))
                if k in first:
                    self.drop(i, "duplicate", f"same as {self.line(first[k])}")
                else:
                    first[k] = i


def list_places(places: list[str]) -> str:
    """The first few places (``line 3, line 9, ...``) of a conflict, for a report's detail."""
    return ", ".join(places[:4]) + (", ..." if len(places) > 4 else "")
