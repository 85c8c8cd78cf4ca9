"""Which legacy encoding a data file that is not UTF-8 was saved in, when that can be told with confidence.

``charset-normalizer`` proposes candidates, but on its own it calls Shift-JIS "Korean" and French Windows-1252
"Central European", so every candidate is checked here: the whole file must decode without an error, and the text
must look like the script the encoding is for (Chinese in GBK or Big5 is mostly common Han characters, Japanese
has kana, Korean is common Hangul, Western text has a few accented letters inside words). When no candidate is
convincing, or two that read differently are equally so (``啊`` in GBK is ``가`` in Korean), the answer is None and
the caller refuses the file, naming what it looks like.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["Detected", "detect_legacy"]

#: the text examined for plausibility (the whole file must still decode)
_SAMPLE_CHARS = 1 << 18


@dataclass(frozen=True)
class Detected:
    """A confidently detected encoding: the text, the codec it was decoded with and what to call it."""

    text: str
    codec: str
    label: str


# family -> (codecs tried in order, first that decodes the whole file wins; script; what to call it)
_FAMILIES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "gb18030": (("gb18030",), "zh-hans", "Chinese GBK/GB18030"),
    "big5": (("big5", "cp950", "big5hkscs"), "zh-hant", "Traditional Chinese Big5"),
    "cp932": (("cp932",), "ja", "Japanese Shift-JIS"),
    "euc_jp": (("euc_jp",), "ja", "Japanese EUC-JP"),
    "cp949": (("cp949",), "ko", "Korean EUC-KR"),
    "cp1252": (("cp1252",), "latin", "Western European Windows-1252"),
    "cp1251": (("cp1251",), "cyrillic", "Cyrillic Windows-1251"),
    "koi8_r": (("koi8_r",), "cyrillic", "Cyrillic KOI8-R"),
}

# what charset-normalizer may answer -> the family checked. Every single-byte Latin code page is read as
# Windows-1252: charset-normalizer cannot tell them apart on Western text and ranks cp1250 first for French.
_FAMILY_OF = {
    "gb18030": "gb18030", "gbk": "gb18030", "gb2312": "gb18030", "hz": "gb18030",
    "big5": "big5", "big5hkscs": "big5", "cp950": "big5",
    "cp932": "cp932", "shift_jis": "cp932", "shift_jis_2004": "cp932", "shift_jisx0213": "cp932",
    "euc_jp": "euc_jp", "euc_jis_2004": "euc_jp", "euc_jisx0213": "euc_jp",
    "cp949": "cp949", "euc_kr": "cp949", "johab": "cp949",
    "cp1251": "cp1251", "koi8_r": "koi8_r", "koi8_u": "koi8_r",
    **{name: "cp1252" for name in (
        "cp1250", "cp1252", "cp1254", "cp1257", "latin_1", "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_9",
        "iso8859_10", "iso8859_13", "iso8859_14", "iso8859_15", "iso8859_16", "cp437", "cp850", "cp852", "cp858",
        "cp775", "mac_roman", "mac_latin2", "mac_iceland", "mac_turkish", "hp_roman8")},
}

# the Latin family's punctuation and symbols that Western text really contains
_LATIN_SYMBOLS = set("€‚„…†‡‰‹›‘’“”•–—™¡¢£¥§©«®°±²³´µ¶·¸¹º»¼½¾¿×÷\xa0")
_LATIN_RUN = re.compile(r"[^\x00-\x7f]{4,}")
# a symbol between two letters: Central European text read as Windows-1252 ("Za¿ó³æ" for "Zażółć")
_LATIN_INSIDE = re.compile(
    "(?<=[^\\W\\d_])[" + re.escape("".join(sorted(_LATIN_SYMBOLS - set("’‑")))) + "](?=[^\\W\\d_])")
_CJK_PUNCT = set("·—‘’“”…‧•※─")

# the most frequent characters of Chinese (simplified and traditional) and Korean text
_FREQUENT_ZH = set(
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作里用道行所然家种"
    "事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因只从想实日军者意无力它与长把机十民第"
    "公此已工使情明性知全三又关点正业外将两高间由问很最重并物手应战向头文体政美相见被利什二等产或新己制身果加西斯月话合"
    "回特代内信表化老给世位次度门任常先海通教儿原东声提立及比员解水名真论处走义各入几口认条平系气题活尔更别打女变四神总"
    "何电数安少报才结反受目太量再感建务做接必场件计管期市直德资命山金指克许统区保至队形社便空决治展马科司五基眼书非则听"
    "白却界达光放强即像难且权思王象完设式色路记南品住告类求据程北边死张该交规万取拉格望觉术领共确传师观清今切院让识候带"
    "导争运笑飞风步改收根干造言联持组每济车亲极林服快办议往元英士证近失转夫令准布始怎呢存未远叫台单影具罗字爱击流备兵连"
    "调深商算质团集百需价花党华城石级整府离况亚请技际约示复病息究线似官火断精满支视消越器容照须九增研写称企八功吗包片史"
    "委乎查轻易早曾除农找装广显吧阿李标谈吃图念六引历首医局突专费号尽另周较注语仅考落青随选列武红响虽推势参希古众构房半"
    "节土投某案黑维革划敌致陈律足态护七兴派孩验责营星够章音跟志底站严巴例防族供效续施留讲型料终答紧黄绝奇察母京段依批群"
    "項這個們來為國說時會對著過發後裡種經麼學現當沒動還進樣理問長機與實無軍見門開從兩間關點業將體戰頭價務總電數報結變"
    "區書車東處師權話應發現點還")
_FREQUENT_KO = set("이다에의는로하을가고지서한은기으년대사시를리도인스일요니습게수있"
                   "없했해그나우자제정만어아보주라전부상적들것원말좋많너무안되작"
                   "그렇음했면까내데요좀잘더또같아요")
_MIN_CJK = 6  # fewer CJK characters than this cannot tell GBK from Big5 or Korean

# a candidate this far below the best that reads differently makes the answer ambiguous
_MARGIN = 0.2
_MIN_SCORE = 0.6


def detect_legacy(raw: bytes) -> Detected | None:
    """The text of ``raw`` (bytes that are not UTF-8) in the one legacy encoding it plausibly is, or None."""
    if _damaged_utf8(raw):
        return None
    scored: list[tuple[float, int, Detected]] = []
    for order, family in enumerate(_candidates(raw)):
        codecs, script, label = _FAMILIES[family]
        for codec in codecs:
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError:
                continue
            score = _score(text[:_SAMPLE_CHARS], script, codec)
            if score is not None:
                scored.append((score, -order, Detected(text, codec, label)))
            break
    if not scored:
        return None
    scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
    best_score, _, best = scored[0]
    if best_score < _MIN_SCORE:
        return None
    for score, _, other in scored[1:]:
        if score >= best_score - _MARGIN and other.text != best.text:
            return None
    return best


def _candidates(raw: bytes) -> list[str]:
    """The families charset-normalizer proposes for ``raw``, its best first."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - a declared dependency
        return []
    sample = raw[: 1 << 16]
    if len(raw) > len(sample):
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    families: dict[str, None] = {}
    for match in from_bytes(sample):
        family = _FAMILY_OF.get(match.encoding)
        if family is not None:
            families.setdefault(family, None)
    return list(families)


def _damaged_utf8(raw: bytes) -> bool:
    """UTF-8 with a few bad bytes (a truncated or concatenated file): most non-ASCII bytes are valid UTF-8."""
    non_ascii = len(raw.translate(None, bytes(range(128))))
    bad = raw.decode("utf-8", "replace").count("\ufffd")
    return non_ascii > 0 and bad < 0.25 * non_ascii


def _score(text: str, script: str, codec: str) -> float | None:
    """How much ``text`` looks like ``script`` (share of common characters, 0..1); None when it does not at all."""
    chars = [c for c in text if ord(c) > 127]
    if not chars or any(unicodedata.category(c) in ("Cc", "Cn", "Co", "Cs") for c in chars):
        return None
    if "\x00" in text:
        return None
    return _SCORERS[script](text, chars, codec)


def _is_han(c: str) -> bool:
    o = ord(c)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF


def _is_cjk_punct(c: str) -> bool:
    o = ord(c)
    return 0x3000 <= o <= 0x303F or 0xFF01 <= o <= 0xFF60 or 0xFFE0 <= o <= 0xFFEF or c in _CJK_PUNCT


def _level1(c: str, codec: str, low: int, high: int) -> bool:
    """Whether ``c`` is among the common characters of ``codec`` (lead byte in ``low..high``)."""
    try:
        b = c.encode(codec)
    except UnicodeEncodeError:
        return False
    return len(b) == 2 and low <= b[0] <= high


def _chinese(text: str, chars: list[str], codec: str) -> float | None:
    han = [c for c in chars if _is_han(c)]
    other = len(chars) - len(han) - sum(1 for c in chars if _is_cjk_punct(c))
    if len(han) < _MIN_CJK or other > 0.03 * len(chars) or len(han) < 0.5 * len(chars):
        return None
    if codec.startswith("gb"):  # GB2312 level 1: the 3,755 most used simplified characters
        level1 = sum(1 for c in han if _level1(c, "gb2312", 0xB0, 0xD7))
    else:  # Big5 level 1: the 5,401 most used traditional characters
        level1 = sum(1 for c in han if _level1(c, "big5", 0xA4, 0xC6))
    if level1 < 0.8 * len(han):
        return None
    # Korean EUC-KR read as GBK is level-1 Han too, but random ones: real text is full of the most frequent
    return min(1.0, sum(1 for c in han if c in _FREQUENT_ZH) / len(han) / 0.5)


def _japanese(text: str, chars: list[str], codec: str) -> float | None:
    kana = [c for c in chars if 0x3041 <= ord(c) <= 0x30FF]
    han = [c for c in chars if _is_han(c)]
    half = sum(1 for c in chars if 0xFF61 <= ord(c) <= 0xFF9F)
    other = len(chars) - len(kana) - len(han) - half - sum(1 for c in chars if _is_cjk_punct(c))
    if len(kana) + len(han) < _MIN_CJK or len(kana) < 0.1 * len(chars) or half > 0.2 * len(chars) \
            or other > 0.03 * len(chars):
        return None
    common = len(kana) + sum(1 for c in han if _level1(c, "cp932", 0x88, 0x98))  # JIS level 1 kanji
    return common / (len(kana) + len(han))


def _korean(text: str, chars: list[str], codec: str) -> float | None:
    hangul = [c for c in chars if 0xAC00 <= ord(c) <= 0xD7A3]
    other = len(chars) - len(hangul) - sum(1 for c in chars if _is_cjk_punct(c))
    if len(hangul) < _MIN_CJK or other > 0.03 * len(chars):  # modern Korean has next to no Hanja
        return None
    # KS X 1001's 2,350 syllables cover real Korean text; Shift-JIS read as CP949 gives the rare others
    if sum(1 for c in hangul if _level1(c, "euc_kr", 0xB0, 0xC8)) < 0.9 * len(hangul):
        return None
    return min(1.0, sum(1 for c in hangul if c in _FREQUENT_KO) / len(hangul) / 0.5)


def _latin(text: str, chars: list[str], codec: str) -> float | None:
    letters = [c for c in chars if c.isalpha()]
    if any(not (c.isalpha() and ord(c) <= 0x17F or c in "ƒŠšŒœŽžŸ" or c in _LATIN_SYMBOLS) for c in chars):
        return None
    ascii_letters = sum(1 for c in text if c.isascii() and c.isalpha())
    # accented letters sit inside words of plain ones; CJK bytes read as Latin give long runs of them
    if len(letters) < 0.5 * len(chars) or len(letters) > 0.4 * (ascii_letters + len(letters)) \
            or _LATIN_RUN.search(text) or _LATIN_INSIDE.search(text):
        return None
    return 1.0


def _cyrillic(text: str, chars: list[str], codec: str) -> float | None:
    cyr = [c for c in chars if 0x400 <= ord(c) <= 0x4FF]
    latin = sum(1 for c in text if c.isascii() and c.isalpha())
    if len(cyr) < 0.9 * len(chars) or len(cyr) < latin:
        return None
    # real text is mostly lower case; Windows-1251 read as KOI8-R (or the reverse) swaps the cases
    return sum(1 for c in cyr if c.islower()) / len(cyr)


_SCORERS = {"zh-hans": _chinese, "zh-hant": _chinese, "ja": _japanese, "ko": _korean, "latin": _latin,
            "cyrillic": _cyrillic}
