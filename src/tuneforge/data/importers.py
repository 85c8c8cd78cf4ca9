"""Open-data import: ``tuneforge data import SRC -o out.jsonl`` turns a Parquet file, an Excel workbook, a
Hugging Face ``datasets`` folder (``save_to_disk``) or a dataset in the Hugging Face hub cache into JSON Lines that
``tuneforge train`` reads.

Sources, told apart by what is on disk (nothing is ever downloaded):

- ``*.parquet`` (pyarrow), ``*.xlsx``/``*.xlsm`` (openpyxl; the first row is the header), ``*.jsonl``, ``*.json``
  and ``*.csv`` files;
- a folder written by ``Dataset.save_to_disk`` (``state.json``) or ``DatasetDict.save_to_disk``
  (``dataset_dict.json``: one split is read, ``train`` unless ``split`` says otherwise);
- the hub cache: a ``datasets--owner--name`` folder (the snapshot ``refs/main`` names, else the newest), a
  ``snapshots/<sha>`` folder, any folder of data files, or ``owner/name`` looked up in the cache folder
  (as huggingface_hub finds it: ``$HF_HUB_CACHE``, ``$HF_HOME`` ...). A split's files are those whose path
  names it (``data/train-00000-of-00001.parquet``, ``train.jsonl``, ``default/train/0000.parquet``).

Integer labels of a ``ClassLabel`` feature become their names. ``fields`` renames columns (``{"text":
"content"}`` writes the ``content`` column as ``text``). A missing field or an unreadable file is a
:class:`~tuneforge.errors.DataError` naming the file and the field.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError, DataProblem

__all__ = ["DATA_SUFFIXES", "ImportResult", "hub_cache_dir", "import_records", "resolve_source"]

DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".xlsx", ".xlsm")
_SPLIT_WORDS = ("train", "validation", "valid", "dev", "test")


@dataclass
class ImportResult:
    """What an import read and wrote."""

    kind: str
    files: list[str]
    records: int = 0
    columns: list[str] = field(default_factory=list)
    split: str | None = None
    splits: list[str] = field(default_factory=list)
    class_labels: dict[str, list[str]] = field(default_factory=dict)


def _problem(file: str | os.PathLike[str], message: str, *, hint: str | None = None, field: str | None = None,
             line: int | None = None) -> DataError:
    return DataError([DataProblem(str(file), line, field, message, hint)])


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder as huggingface_hub resolves it (``$HF_HUB_CACHE``, ``$HF_HOME``, the XDG
    cache), with ``$HF_HUB_CACHE`` read now rather than when huggingface_hub was imported. Read only: nothing is
    downloaded into it."""
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def _snapshot(repo: Path) -> Path:
    snaps = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.is_file():
        sha = ref.read_text(encoding="utf-8").strip()
        if (snaps / sha).is_dir():
            return snaps / sha
    found = sorted((p for p in snaps.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime) \
        if snaps.is_dir() else []
    if not found:
        raise _problem(repo, "no snapshot in this hub cache folder",
                       hint="the dataset was never downloaded here; copy its files into the cache or give a folder")
    return found[-1]


def resolve_source(src: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
                   ) -> tuple[str, Path]:
    """``(kind, path)`` for an import source: ``file``, ``saved_dataset``, ``saved_dataset_dict`` or ``folder``
    (a hub snapshot or any folder of data files)."""
    path = Path(src).expanduser()
    if not path.exists():
        name = str(src).removeprefix("hf://").removeprefix("datasets/")
        if re.fullmatch(r"[\w.-]+/[\w.-]+", name):
            cache = Path(cache_dir) if cache_dir else hub_cache_dir()
            repo = cache / f"datasets--{name.replace('/', '--')}"
            if repo.is_dir():
                return "folder", _snapshot(repo)
            raise _problem(src, f"no such file or folder, and {name} is not in the hub cache ({cache})",
                           hint="give a local path, or --cache-dir where the dataset was downloaded; "
                                "TuneForge never downloads it")
        raise _problem(src, "no such file or folder")
    if path.is_file():
        if path.suffix.lower() not in DATA_SUFFIXES:
            hint = "save the sheet as .xlsx" if path.suffix.lower() == ".xls" else None
            raise _problem(path, f"cannot import a '{path.suffix}' file (import {', '.join(DATA_SUFFIXES)})",
                           hint=hint)
        return "file", path
    if (path / "dataset_dict.json").is_file():
        return "saved_dataset_dict", path
    if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():
        return "saved_dataset", path
    if path.name.startswith("datasets--") and (path / "snapshots").is_dir():
        return "folder", _snapshot(path)
    return "folder", path


def _split_of(rel: str) -> str | None:
    parts = re.split(r"[/\\._-]+", rel.lower())
    for word in parts:
        if word in _SPLIT_WORDS:
            return word
    return None


def _folder_files(folder: Path, split: str | None) -> tuple[list[Path], str | None, list[str]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise _problem(folder, f"no data files ({', '.join(DATA_SUFFIXES)}) in this folder")
    by_split: dict[str | None, list[Path]] = {}
    for p in files:
        by_split.setdefault(_split_of(str(p.relative_to(folder))), []).append(p)
    splits = sorted(s for s in by_split if s is not None)
    if split is not None:
        if split not in by_split:
            raise _problem(folder, f"no files of split {split!r} (splits found: {', '.join(splits) or 'none'})",
                           hint="choose one with --split")
        return by_split[split], split, splits
    if not splits:
        return files, None, []
    chosen = "train" if "train" in by_split else splits[0] if len(splits) == 1 else None
    if chosen is None:
        raise _problem(folder, f"several splits and none is train: {', '.join(splits)}", hint="choose with --split")
    return by_split[chosen], chosen, splits


# --- readers: each yields (line or row number, record) ----------------------------------------------------------


def _hf_class_labels(features: Mapping[str, Any]) -> dict[str, list[str]]:
    return {k: list(v["names"]) for k, v in features.items()
            if isinstance(v, dict) and v.get("_type") == "ClassLabel" and v.get("names")}


def _read_parquet(path: Path, result: ImportResult) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 (pyarrow raises several kinds for a bad file)
        raise _problem(path, f"not a readable Parquet file: {e}") from None
    meta = pf.schema_arrow.metadata or {}
    if b"huggingface" in meta:
        try:
            info = json.loads(meta[b"huggingface"])
            result.class_labels.update(_hf_class_labels(info.get("info", {}).get("features", {})))
        except (ValueError, AttributeError):
            pass
    n = 0
    for batch in pf.iter_batches(batch_size=2048):
        for rec in batch.to_pylist():
            n += 1
            yield n, rec


def _read_excel(path: Path, sheet: str | None) -> Iterator[tuple[int, dict[str, Any]]]:
    import openpyxl
    from openpyxl.utils import get_column_letter

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # noqa: BLE001 (a corrupt or encrypted workbook)
        raise _problem(path, f"not a readable Excel workbook: {e}", hint="save it as .xlsx") from None
    try:
        if sheet is not None and sheet not in wb.sheetnames:
            raise _problem(path, f"no sheet {sheet!r} (sheets: {', '.join(wb.sheetnames)})", field="sheet")
        ws = wb[sheet] if sheet is not None else wb.worksheets[0]
        header: list[str] | None = None
        for row_no, row in enumerate(ws.iter_rows(values_only=True), 1):
            if all(v is None or (isinstance(v, str) and not v.strip()) for v in row):
                continue
            if header is None:
                header = []
                for i, v in enumerate(row):
                    name = str(v).strip() if v is not None else ""
                    if not name:
                        if any(x is not None for x in row[i:]):
                            raise _problem(path, f"column {get_column_letter(i + 1)} has no name in the header",
                                           line=row_no, hint="the first row must name every column")
                        break
                    if name in header:
                        raise _problem(path, f"column name {name!r} appears twice in the header", line=row_no,
                                       field=name)
                    header.append(name)
                continue
            yield row_no, {h: (row[i] if i < len(row) else None) for i, h in enumerate(header)}
    finally:
        wb.close()


def _read_json(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig") as f:
        first = f.read(1)
        while first and first.isspace():
            first = f.read(1)
        f.seek(0)
        if first == "[" and path.suffix.lower() == ".json":
            try:
                rows = json.load(f)
            except json.JSONDecodeError as e:
                raise _problem(path, f"not valid JSON: {e.msg}", line=e.lineno) from None
            for n, rec in enumerate(rows, 1):
                if not isinstance(rec, dict):
                    raise _problem(path, f"item {n} is not an object")
                yield n, rec
            return
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise _problem(path, f"not valid JSON: {e.msg}", line=n) from None
            if not isinstance(rec, dict):
                raise _problem(path, "a line must be a JSON object", line=n)
            yield n, rec


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        for n, rec in enumerate(csv.DictReader(f), 2):
            yield n, dict(rec)


def _read_file(path: Path, result: ImportResult, sheet: str | None) -> Iterator[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path, result)
    if suffix in (".xlsx", ".xlsm"):
        return _read_excel(path, sheet)
    if suffix == ".csv":
        return _read_csv(path)
    return _read_json(path)


def _read_saved(path: Path, kind: str, split: str | None, result: ImportResult
                ) -> Iterator[tuple[int, dict[str, Any]]]:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    if kind == "saved_dataset_dict":
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        result.splits = list(splits)
        chosen = split or ("train" if "train" in splits else splits[0] if len(splits) == 1 else None)
        if chosen is None or chosen not in splits:
            raise _problem(path, f"no split {chosen!r} (splits: {', '.join(splits)})" if chosen else
                           f"several splits and none is train: {', '.join(splits)}", hint="choose with --split")
        result.split = chosen
        path = path / chosen
    elif split is not None:
        raise _problem(path, f"--split {split}: this folder holds one dataset (saved without splits)")
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 (datasets raises several kinds for a damaged folder)
        raise _problem(path, f"not a readable datasets folder: {e}") from None
    features = {k: v for k, v in ds.features.items() if isinstance(v, datasets.ClassLabel)}
    result.class_labels.update({k: list(v.names) for k, v in features.items()})
    for n, rec in enumerate(ds, 1):
        yield n, dict(rec)


# --- writing -----------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def import_records(src: str | os.PathLike[str], output: str | os.PathLike[str], *, split: str | None = None,
                   fields: Mapping[str, str] | None = None, sheet: str | None = None,
                   cache_dir: str | os.PathLike[str] | None = None, limit: int | None = None) -> ImportResult:
    """Read ``src`` (see the module docstring) and write its records to ``output`` as JSON Lines, atomically.

    Args:
        split: the split to read (default: ``train`` when there are several).
        fields: output name -> source column, e.g. ``{"text": "content", "label": "category"}``.
        sheet: the Excel sheet (default: the first).
        cache_dir: the hub cache to look ``owner/name`` up in.
        limit: at most this many records.

    Raises:
        DataError: an unreadable source, a missing split, or a mapped field that is not in the data.
    """
    kind, path = resolve_source(src, cache_dir=cache_dir)
    result = ImportResult(kind=kind, files=[str(path)])
    if kind in ("saved_dataset", "saved_dataset_dict"):
        sources: list[tuple[Path, Iterator[tuple[int, dict[str, Any]]]]] = [
            (path, _read_saved(path, kind, split, result))]
    else:
        if kind == "folder":
            files, result.split, result.splits = _folder_files(path, split)
        else:
            files = [path]
            if split is not None:
                raise _problem(path, f"--split {split}: a single file has no splits")
        result.files = [str(p) for p in files]
        sources = [(p, _read_file(p, result, sheet)) for p in files]
    mapping = dict(fields or {})
    out = Path(output)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    from tuneforge.utils.fs import storage_errors

    with storage_errors(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tmp.open("w", encoding="utf-8") as f:
                for file, rows in sources:
                    checked = False
                    for line, rec in rows:
                        if not checked:
                            _check_fields(file, line, rec, mapping)
                            checked = True
                        row = _mapped(rec, mapping, result.class_labels)
                        for k in row:
                            if k not in result.columns:
                                result.columns.append(k)
                        f.write(json.dumps(row, ensure_ascii=False, default=_jsonable) + "\n")
                        result.records += 1
                        if limit is not None and result.records >= limit:
                            break
                    if limit is not None and result.records >= limit:
                        break
                f.flush()
                os.fsync(f.fileno())
            if result.records == 0:
                raise _problem(result.files[0] if result.files else src, "no records to import",
                               hint="check the file (and --split, --sheet)")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return result


def _check_fields(file: Path, line: int, rec: Mapping[str, Any], mapping: Mapping[str, str]) -> None:
    missing = [(target, source) for target, source in mapping.items() if source not in rec]
    if missing:
        have = ", ".join(list(rec)[:20])
        raise DataError([DataProblem(str(file), line, source, f"no field {source!r} for {target} (fields: {have})",
                                     f"name an existing field with --{target.replace('_', '-')}-field")
                         for target, source in missing])


def _mapped(rec: Mapping[str, Any], mapping: Mapping[str, str], class_labels: Mapping[str, list[str]]
            ) -> dict[str, Any]:
    def value(key: str) -> Any:
        v = rec[key]
        names = class_labels.get(key)
        if names is not None and isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(names):
            return names[v]
        return v

    sources, targets = set(mapping.values()), set(mapping)
    row = {target: value(source) for target, source in mapping.items()}
    row.update({k: value(k) for k in rec if k not in sources and k not in targets})
    return row
