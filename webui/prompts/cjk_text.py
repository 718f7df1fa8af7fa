"""CJK text in a prompt: which characters count as Chinese/Japanese/Korean, the runs of them a
translator gets, the regions never touched (``<lora:...>`` tags, ``__wildcards__``), full-width
punctuation turned into ASCII, and translator output made safe to put back into A1111 syntax.
The prompt translator and the glossary both build on it.
"""

from __future__ import annotations

import re

_CJK_RANGES = (
    "\u3400-\u4dbf"  # CJK Unified Ideographs Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\u3005\u3007"  # 々 〇
    "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff"  # Hiragana, Katakana
    "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"  # Hangul
    "\U00020000-\U0003134f"  # Extensions B-H
)
CJK = f"[{_CJK_RANGES}]"
CJK_RE = re.compile(CJK)
# A run: CJK characters, optionally with spaces or digits between them, optionally led by a
# number written right before them ("20岁", "3个女孩") that is not part of a weight or a word.
RUN_RE = re.compile(
    rf"(?:(?<![A-Za-z0-9_.:])\d+(?:\.\d+)?(?={CJK}))?{CJK}+(?:[ \t\u00b7\u30fb]*\d*{CJK}+)*"
)
# Regions never touched: extra networks <lora:...>, <hypernet:...>; wildcards __name__.
PROTECTED_RE = re.compile(r"<[^<>\n]*>|__[^\s_][^\s]*?__")

_PUNCT_MAP = {
    "，": ", ", "、": ", ", "。": ", ", "；": "; ", "：": ":", "！": "!", "？": "?",
    "（": "(", "）": ")", "【": "[", "】": "]", "［": "[", "］": "]", "｛": "{", "｝": "}",
    "《": "", "》": "", "〈": "", "〉": "", "「": "", "」": "", "『": "", "』": "",
    "“": '"', "”": '"', "‘": "'", "’": "'", "～": "~", "｜": "|", "\u3000": " ",
    "…": " ", "—": "-", "·": " ",
}


def has_cjk(text: str) -> bool:
    """True if ``text`` contains Chinese (or Japanese/Korean) characters."""
    return bool(text) and CJK_RE.search(text) is not None


def _normalize_plain(text: str) -> str:
    out = []
    for ch in text:
        if ch in _PUNCT_MAP:
            out.append(_PUNCT_MAP[ch])
        elif "\uff01" <= ch <= "\uff5e":  # full-width ASCII forms
            out.append(chr(ord(ch) - 0xFEE0))
        else:
            out.append(ch)
    s = "".join(out)
    # ", " produced from "，" next to an ASCII comma/space: keep it tidy.
    s = re.sub(r" +,", ",", s)
    s = re.sub(r",(?: *,)+", ",", s)
    s = re.sub(r", {2,}", ", ", s)
    return s


def normalize_punctuation(text: str) -> str:
    """Full-width punctuation to ASCII (outside ``<...>`` extra-network tags)."""
    parts = []
    last = 0
    for m in PROTECTED_RE.finditer(text):
        parts.append(_normalize_plain(text[last:m.start()]))
        parts.append(m.group(0))
        last = m.end()
    parts.append(_normalize_plain(text[last:]))
    out = "".join(parts)
    # "长发，" -> "长发," rather than a trailing space the user did not type.
    return out.rstrip(" ") if not text.endswith(" ") else out



_SYNTAX_CHARS_RE = re.compile(r"[()\[\]{}<>|:\\]")


def clean_output(text: str) -> str:
    """Make translator output safe to insert into A1111 syntax."""
    text = _normalize_plain(text or "")
    text = _SYNTAX_CHARS_RE.sub(" ", text)
    text = re.sub(r"\b(BREAK|AND)\b", lambda m: m.group(0).lower(), text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+,", ",", text)
    return text.strip(" ,.;!?\"'")


# Emoji and other pictographs: CLIP's tokenizer reads them poorly; they are kept and named.
_SYMBOL_RE = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\U0001fb00-\U0001fbff\ufe0f\u200d]+"
)


def symbol_warnings(text: str) -> list[str]:
    """A warning naming the emoji/pictographs in ``text`` (kept as typed), or []."""
    found = [m.group(0).replace("\ufe0f", "").replace("\u200d", "") for m in _SYMBOL_RE.finditer(text)]
    found = [f for f in dict.fromkeys(found) if f]
    return [f"Emoji and symbols kept as typed: {' '.join(found)}"] if found else []
