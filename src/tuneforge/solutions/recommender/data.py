"""Interactions and items for the recommender: read CSV/JSON Lines, map columns, validate every row at once.

Ids are kept as strings (``42`` in a CSV and ``"42"`` in JSON are the same user). An interaction is
``(user, item, rating, timestamp)``; rating and timestamp are optional (implicit feedback: every event is a
positive). An item needs an id and some text; ``title`` (shown in explanations) defaults to the start of the text.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneforge.data.formats import read_rows
from tuneforge.errors import DataError, DataProblem

__all__ = ["Interaction", "InteractionColumns", "Item", "ItemColumns", "check_known_items", "load_interactions",
           "load_items", "parse_interactions", "parse_items"]


@dataclass(frozen=True)
class Interaction:
    user: str
    item: str
    rating: float | None = None
    timestamp: float | None = None


@dataclass(frozen=True)
class Item:
    item_id: str
    text: str
    title: str
    genres: tuple[str, ...] = ()


@dataclass(frozen=True)
class InteractionColumns:
    """Which columns hold the user, the item, the rating (optional) and the timestamp (optional)."""

    user: str = "user_id"
    item: str = "item_id"
    rating: str | None = "rating"
    timestamp: str | None = "timestamp"


@dataclass(frozen=True)
class ItemColumns:
    """Which columns hold the item id, its text, its title (optional) and genres (optional, list or ``a|b``)."""

    item: str = "item_id"
    text: str = "text"
    title: str | None = "title"
    genres: str | None = "genres"
    extra_text: tuple[str, ...] = field(default=())


def _id(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    s = str(value).strip()
    return s or None


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x


def parse_interactions(rows: Iterable[tuple[int | None, dict[str, Any]]], *, file: str,
                       columns: InteractionColumns | None = None) -> list[Interaction]:
    """Validate ``(line, row)`` pairs into interactions; every problem is reported in one :class:`DataError`."""
    cols = columns or InteractionColumns()
    out: list[Interaction] = []
    problems: list[DataProblem] = []
    for line, row in rows:
        user, item = _id(row.get(cols.user)), _id(row.get(cols.item))
        if user is None:
            problems.append(DataProblem(file, line, cols.user, "missing or empty user id",
                                        hint=f"every row needs a user id in '{cols.user}' (see --user-column)"))
        if item is None:
            problems.append(DataProblem(file, line, cols.item, "missing or empty item id",
                                        hint=f"every row needs an item id in '{cols.item}' (see --item-column)"))
        raw_rating = row.get(cols.rating) if cols.rating is not None else None
        raw_ts = row.get(cols.timestamp) if cols.timestamp is not None else None
        rating = _number(raw_rating)
        if rating is not None and not math.isfinite(rating):
            problems.append(DataProblem(file, line, cols.rating, f"rating {raw_rating!r} is not a number",
                                        hint="use a number (e.g. 1-5) or leave the cell empty for implicit feedback"))
        ts = _number(raw_ts)
        if ts is not None and not math.isfinite(ts):
            problems.append(DataProblem(file, line, cols.timestamp,
                                        f"timestamp {raw_ts!r} is not a number",
                                        hint="use unix seconds, or leave the cell empty"))
        if user is not None and item is not None and (rating is None or math.isfinite(rating)) \
                and (ts is None or math.isfinite(ts)):
            out.append(Interaction(user, item, rating, ts))
    if problems:
        raise DataError(problems)
    if not out:
        raise DataError([DataProblem(file, None, None, "no interactions",
                                     hint="the file needs at least one row of user id, item id")])
    return out


def parse_items(rows: Iterable[tuple[int | None, dict[str, Any]]], *, file: str,
                columns: ItemColumns | None = None) -> list[Item]:
    """Validate ``(line, row)`` pairs into items (unique ids, non-empty text)."""
    cols = columns or ItemColumns()
    out: list[Item] = []
    problems: list[DataProblem] = []
    seen: dict[str, int | None] = {}
    for line, row in rows:
        item = _id(row.get(cols.item))
        if item is None:
            problems.append(DataProblem(file, line, cols.item, "missing or empty item id",
                                        hint=f"every item needs an id in '{cols.item}' (see --item-id-column)"))
            continue
        if item in seen:
            first = seen[item]
            problems.append(DataProblem(file, line, cols.item, f"item id {item!r} repeats"
                                        + (f" (first on line {first})" if first is not None else ""),
                                        hint="give each item one row"))
            continue
        seen[item] = line
        title_raw = row.get(cols.title) if cols.title else None
        title = str(title_raw).strip() if isinstance(title_raw, (str, int, float)) else ""
        text_raw = row.get(cols.text)
        text = str(text_raw).strip() if isinstance(text_raw, (str, int, float)) else ""
        extras = [str(row[c]).strip() for c in cols.extra_text if row.get(c) not in (None, "")]
        if not text and title:
            text = title
        text = ". ".join([text, *extras]) if extras else text
        if not text:
            problems.append(DataProblem(file, line, cols.text, f"item {item!r} has no text",
                                        hint=f"put a description in '{cols.text}' (or a title in '{cols.title}'); "
                                             "text is what the recommender learns items from"))
            continue
        genres_raw = row.get(cols.genres) if cols.genres else None
        if isinstance(genres_raw, list):
            genres = tuple(str(g).strip() for g in genres_raw if str(g).strip())
        elif isinstance(genres_raw, str) and genres_raw.strip():
            genres = tuple(g.strip() for g in genres_raw.split("|") if g.strip())
        else:
            genres = ()
        out.append(Item(item, text, title or text[:60], genres))
    if problems:
        raise DataError(problems)
    if not out:
        raise DataError([DataProblem(file, None, None, "no items", hint="the file needs at least one item with text")])
    return out


def load_interactions(path: str | os.PathLike[str], *, columns: InteractionColumns | None = None) -> list[Interaction]:
    """Read interactions from a CSV/TSV/JSON Lines file (columns ``user_id,item_id[,rating][,timestamp]``)."""
    cols = columns or InteractionColumns()
    _, rows = read_rows(path)
    if rows:
        missing = [c for c in (cols.user, cols.item) if c not in rows[0].data]
        if missing:
            have = ", ".join(map(str, rows[0].data)) or "(none)"
            raise DataError([DataProblem(str(path), rows[0].line, c, f"no column '{c}' (columns: {have})",
                                         hint="name the column with --user-column / --item-column")
                             for c in missing])
    return parse_interactions(((r.line, r.data) for r in rows), file=str(path), columns=cols)


def load_items(path: str | os.PathLike[str], *, columns: ItemColumns | None = None) -> list[Item]:
    """Read items from a JSON Lines/CSV file (``item_id``, ``text``, optional ``title`` and ``genres``)."""
    cols = columns or ItemColumns()
    _, rows = read_rows(path)
    if rows and cols.item not in rows[0].data:
        have = ", ".join(map(str, rows[0].data)) or "(none)"
        raise DataError([DataProblem(str(path), rows[0].line, cols.item, f"no column '{cols.item}' (columns: {have})",
                                     hint="name the id column with --item-id-column")])
    return parse_items(((r.line, r.data) for r in rows), file=str(path), columns=cols)


def check_known_items(interactions: Sequence[Interaction], items: Sequence[Item], *, file: str) -> None:
    """Every interaction's item must be in the item file (text is what the model learns from)."""
    known = {it.item_id for it in items}
    unknown = sorted({x.item for x in interactions if x.item not in known})
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise DataError([DataProblem(file, None, "item_id", f"{len(unknown)} item id(s) have no row in the items "
                                     f"file: {shown}", hint="add those items (with text) to the items file, or drop "
                                                            "their interactions")])
