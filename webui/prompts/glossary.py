"""The offline Chinese -> English translator: words cut by jieba (``zh_segment``), looked up in a
portrait glossary (``glossary_zh.json``) first and CC-CEDICT (``zh_dictionary``) second, and a few
grammar rules for 的/穿着/一个 ... (counts, ages, plurals, articles). Without jieba the glossary's
longest match cuts the words; unknown words are kept as they are and reported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from webui.prompts import zh_dictionary, zh_segment
from webui.prompts.cjk_text import CJK_RE, clean_output

GLOSSARY_PATH = Path(__file__).with_name("glossary_zh.json")


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
_SUFFIX_TAGS = {"style"}  # joined to the word before it, without a comma
_KANA_RE = re.compile("[\u3040-\u30ff\u31f0-\u31ff]")


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

    jieba words (the glossary's longest match without jieba), then small grammar rules:
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
            self.entries[zh] = (clean_output(en), pos)
        self._max_len = max(
            [len(k) for k in self.entries]
            + [len(k) for k in (*_AND_WORDS, *_DROP_WORDS, *_POSTPOSITIONS, *_QTY_WORDS)]
        )
        # jieba learns every curated phrase so that they stay whole.
        self._words = frozenset([*self.entries, *_AND_WORDS, *_DROP_WORDS, *_POSTPOSITIONS,
                                 *_QTY_WORDS, *_DE_WORDS])

    def __len__(self) -> int:
        return len(self.entries)

    # -- segmentation -----------------------------------------------------------------------

    def _lookup(self, text: str, i: int, ends: dict | None = None) -> tuple[int, _Tok | None] | None:
        """Longest word starting at ``i`` (ending where a word of ``ends`` starts, if given):
        (length, token or None for a dropped word)."""
        best: tuple[int, _Tok | None] | None = None
        for length in range(min(self._max_len, len(text) - i), 0, -1):
            if ends is not None and i + length not in ends and i + length != len(text):
                continue
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

    def _dictionary(self, word: str) -> tuple[int, _Tok | None] | None:
        """A CC-CEDICT word as a token (None token: a particle to drop)."""
        if not CJK_RE.match(word):
            return None
        entry = zh_dictionary.word_entry(word, zh_segment.tag(word, self._words))
        if entry is None:
            return None
        return (len(word), None) if entry[1] == "drop" else (len(word), _Tok(entry[1], entry[0], word))

    def _word_at(self, text: str, i: int, starts: dict[int, str], found, end: int):
        """Glossary first, whole words of the segmentation second, then CC-CEDICT."""
        word = starts.get(i)
        if word is not None:
            if found is not None and found[0] == len(word):
                return found
            bounded = self._lookup(text, i, starts)
            if bounded is not None and bounded[0] >= len(word):
                return bounded
            found = bounded or found
        # The longest dictionary word in what is left of this segmented word beats a shorter
        # match: "中年" of "中年男人", "钢琴" of "弹钢琴".
        piece = text[i:end]
        for length in range(len(piece), (found[0] if found else 0), -1):
            if length > 1 or found is None:
                entry = self._dictionary(piece[:length])
                if entry is not None:
                    return entry
        return found

    def _tokenize(self, text: str) -> list[_Tok]:
        starts = zh_segment.word_starts(text, self._words)
        word_end = 0
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
            word_end = i + len(starts[i]) if i in starts else word_end
            if special is None and starts:
                found = self._word_at(text, i, starts, found, word_end)
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
            elif u.kind == "tag" and u.head in _SUFFIX_TAGS and not u.mods and not u.qty:
                out += f" {text}"  # "水墨画风格" -> "ink wash painting style"
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
        text = zh_dictionary.to_simplified((text or "").strip())
        if _KANA_RE.search(text):  # Japanese (女の子) is kept whole, as typed, and reported
            return " ".join(p if _KANA_RE.search(p) else self.translate(p) for p in text.split())
        return self._translate_clause(self._tokenize(text)) if text else ""

    def translate_many(self, texts: Sequence[str]) -> list[str]:
        return [self.translate(t) for t in texts]


