"""Reading a data file as text, refusing what is not one: special files (a named pipe would hang the reader, a link
to ``/dev/zero`` would be read until memory runs out), files over a size cap and binary files.

UTF-8 (with or without a BOM) is read, and so is UTF-16/UTF-32 with a BOM or UTF-16 without one (Excel's
"Unicode text"), which cannot be mistaken for anything else. A file in a legacy encoding (GBK, Big5, Shift-JIS,
Windows-1252 ...) is read when :mod:`tuneforge.data.charsets` can tell which one with confidence, with a warning
naming it; when it cannot, the file is refused with what it looks like and the command that converts it. An
``encoding`` given by the caller always wins.
"""

from __future__ import annotations

import codecs
import os
import stat
import unicodedata
from pathlib import Path

from tuneforge.data.charsets import detect_legacy
from tuneforge.errors import ConfigError, DataError, DataProblem

__all__ = ["MAX_FILE_BYTES", "open_error", "open_regular", "read_text"]

#: the largest data file read into memory (a reader holds the whole text)
MAX_FILE_BYTES = 1024**3

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))

# magic numbers of files people upload by mistake, and what to do instead
_MAGIC = ((b"PK\x03\x04", "a ZIP archive (an .xlsx or .docx file is one)",
           "open it in Excel or LibreOffice and save it as CSV UTF-8, or unzip it first"),
          (b"%PDF", "a PDF document", "export the table to CSV first"),
          (b"\x1f\x8b", "a gzip archive", "decompress it first (gunzip FILE)"),
          (b"PAR1", "a Parquet file", "convert it to JSON Lines, e.g. pandas.read_parquet(f).to_json(out, "
                                      "orient='records', lines=True, force_ascii=False)"),
          (b"SQLite format 3", "an SQLite database", "export the table to CSV first"),
          (b"\xd0\xcf\x11\xe0", "an old Office document (.xls/.doc)", "save it as CSV UTF-8 from Excel"),
          (b"\x89PNG", "a PNG image", "pass the data file, not an image"),
          (b"\xff\xd8\xff", "a JPEG image", "pass the data file, not an image"))

# Python codec name -> (iconv name, what to call it)
_ENCODINGS = {
    "big5": ("BIG5", "Traditional Chinese Big5"),
    "big5hkscs": ("BIG5-HKSCS", "Traditional Chinese Big5-HKSCS"),
    "cp950": ("CP950", "Traditional Chinese Big5 (CP950)"),
    "shift_jis": ("SHIFT_JIS", "Japanese Shift-JIS"),
    "cp932": ("CP932", "Japanese Shift-JIS (CP932)"),
    "euc_jp": ("EUC-JP", "Japanese EUC-JP"),
    "euc_kr": ("EUC-KR", "Korean EUC-KR"),
    "cp949": ("CP949", "Korean CP949"),
    "gbk": ("GBK", "Chinese GBK/GB18030"),
    "gb2312": ("GBK", "Chinese GBK/GB18030"),
    "gb18030": ("GBK", "Chinese GBK/GB18030"),
    "utf_16_le": ("UTF-16LE", "UTF-16 without a byte order mark"),
    "utf_16_be": ("UTF-16BE", "UTF-16 without a byte order mark"),
    "koi8_r": ("KOI8-R", "Cyrillic KOI8-R"),
    "cp1251": ("CP1251", "Cyrillic Windows-1251"),
}
_TRUSTED = {"big5", "big5hkscs", "cp950", "shift_jis", "cp932", "euc_jp", "koi8_r", "cp1251"}


def open_error(path: str | os.PathLike[str], e: OSError) -> DataError:
    """The data error for a file that cannot be opened: what is wrong and what to pass instead."""
    p = Path(path)
    if isinstance(e, FileNotFoundError):
        return DataError([DataProblem(str(path), None, None, "file not found",
                                      hint=f"check the path (looked in {p.resolve().parent})")])
    if isinstance(e, IsADirectoryError) or p.is_dir():
        return DataError([DataProblem(str(path), None, None, "is a folder, not a data file",
                                      hint="pass the path of one .jsonl/.csv/.tsv/.json/.conll file")])
    if isinstance(e, PermissionError):
        return DataError([DataProblem(str(path), None, None, "cannot read the file: permission denied",
                                      hint="check the file's permissions (ls -l) or copy it somewhere readable")])
    return DataError([DataProblem(str(path), None, None, f"cannot read the file: {e.strerror or e}")])


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a special file"


def open_regular(path: str | os.PathLike[str], *, max_bytes: int | None = MAX_FILE_BYTES) -> tuple[int, int]:
    """Open ``path`` for reading if it is a regular file (symbolic links followed) of at most ``max_bytes``.

    Returns ``(fd, size)``. The file is opened non-blocking and checked with ``fstat`` on the open descriptor,
    so a named pipe neither hangs the open nor can be swapped in after the check.
    """
    file = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise open_error(path, e) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise open_error(path, IsADirectoryError(file))
        if not stat.S_ISREG(st.st_mode):
            raise DataError([DataProblem(file, None, None, f"is {_kind(st.st_mode)}, not a regular file",
                                         hint="save the data to a regular file and pass its path")])
        if max_bytes is not None and st.st_size > max_bytes:
            raise DataError([DataProblem(file, None, None, f"the file is {st.st_size:,} bytes, more than the "
                                                           f"limit of {max_bytes:,} bytes",
                                         hint="split it into smaller files (e.g. split -l 1000000 FILE part-)")])
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def read_text(path: str | os.PathLike[str], *, encoding: str | None = None,
              max_bytes: int | None = MAX_FILE_BYTES, warnings: list[DataProblem] | None = None,
              detect: bool = True) -> str:
    """The text of the data file at ``path``; :class:`DataError` naming what to fix when it is not a readable text
    file. ``encoding`` forces a codec (e.g. ``"big5"``); None means UTF-8, or UTF-16/32 when marked or evident,
    or (``detect``) a legacy encoding detected with confidence, which appends a warning naming it to
    ``warnings``. ``detect=False`` refuses every file that is not UTF-8/16/32 (formats that require UTF-8)."""
    fd, size = open_regular(path, max_bytes=max_bytes)
    limit = max_bytes if max_bytes is not None else -1
    try:
        with os.fdopen(fd, "rb") as f:
            raw = f.read(limit + 1 if limit >= 0 else -1)  # the size can change after fstat: never read past it
    except OSError as e:
        raise open_error(path, e) from None
    if max_bytes is not None and len(raw) > max_bytes:
        raise DataError([DataProblem(str(path), None, None, f"the file is more than the limit of {max_bytes:,} "
                                                            "bytes", hint="split it into smaller files")])
    return decode(raw, str(path), encoding=encoding, warnings=warnings, detect=detect)


def decode(raw: bytes, file: str, *, encoding: str | None = None, warnings: list[DataProblem] | None = None,
           detect: bool = True) -> str:
    """``raw`` as text (see :func:`read_text`)."""
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConfigError(f"encoding: unknown encoding {encoding!r} (e.g. utf-8, big5, shift_jis, gbk, "
                              "cp1252, utf-16)") from None
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            raise DataError([DataProblem(file, line, None, f"line {line} cannot be decoded as {encoding}: byte "
                                                           f"0x{raw[e.start]:02x} at byte offset {e.start}",
                                         hint="check the encoding the file was saved in, or leave --encoding "
                                              "out to have it detected")]) from None
        return text[1:] if text.startswith("\ufeff") else text
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError:
                break  # a BOM followed by garbage: report it as below
    utf16 = _utf16_without_bom(raw)
    if utf16 is not None:
        return utf16
    _refuse_binary(raw, file)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        offset = e.start
        found = detect_legacy(raw) if detect else None
        if found is not None:
            if warnings is not None:
                other = {"big5": "gbk", "cp950": "gbk", "big5hkscs": "gbk", "cp1252": "cp1250"}.get(found.codec, "big5")
                warnings.append(DataProblem(
                    file, None, None, f"the file is not UTF-8: it was read as {found.label} ({found.codec})",
                    hint=f"if the text looks wrong, pass the right encoding with --encoding (e.g. --encoding {other}), "
                         "or save the file as UTF-8"))
            return found.text
        line = raw.count(b"\n", 0, offset) + 1
        column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
        name, label = guess_encoding(raw)
        base = Path(file).name
        hint = (f"it looks like {label}; save the file as UTF-8 (e.g. iconv -f {name} -t UTF-8 {base} > "
                f"utf8-{base})" + (", or pass its encoding with --encoding" if detect else ""))
        message = (f"line {line} is not valid UTF-8: byte 0x{raw[offset]:02x} at byte offset {offset} "
                   f"(byte {column} of the line) cannot be decoded")
        raise DataError([DataProblem(file, line, None, message, hint=hint)]) from None


def _utf16_without_bom(raw: bytes) -> str | None:
    """UTF-16 text without a BOM: mostly-ASCII text then has a NUL in every other byte, and only there; text in
    another script (Chinese, Japanese ...) has its line ends and separators aligned the same way instead."""
    sample = raw[: 1 << 16]
    if len(sample) < 4 or len(sample) % 2 and len(raw) == len(sample):
        return None
    even, odd = sample[0::2], sample[1::2]
    for zeros, other, codec in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if zeros.count(0) >= 0.6 * len(zeros) and other.count(0) == 0:
            try:
                return raw[: len(raw) - len(raw) % 2].decode(codec)
            except UnicodeDecodeError:
                return None
    if len(raw) % 2 or b"\x00" not in sample:
        return None
    texts = [_strict_utf16(raw, codec) for codec in ("utf-16-le", "utf-16-be")]
    found = [text for text in texts if text is not None]
    return found[0] if len(found) == 1 else None


def _strict_utf16(raw: bytes, codec: str) -> str | None:
    """``raw`` in ``codec`` if that gives lines of text: line ends, a fair share of ASCII (separators, quotes,
    keys) and no control, unassigned or private-use characters."""
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        return None
    sample = text[: 1 << 15]
    if "\n" not in sample or sum(1 for c in sample if c.isascii()) < 0.1 * len(sample):
        return None
    if any(c not in "\t\r\n" and unicodedata.category(c) in ("Cc", "Cn", "Co", "Cs") for c in sample):
        return None
    return text


def _refuse_binary(raw: bytes, file: str) -> None:
    head = raw[:16]
    for magic, what, hint in _MAGIC:
        if head.startswith(magic):
            raise DataError([DataProblem(file, None, None, f"this is not text: the file is {what}", hint=hint)])
    sample = raw[: 1 << 16]
    nul = sample.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        control = sum(1 for b in sample if b < 9 or 13 < b < 32)
        what = "a binary file" if control > 1 + len(sample) // 100 or not sample.strip(b"\x00") else "damaged text"
        raise DataError([DataProblem(file, line, None, f"this is not text: {what} (NUL byte at byte offset {nul}, "
                                                       f"line {line})",
                                     hint="pass a text data file (.jsonl, .csv, .tsv, .json, .conll) saved as UTF-8")])


def guess_encoding(raw: bytes) -> tuple[str, str]:
    """A best guess at what non-UTF-8 bytes really are, as ``(iconv name, description)``; only used for hints."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16", "UTF-16 (as Excel's 'Unicode text' writes it)"
    sample = raw[: 1 << 16]
    if len(raw) > len(sample):
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    detected = _detect(sample)
    if detected in _TRUSTED:
        return _ENCODINGS[detected]
    if _looks_gbk(sample):
        return "GBK", "Chinese GBK/GB18030"
    if detected in _ENCODINGS:
        return _ENCODINGS[detected]
    try:
        sample.decode("cp1252")
    except UnicodeDecodeError:
        return "LATIN1", "Latin-1"
    return "CP1252", "Windows-1252 (Western European)"


def _detect(sample: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    best = from_bytes(sample).best()
    return best.encoding if best is not None else None


def _looks_gbk(sample: bytes) -> bool:
    try:
        text = sample.decode("gb18030")
    except UnicodeDecodeError:
        return False
    non_ascii = [c for c in text if ord(c) > 127]
    # Latin-1 bytes sometimes decode as GB18030 too, but then the "characters" are rarely CJK.
    return bool(non_ascii) and sum(1 for c in non_ascii if _is_cjk(c)) / len(non_ascii) >= 0.8


def _is_cjk(c: str) -> bool:
    o = ord(c)
    return (0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x3000 <= o <= 0x30FF
            or 0xFF00 <= o <= 0xFFEF or 0xAC00 <= o <= 0xD7AF)
