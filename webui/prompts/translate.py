"""Translate Chinese prompt text to English while keeping A1111 prompt syntax intact.

The CLIP text encoder only understands English, so CJK text in a prompt is translated before
generation. Only the runs of CJK characters are sent to a translator; everything else stays as
typed: ``(红色头发:1.3)`` becomes ``(red hair:1.3)``, ``<lora:名字:0.8>`` is untouched (LoRA
names are file names), and ``BREAK``, ``AND``, ``[a:b:0.5]``, commas, English words and numbers
are preserved. Full-width punctuation typed with a Chinese input method (，：（）【】) is turned
into its ASCII form first so that weights and brackets work.

Translators (anything with ``translate(text: str) -> str``):

* :class:`GlossaryTranslator`: offline, a portrait glossary (``glossary_zh.json``) with
  longest-match segmentation and a few grammar rules for 的/穿着/一个 ... ; unknown words are
  kept as they are and reported.
* :class:`MarianTranslator`: a MarianMT zh->en model (e.g. Helsinki-NLP/opus-mt-zh-en) from a
  folder or the local Hugging Face cache; never downloads, loads on first use.

:func:`make_translator` picks one from a setting string; :func:`translate_prompt` does the
syntax-aware work and returns a :class:`TranslationResult` with warnings for the UI.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import unicodedata
import warnings as _warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

from webui.errors import UserError

__all__ = [
    "MARIAN_REPO_ID",
    "GLOSSARY_PATH",
    "TRANSLATION_SETTINGS",
    "Translator",
    "TranslationResult",
    "has_cjk",
    "normalize_punctuation",
    "translate_prompt",
    "load_glossary",
    "GlossaryTranslator",
    "MarianTranslator",
    "find_cached_marian",
    "make_translator",
]

log = logging.getLogger(__name__)

MARIAN_REPO_ID = "Helsinki-NLP/opus-mt-zh-en"
GLOSSARY_PATH = Path(__file__).with_name("glossary_zh.json")
TRANSLATION_SETTINGS = ("auto", "glossary", "marian", "off")

# ---------------------------------------------------------------------------------------------
# Character classes

_CJK_RANGES = (
    "\u3400-\u4dbf"  # CJK Unified Ideographs Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\u3005\u3007"  # 々 〇
    "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff"  # Hiragana, Katakana
    "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"  # Hangul
    "\U00020000-\U0003134f"  # Extensions B-H
)
_CJK = f"[{_CJK_RANGES}]"
_CJK_RE = re.compile(_CJK)
# A run: CJK characters, optionally with spaces or digits between them, optionally led by a
# number written right before them ("20岁", "3个女孩") that is not part of a weight or a word.
_RUN_RE = re.compile(
    rf"(?:(?<![A-Za-z0-9_.:])\d+(?:\.\d+)?(?={_CJK}))?{_CJK}+(?:[ \t\u00b7\u30fb]*\d*{_CJK}+)*"
)
# Regions never touched: extra networks <lora:...>, <hypernet:...>; wildcards __name__.
_PROTECTED_RE = re.compile(r"<[^<>\n]*>|__[^\s_][^\s]*?__")

_PUNCT_MAP = {
    "，": ", ", "、": ", ", "。": ", ", "；": "; ", "：": ":", "！": "!", "？": "?",
    "（": "(", "）": ")", "【": "[", "】": "]", "［": "[", "］": "]", "｛": "{", "｝": "}",
    "《": "", "》": "", "〈": "", "〉": "", "「": "", "」": "", "『": "", "』": "",
    "“": '"', "”": '"', "‘": "'", "’": "'", "～": "~", "｜": "|", "\u3000": " ",
    "…": " ", "—": "-", "·": " ",
}


def has_cjk(text: str) -> bool:
    """True if ``text`` contains Chinese (or Japanese/Korean) characters."""
    return bool(text) and _CJK_RE.search(text) is not None


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
    for m in _PROTECTED_RE.finditer(text):
        parts.append(_normalize_plain(text[last:m.start()]))
        parts.append(m.group(0))
        last = m.end()
    parts.append(_normalize_plain(text[last:]))
    out = "".join(parts)
    # "长发，" -> "长发," rather than a trailing space the user did not type.
    return out.rstrip(" ") if not text.endswith(" ") else out


# ---------------------------------------------------------------------------------------------
# Translator protocol and result


@runtime_checkable
class Translator(Protocol):
    def translate(self, text: str) -> str:  # pragma: no cover - protocol
        ...


@dataclass
class TranslationResult:
    original: str
    english: str
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.english != self.original


_SYNTAX_CHARS_RE = re.compile(r"[()\[\]{}<>|:\\]")


def _clean_output(text: str) -> str:
    """Make translator output safe to insert into A1111 syntax."""
    text = _normalize_plain(text or "")
    text = _SYNTAX_CHARS_RE.sub(" ", text)
    text = re.sub(r"\b(BREAK|AND)\b", lambda m: m.group(0).lower(), text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+,", ",", text)
    return text.strip(" ,.;!?\"'")


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def _translate_runs(runs: Sequence[str], translator: Translator) -> list[str]:
    many = getattr(translator, "translate_many", None)
    if callable(many):
        return list(many(list(runs)))
    return [translator.translate(r) for r in runs]


def translate_prompt(text: str, translator: Translator | None) -> TranslationResult:
    """Translate the CJK parts of an A1111 prompt, keeping its syntax.

    ``translator=None`` (translation off) returns the text unchanged. A run whose translation
    comes back empty keeps its original text, with a warning; a translator that fails keeps the
    whole prompt (punctuation normalised), with a warning. Never raises for translator errors.
    """
    original = text or ""
    if translator is None or not original:
        return TranslationResult(original, original, [])
    normalized = normalize_punctuation(original)

    # Split into protected regions and plain text; collect CJK runs from the plain text.
    pieces: list[tuple[bool, str]] = []  # (is_plain, text)
    last = 0
    for m in _PROTECTED_RE.finditer(normalized):
        pieces.append((True, normalized[last:m.start()]))
        pieces.append((False, m.group(0)))
        last = m.end()
    pieces.append((True, normalized[last:]))

    runs: list[str] = []
    for is_plain, piece in pieces:
        if is_plain:
            runs.extend(m.group(0) for m in _RUN_RE.finditer(piece))
    if not runs:
        return TranslationResult(original, normalized, [])

    warnings: list[str] = []
    unique = list(dict.fromkeys(runs))
    try:
        translated = _translate_runs(unique, translator)
        if len(translated) != len(unique):
            raise RuntimeError("translator returned a different number of texts")
    except Exception as exc:  # a broken model must not stop generation
        log.warning("prompt translation failed: %s", exc, exc_info=True)
        return TranslationResult(
            original,
            normalized,
            [f"Translation failed ({exc}); the prompt is used as typed."],
        )

    mapping: dict[str, str] = {}
    leftovers: list[str] = []
    for run, out in zip(unique, translated):
        cleaned = _clean_output(out)
        if not cleaned:
            warnings.append(f"'{run}' could not be translated (empty result); kept as typed.")
            cleaned = run
        else:
            leftovers.extend(re.findall(f"{_CJK}+", cleaned))
        mapping[run] = cleaned
    if leftovers:
        warnings.append("Not translated, kept as typed: " + ", ".join(dict.fromkeys(leftovers)))

    out_parts: list[str] = []
    for is_plain, piece in pieces:
        if not is_plain:
            out_parts.append(piece)
            continue
        pos = 0
        for m in _RUN_RE.finditer(piece):
            out_parts.append(piece[pos:m.start()])
            eng = mapping[m.group(0)]
            before = "".join(out_parts)[-1:]
            after = piece[m.end():m.end() + 1]
            if before and (_is_word_char(before) or before in ")]>"):
                eng = " " + eng
            if after and (_is_word_char(after) or after in "(<["):
                eng = eng + " "
            out_parts.append(eng)
            pos = m.end()
        out_parts.append(piece[pos:])
    english = "".join(out_parts)
    return TranslationResult(original, english, list(dict.fromkeys(warnings)))


# ---------------------------------------------------------------------------------------------
# Glossary translator

_POS = {"noun", "tag", "adj", "verb"}

# Function words handled by grammar rules rather than looked up as terms.
_DE_WORDS = {"的", "之"}
_AND_WORDS = {"和": "and", "与": "and", "跟": "and", "及": "and", "以及": "and", "还有": "and",
              "或": "or", "或者": "or"}
_DROP_WORDS = {"着", "了", "是", "在", "正在", "地", "得", "她", "他", "它", "她们", "他们",
               "一头", "一身", "一张", "一副", "一双", "一对", "这", "那", "这个", "那个", "呢", "吧",
               "啊", "也", "都", "被", "把"}
_POSTPOSITIONS = {"中": "in", "里": "in", "里面": "in", "内": "in", "之中": "in", "上": "on",
                  "上面": "on", "下": "under", "下面": "under", "之下": "under", "前": "in front of",
                  "前面": "in front of", "后": "behind", "后面": "behind", "旁": "beside",
                  "旁边": "beside", "边": "beside", "外": "outside", "周围": "around"}
_QTY_WORDS = {"一群": "a group of", "一些": "some", "几个": "several", "许多": "many", "很多": "many",
              "一片": "a field of", "一束": "a beam of", "一朵": "a", "一只": "a", "一把": "a"}

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}
_NUM = r"(?:\d+|[零〇一二两三四五六七八九十]+)"
_QTY_RE = re.compile(rf"({_NUM})(个|位|名|只|件|条|把|张|朵|枚|支)")
_AGE_RE = re.compile(rf"({_NUM})(岁|歲)(?:左右)?")
_MM_RE = re.compile(r"(\d+)(毫米)")
_NUM_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
              9: "nine", 10: "ten"}
_IRREGULAR_PLURALS = {"woman": "women", "man": "men", "child": "children", "person": "people",
                      "elderly person": "elderly people", "fish": "fish", "sheep": "sheep"}
_COUNT_TAGS = {"girl": "girl", "boy": "boy"}  # 1girl, 2girls ...


def _parse_cn_number(s: str) -> int | None:
    if s.isdigit():
        return int(s)
    if "十" in s:
        head, _, tail = s.partition("十")
        tens = _CN_DIGITS.get(head, None) if head else 1
        ones = _CN_DIGITS.get(tail, None) if tail else 0
        if tens is None or ones is None:
            return None
        return tens * 10 + ones
    if len(s) == 1:
        return _CN_DIGITS.get(s)
    return None


def _plural(noun: str) -> str:
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    words = noun.split(" ")
    last = words[-1]
    if last in _IRREGULAR_PLURALS:
        last = _IRREGULAR_PLURALS[last]
    elif re.search(r"(s|x|z|ch|sh)$", last):
        last += "es"
    elif re.search(r"[^aeiou]y$", last):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return " ".join(words[:-1] + [last])


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _duplicate_check(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise ValueError(f"duplicate key {k!r} in glossary")
        seen[k] = v
    return seen


@lru_cache(maxsize=4)
def _load_glossary_file(path: str) -> tuple[tuple[str, str, str], ...]:
    data = json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=_duplicate_check)
    rows: list[tuple[str, str, str]] = []
    seen: dict[str, str] = {}
    for section in data["sections"]:
        pos = section["pos"]
        if pos not in _POS:
            raise ValueError(f"glossary section {section['name']!r}: unknown pos {pos!r}")
        for zh, en in section["entries"].items():
            if zh in seen:
                raise ValueError(f"glossary: {zh!r} is in both {seen[zh]!r} and {section['name']!r}")
            seen[zh] = section["name"]
            rows.append((zh, en, pos))
    return tuple(rows)


def load_glossary(path: str | Path | None = None) -> dict[str, tuple[str, str]]:
    """The glossary as ``{chinese: (english, part_of_speech)}``."""
    rows = _load_glossary_file(str(path or GLOSSARY_PATH))
    return {zh: (en, pos) for zh, en, pos in rows}


@dataclass
class _Tok:
    kind: str  # noun tag adj verb and de post qty unk
    en: str
    zh: str = ""
    count: int | None = None  # for qty


@dataclass
class _Unit:
    kind: str
    words: list[str]
    head: str
    zh: str
    mods: list[str] = field(default_factory=list)
    qty: _Tok | None = None
    prep: str = ""
    join_and: str = ""


class GlossaryTranslator:
    """Offline zh->en translation of portrait prompt words.

    Longest-match segmentation over the glossary, then small grammar rules:
    "一个穿着红色汉服的女孩" -> "1girl, wearing red hanfu"; "红色和白色的汉服" ->
    "red and white hanfu"; "站在花海中" -> "standing in field of flowers"; "20岁" ->
    "20 years old". Unknown characters are kept as they are (translate_prompt reports them).

    ``extra`` adds or overrides entries: ``{"小明": "Xiao Ming"}`` (treated as nouns) or
    ``{"小明": ("Xiao Ming", "noun")}``.
    """

    def __init__(self, extra: dict[str, str | tuple[str, str]] | None = None,
                 path: str | Path | None = None):
        self.entries: dict[str, tuple[str, str]] = dict(load_glossary(path))
        for zh, value in (extra or {}).items():
            if isinstance(value, tuple):
                en, pos = value
            else:
                en, pos = value, "noun"
            if pos not in _POS:
                raise ValueError(f"unknown part of speech {pos!r} for {zh!r}")
            self.entries[zh] = (_clean_output(en), pos)
        self._max_len = max(
            [len(k) for k in self.entries]
            + [len(k) for k in (*_AND_WORDS, *_DROP_WORDS, *_POSTPOSITIONS, *_QTY_WORDS)]
        )

    def __len__(self) -> int:
        return len(self.entries)

    # -- segmentation -----------------------------------------------------------------------

    def _lookup(self, text: str, i: int) -> tuple[int, _Tok | None] | None:
        """Longest word starting at ``i``: (length, token or None for a dropped word)."""
        best: tuple[int, _Tok | None] | None = None
        for length in range(min(self._max_len, len(text) - i), 0, -1):
            w = text[i:i + length]
            if w in self.entries:
                en, pos = self.entries[w]
                best = (length, _Tok(pos, en, w))
            elif w in _DE_WORDS:
                best = (length, _Tok("de", "", w))
            elif w in _AND_WORDS:
                best = (length, _Tok("and", _AND_WORDS[w], w))
            elif w in _QTY_WORDS:
                best = (length, _Tok("qty", _QTY_WORDS[w], w))
            elif w in _POSTPOSITIONS:
                best = (length, _Tok("post", _POSTPOSITIONS[w], w))
            elif w in _DROP_WORDS:
                best = (length, None)
            if best is not None:
                return best
        return None

    def _tokenize(self, text: str) -> list[_Tok]:
        toks: list[_Tok] = []
        unk: list[str] = []
        i = 0

        def flush_unknown() -> None:
            if unk:
                s = "".join(unk)
                toks.append(_Tok("unk", s, s))
                unk.clear()

        while i < len(text):
            ch = text[i]
            if ch.isspace():
                flush_unknown()
                i += 1
                continue
            special: tuple[int, _Tok] | None = None
            m = _AGE_RE.match(text, i)
            if m and (n := _parse_cn_number(m.group(1))) is not None:
                special = (m.end() - i, _Tok("tag", f"{n} years old", m.group(0)))
            m = None if special else _MM_RE.match(text, i)
            if m:
                special = (m.end() - i, _Tok("noun", f"{m.group(1)}mm", m.group(0)))
            m = None if special else _QTY_RE.match(text, i)
            if m and (n := _parse_cn_number(m.group(1))) is not None:
                special = (m.end() - i, _Tok("qty", "", m.group(0), count=n))
            found = self._lookup(text, i)
            if special and (found is None or special[0] > found[0]):
                flush_unknown()
                toks.append(special[1])
                i += special[0]
                continue
            if found is not None:
                flush_unknown()
                if found[1] is not None:
                    toks.append(found[1])
                i += found[0]
                continue
            if ch.isdigit():
                flush_unknown()
                j = i
                while j < len(text) and (text[j].isdigit() or text[j] == "."):
                    j += 1
                toks.append(_Tok("noun", text[i:j], text[i:j]))
                i = j
                continue
            unk.append(ch)
            i += 1
        flush_unknown()
        return toks

    # -- phrase building --------------------------------------------------------------------

    @staticmethod
    def _apply_qty(unit: _Unit) -> str:
        q = unit.qty
        text = " ".join(unit.mods + [unit.head])
        if q is None:
            return text
        if q.count is None:  # "a group of", "some" ...
            if q.en in ("a",):
                return f"{_article(text)} {text}"
            return f"{q.en} {_plural(text) if q.en not in ('a field of', 'a beam of') else text}"
        n = q.count
        if unit.kind != "noun":
            return text
        if not unit.mods and unit.head in _COUNT_TAGS:
            tag = _COUNT_TAGS[unit.head]
            return f"1{tag}" if n == 1 else f"{n}{tag}s"
        if n == 1:
            return f"{_article(text)} {text}"
        word = _NUM_WORDS.get(n, str(n))
        return f"{word} {' '.join(unit.mods + [_plural(unit.head)])}"

    def _render(self, toks: list[_Tok]) -> str:
        units: list[_Unit] = []
        mods: list[str] = []
        qty: _Tok | None = None
        join_and = ""
        for t in toks:
            if t.kind == "adj":
                mods.append(t.en)
            elif t.kind == "qty":
                qty = t
            elif t.kind == "and":
                if mods:
                    mods.append(t.en)
                else:
                    join_and = t.en
            elif t.kind == "post":
                # Put the preposition before the noun chain just finished.
                j = len(units) - 1
                while j > 0 and units[j - 1].kind in ("noun", "unk") and units[j].kind in ("noun", "unk"):
                    j -= 1
                if j >= 0 and units[j].kind in ("noun", "unk", "tag"):
                    units[j].prep = t.en
            elif t.kind == "de":
                continue
            else:  # noun, tag, verb, unk
                if mods and mods[-1] in ("and", "or"):
                    mods.pop()
                unit = _Unit(t.kind, [], t.en, t.zh, mods=mods, qty=qty, join_and=join_and)
                units.append(unit)
                mods, qty, join_and = [], None, ""
        if mods:
            if mods[-1] in ("and", "or"):
                mods.pop()
            if mods:
                units.append(_Unit("tag", [], mods[-1], "", mods=mods[:-1]))

        out = ""
        prev: _Unit | None = None
        for u in units:
            text = self._apply_qty(u)
            if u.prep:
                text = f"{u.prep} {text}"
            if prev is None:
                out = text
            elif u.join_and:
                out += f" {u.join_and} {text}"
            elif prev.kind == "verb" or (
                prev.kind in ("noun", "unk") and u.kind in ("noun", "unk") and not u.qty
            ):
                out += f" {text}"
            else:
                out += f", {text}"
            prev = u
        return out

    def _translate_clause(self, toks: list[_Tok]) -> str:
        """Handle "<modifier> 的 <head>": a verb phrase before 的 goes after the head."""
        de_positions = [i for i, t in enumerate(toks) if t.kind == "de"]
        if not de_positions:
            return self._render(toks)
        k = de_positions[-1]
        before = [t for t in toks[:k] if t.kind != "de"]
        after = toks[k + 1:]
        head_len = 0
        while head_len < len(after) and after[head_len].kind in ("adj", "noun", "unk"):
            head_len += 1
        # The head must end in a noun: trailing adjectives belong to the next phrase.
        while head_len and after[head_len - 1].kind == "adj":
            head_len -= 1
        head, rest = after[:head_len], after[head_len:]
        if head and any(t.kind == "verb" for t in before):
            q = [before[0]] if before and before[0].kind == "qty" else []
            clause = before[len(q):]
            parts = [self._render(q + head), self._render(clause)]
            if rest:
                parts.append(self._render(rest))
            return ", ".join(p for p in parts if p)
        return self._render(before + after)

    def translate(self, text: str) -> str:
        text = (text or "").strip()
        if not text:
            return ""
        return self._translate_clause(self._tokenize(text))

    def translate_many(self, texts: Sequence[str]) -> list[str]:
        return [self.translate(t) for t in texts]


# ---------------------------------------------------------------------------------------------
# MarianMT translator

_MARIAN_FILES = ("config.json", "source.spm", "target.spm", "vocab.json")
_MARIAN_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def _check_marian_dir(path: Path) -> None:
    if not path.is_dir():
        raise UserError(f"MarianMT model folder '{path}' does not exist.", field="translation")
    missing = [f for f in _MARIAN_FILES if not (path / f).is_file()]
    if not any((path / w).is_file() for w in _MARIAN_WEIGHTS):
        missing.append(" or ".join(_MARIAN_WEIGHTS))
    if missing:
        raise UserError(
            f"'{path.name}' is not a complete MarianMT model folder: missing {', '.join(missing)}.",
            field="translation",
        )


def _to_ascii(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-"}))
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if ch.isascii() and (ch.isprintable() or ch == " "))
    return re.sub(r"\s+", " ", text).strip()


class MarianTranslator:
    """zh->en with a MarianMT model in a local folder (``source.spm``, ``target.spm``,
    ``vocab.json``, ``config.json``, weights). Loaded on first use, CPU, greedy decoding,
    short outputs; results are plain ASCII. Thread-safe; small result cache."""

    def __init__(self, model_dir: str | Path, *, max_new_tokens: int = 96, cache_size: int = 512):
        self.model_dir = Path(model_dir)
        _check_marian_dir(self.model_dir)
        self.max_new_tokens = max_new_tokens
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._model = None
        self._tokenizer = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import MarianMTModel, MarianTokenizer

        with _warnings.catch_warnings():
            _warnings.filterwarnings("ignore", message=".*sacremoses.*")
            tokenizer = MarianTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
            model = MarianMTModel.from_pretrained(str(self.model_dir), local_files_only=True)
        model.eval()
        self._tokenizer, self._model = tokenizer, model
        log.info("loaded MarianMT translator from %s", self.model_dir)

    def translate(self, text: str) -> str:
        return self.translate_many([text])[0]

    def translate_many(self, texts: Sequence[str]) -> list[str]:
        texts = [t.strip() for t in texts]
        with self._lock:
            todo = [t for t in dict.fromkeys(texts) if t and t not in self._cache]
            if todo:
                self._load()
                import torch

                assert self._tokenizer is not None and self._model is not None
                batch = self._tokenizer(todo, return_tensors="pt", padding=True, truncation=True,
                                        max_length=128)
                limit = min(self.max_new_tokens, 8 + 3 * int(batch["input_ids"].shape[1]))
                with torch.inference_mode():
                    out = self._model.generate(**batch, num_beams=1, do_sample=False,
                                               max_new_tokens=limit)
                decoded = self._tokenizer.batch_decode(out, skip_special_tokens=True)
                for src, dst in zip(todo, decoded):
                    self._cache[src] = _to_ascii(dst)
                    self._cache.move_to_end(src)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            return [self._cache.get(t, "") if t else "" for t in texts]


def find_cached_marian(repo_id: str = MARIAN_REPO_ID, cache_dir: str | Path | None = None) -> Path | None:
    """The local Hugging Face cache folder of ``repo_id`` if it is complete; never downloads."""
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id, local_files_only=True, cache_dir=cache_dir))
    except Exception:
        return None
    try:
        _check_marian_dir(path)
    except UserError:
        return None
    return path


def make_translator(setting: str | None = "auto") -> Translator | None:
    """Build the translator for a setting.

    * ``"auto"`` (or empty): MarianMT if one is in the local Hugging Face cache, else glossary;
    * ``"glossary"``: the offline glossary;
    * ``"marian"``: the cached MarianMT model (UserError if there is none);
    * ``"off"``: ``None``, translation disabled (translate_prompt passes text through);
    * a folder path: MarianMT from that folder (UserError if it is not a model folder).
    """
    value = (setting or "auto").strip()
    key = value.lower()
    if key in ("off", "none", "disabled", "false", "no"):
        return None
    if key == "glossary":
        return GlossaryTranslator()
    if key == "auto":
        path = find_cached_marian()
        return MarianTranslator(path) if path is not None else GlossaryTranslator()
    if key == "marian":
        path = find_cached_marian()
        if path is None:
            raise UserError(
                f"No MarianMT model found: download {MARIAN_REPO_ID} into the Hugging Face cache "
                "or set the translation setting to the model's folder. Using 'glossary' works offline.",
                field="translation",
            )
        return MarianTranslator(path)
    candidate = Path(value).expanduser()
    if candidate.exists():
        return MarianTranslator(candidate)
    raise UserError(
        f"Unknown translation setting '{value}': use auto, glossary, marian, off or the folder "
        "of a MarianMT model.",
        field="translation",
    )
