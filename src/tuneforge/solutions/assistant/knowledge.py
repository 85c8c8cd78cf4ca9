"""The knowledge base: question–answer pairs and articles (Markdown, HTML, text) split into passages.

A passage is what retrieval returns and what a reply quotes: its ``text`` is what gets embedded (the question
and answer of a QA pair; a heading path and a paragraph block of an article), ``answer`` is what the assistant
says, ``title``/``anchor`` say where it came from, and ``intent`` (optional) ties it to an intent of the
classifier.
"""

from __future__ import annotations

import csv
import html
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError, DataProblem

__all__ = ["ARTICLE_SUFFIXES", "QA_SUFFIXES", "Passage", "load_knowledge", "passages_from_article",
           "passages_from_rows", "read_passages",
           "slugify", "split_article", "split_html", "split_markdown", "write_passages"]

QA_SUFFIXES = (".jsonl", ".csv", ".json")
ARTICLE_SUFFIXES = (".md", ".markdown", ".html", ".htm", ".txt")
MAX_CHARS = 800  # a passage longer than this is split at sentence ends: embeddings of short passages retrieve better


@dataclass
class Passage:
    """One retrievable unit of the knowledge base."""

    id: str
    text: str
    answer: str
    title: str = ""
    anchor: str = ""
    intent: str | None = None
    source: str = ""
    kind: str = "qa"  # qa | article | ticket
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Passage:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row})


def slugify(text: str) -> str:
    """A heading's anchor as Markdown renderers make it: lower case, words joined by '-'."""
    s = re.sub(r"[^\w\s-]", "", text.strip().lower())
    return re.sub(r"[\s_]+", "-", s).strip("-")


def _bounded(text: str, limit: int = MAX_CHARS) -> list[str]:
    """Split ``text`` at sentence ends into chunks of at most ``limit`` characters (a longer sentence is cut)."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return [text] if text else []
    sentences = re.split(r"(?<=[.!?。！？])\s+", text)
    chunks: list[str] = []
    cur = ""
    for s in sentences:
        while len(s) > limit:
            if cur:
                chunks.append(cur)
                cur = ""
            chunks.append(s[:limit])
            s = s[limit:]
        if cur and len(cur) + 1 + len(s) > limit:
            chunks.append(cur)
            cur = s
        else:
            cur = f"{cur} {s}".strip()
    if cur:
        chunks.append(cur)
    return chunks


def split_markdown(text: str, *, title: str = "", limit: int = MAX_CHARS) -> list[tuple[str, str, str]]:
    """Split a Markdown article into ``(heading path, anchor, block)`` triples: one per paragraph group under a
    heading, each block at most ``limit`` characters. Code fences stay inside their block."""
    sections: list[tuple[list[str], list[str]]] = []
    path: list[str] = [title] if title else []
    levels: list[int] = [0] if title else []
    paragraphs: list[str] = []
    buf: list[str] = []
    in_fence = False

    def flush_par() -> None:
        if buf:
            paragraphs.append("\n".join(buf).strip())
            buf.clear()

    def flush_section() -> None:
        flush_par()
        if any(p for p in paragraphs):
            sections.append((list(path), [p for p in paragraphs if p]))
        paragraphs.clear()

    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
            buf.append(line)
            continue
        m = None if in_fence else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            flush_section()
            level = len(m.group(1))
            while levels and levels[-1] >= level:
                levels.pop()
                path.pop()
            levels.append(level)
            path.append(m.group(2).strip())
        elif not line.strip() and not in_fence:
            flush_par()
        else:
            buf.append(line)
    flush_section()
    return _group(sections, limit)


def _group(sections: list[tuple[list[str], list[str]]], limit: int) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for heads, paras in sections:
        heading = " › ".join(h for h in heads if h)
        anchor = slugify(heads[-1]) if heads else ""
        cur = ""
        for p in paras:
            for piece in _bounded(p, limit):
                if cur and len(cur) + 1 + len(piece) > limit:
                    out.append((heading, anchor, cur))
                    cur = piece
                else:
                    cur = f"{cur}\n{piece}".strip()
        if cur:
            out.append((heading, anchor, cur))
    return out


class _HtmlSections(HTMLParser):
    """Collects text blocks per heading; skips script/style/nav."""

    BLOCK = {"p", "li", "pre", "blockquote", "td", "th", "dd", "dt", "div", "br", "tr", "section", "article"}
    SKIP = {"script", "style", "nav", "noscript", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[tuple[list[str], list[str], str]] = []
        self.path: list[tuple[int, str, str]] = []
        self.paras: list[str] = []
        self.buf: list[str] = []
        self.heading: list[str] | None = None
        self.heading_level = 0
        self.heading_id = ""
        self.skip = 0
        self.title = ""
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skip += 1
        elif tag == "title":
            self.in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush_section()
            self.heading = []
            self.heading_level = int(tag[1])
            self.heading_id = dict(attrs).get("id") or ""
        elif tag in self.BLOCK:
            self._flush_par()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "title":
            self.in_title = False
        elif re.fullmatch(r"h[1-6]", tag) and self.heading is not None:
            text = re.sub(r"\s+", " ", "".join(self.heading)).strip()
            while self.path and self.path[-1][0] >= self.heading_level:
                self.path.pop()
            self.path.append((self.heading_level, text, self.heading_id or slugify(text)))
            self.heading = None
        elif tag in self.BLOCK:
            self._flush_par()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.in_title:
            self.title += data
        elif self.heading is not None:
            self.heading.append(data)
        else:
            self.buf.append(data)

    def _flush_par(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self.buf)).strip()
        self.buf.clear()
        if text:
            self.paras.append(text)

    def _flush_section(self) -> None:
        self._flush_par()
        if self.paras:
            self.sections.append(([t for _, t, _ in self.path], list(self.paras),
                                  self.path[-1][2] if self.path else ""))
        self.paras.clear()

    def close(self) -> None:
        super().close()
        self._flush_section()


def split_html(text: str, *, title: str = "", limit: int = MAX_CHARS) -> list[tuple[str, str, str]]:
    """Split an HTML article into ``(heading path, anchor, block)`` triples (``id`` attributes become anchors)."""
    parser = _HtmlSections()
    parser.feed(text)
    parser.close()
    page_title = html.unescape(parser.title).strip() or title
    out: list[tuple[str, str, str]] = []
    for heads, paras, anchor in parser.sections:
        full = [page_title] + heads if page_title and (not heads or heads[0] != page_title) else heads
        for heading, _, block in _group([(full, paras)], limit):
            out.append((heading, anchor, block))
    return out


def split_article(path: Path, *, limit: int = MAX_CHARS) -> list[Passage]:
    """Passages of one article file (Markdown, HTML or plain text), titled by the file's first heading or name."""
    text = path.read_text(encoding="utf-8", errors="replace")
    fmt = "html" if path.suffix.lower() in (".html", ".htm") else "markdown"
    return passages_from_article(text, title=path.stem.replace("_", " ").replace("-", " "), fmt=fmt,
                                 source=path.name, limit=limit)


def passages_from_article(text: str, *, title: str = "", fmt: str = "markdown", source: str = "article",
                          limit: int = MAX_CHARS) -> list[Passage]:
    """Passages of one article given as text (``fmt`` markdown — plain text is Markdown without headings — or
    html); ``title`` heads them when the article has no top heading of its own."""
    if fmt not in ("markdown", "html"):
        raise DataError([DataProblem(source, None, "format", f"unknown article format '{fmt}'",
                                     "use markdown or html")])
    if fmt == "html":
        blocks = split_html(text, title=title, limit=limit)
    else:
        has_h1 = re.search(r"^#\s", text, flags=re.M) is not None
        blocks = split_markdown(text, title="" if has_h1 else title, limit=limit)
    return [Passage(id=f"{source}#{i}", text=f"{heading}\n{block}" if heading else block, answer=block,
                    title=heading, anchor=anchor, source=source, kind="article")
            for i, (heading, anchor, block) in enumerate(blocks)]


def _pick(row: dict[str, Any], names: Sequence[str]) -> Any:
    for n in names:
        if n in row and row[n] not in (None, ""):
            return row[n]
    return None


_Q = ("question", "q", "title", "query", "prompt")
_A = ("answer", "a", "response", "reply", "text", "content", "body")
_I = ("intent", "label", "category")


def passages_from_rows(rows: Iterable[dict[str, Any]], source: str) -> list[Passage]:
    """QA rows (``question`` and ``answer``, optional ``intent``, ``id``, ``title``) → passages; every bad row
    is reported at once."""
    problems: list[DataProblem] = []
    out: list[Passage] = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            problems.append(DataProblem(source, i, None, "not an object", 'write {"question": ..., "answer": ...}'))
            continue
        q, a, intent = _pick(row, _Q), _pick(row, _A), _pick(row, _I)
        if a is None or not str(a).strip():
            problems.append(DataProblem(source, i, "answer", "missing answer text",
                                        "each row needs an answer (or text/content) column"))
            continue
        question = str(q).strip() if q is not None else ""
        title = str(row.get("title") or question)
        answer = str(a).strip()
        out.append(Passage(id=str(row.get("id") or f"{source}:{i}"),
                           text=f"{question}\n{answer}" if question else answer,
                           answer=answer, title=title, anchor=str(row.get("anchor") or ""),
                           intent=str(intent) if intent is not None else None, source=source, kind="qa"))
    if problems:
        raise DataError(problems, hint="Fix these rows of the knowledge base and import it again.")
    return out


def _read_rows(path: Path) -> list[dict[str, Any]]:
    problems: list[DataProblem] = []
    rows: list[dict[str, Any]] = []
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = [dict(r) for r in csv.DictReader(f)]
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError([DataProblem(str(path), e.lineno, None, f"invalid JSON: {e.msg}")]) from None
        if isinstance(data, dict):
            data = data.get("data") or data.get("items") or data.get("faq") or []
        rows = list(data) if isinstance(data, list) else []
    else:
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    problems.append(DataProblem(str(path), i, None, f"invalid JSON: {e.msg}"))
    if problems:
        raise DataError(problems)
    return rows


def load_knowledge(paths: Sequence[str | Path], *, limit: int = MAX_CHARS) -> list[Passage]:
    """Read QA files (JSONL/CSV/JSON) and articles (Markdown/HTML/text; a folder is read recursively) into
    passages with unique ids."""
    files: list[Path] = []
    problems: list[DataProblem] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in QA_SUFFIXES + ARTICLE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            problems.append(DataProblem(str(p), None, None, "no such file or folder"))
    for f in files:
        if f.suffix.lower() not in QA_SUFFIXES + ARTICLE_SUFFIXES:
            problems.append(DataProblem(str(f), None, None, f"unknown knowledge-base format '{f.suffix}'",
                                        "use .jsonl/.csv/.json QA pairs or .md/.html/.txt articles"))
    if problems:
        raise DataError(problems)
    passages: list[Passage] = []
    for f in files:
        if f.suffix.lower() in QA_SUFFIXES:
            passages += passages_from_rows(_read_rows(f), f.name)
        else:
            passages += split_article(f, limit=limit)
    if not passages:
        raise DataError([DataProblem(", ".join(map(str, paths)), None, None, "the knowledge base holds no passages",
                                     "add QA pairs or articles with text")])
    seen: dict[str, int] = {}
    for passage in passages:
        n = seen.get(passage.id, 0)
        seen[passage.id] = n + 1
        if n:
            passage.id = f"{passage.id}~{n}"
    return passages


def write_passages(path: Path, passages: Sequence[Passage]) -> None:
    from tuneforge.utils.fs import write_jsonl

    write_jsonl(path, (p.to_json() for p in passages))


def read_passages(path: Path) -> list[Passage]:
    with path.open(encoding="utf-8") as f:
        return [Passage.from_json(json.loads(line)) for line in f if line.strip()]
