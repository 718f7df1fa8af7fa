"""Chinese word segmentation for the offline translator, with jieba (MIT).

One jieba tokenizer per process, built on first use (about half a second) and taught the
glossary's phrases so that curated words such as 轮廓光 or 水墨画 stay whole. Without jieba,
:func:`segment` answers ``None`` and the glossary falls back to its longest-match (a note is
logged once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

log = logging.getLogger(__name__)

_lock = threading.Lock()
_state: dict[frozenset[str], object] = {}
_missing = False


def _build(words: frozenset[str]):
    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    for word in sorted(words):
        if len(word) >= 2:
            tokenizer.suggest_freq(word, tune=True)
    # Part-of-speech tags from jieba's dictionary ("word freq tag" lines), only those the
    # translator uses (adjectives, verbs, particles, interjections): 40 MB less than posseg's.
    tags: dict[str, str] = {}
    with tokenizer.get_dict_file() as f:
        for raw in f:
            parts = raw.decode("utf-8").split()
            if len(parts) == 3 and parts[2][:1] in "avuyeo":
                tags[parts[0]] = parts[2]
    return tokenizer, tags


def _get(words: Iterable[str]):
    """The (tokenizer, word -> part-of-speech tag) for a word list, or None without jieba."""
    global _missing
    key = frozenset(words)
    with _lock:
        if key not in _state and not _missing:
            try:
                _state[key] = _build(key)
            except ImportError:
                _missing = True
                log.warning("jieba is not installed: Chinese prompts are split by the glossary's "
                            "longest match only (pip install jieba).")
        return _state.get(key)


def segment(text: str, words: Iterable[str] = ()) -> list[str] | None:
    """``text`` cut into words (the pieces join back to ``text``), or None without jieba."""
    state = _get(words)
    if state is None:
        return None
    tokenizer, _tags = state
    return list(tokenizer.cut(text, HMM=True))


def tag(word: str, words: Iterable[str] = ()) -> str:
    """jieba's part-of-speech tag for a dictionary word ('a' adjective, 'n' noun ...), or ''."""
    state = _get(words)
    return state[1].get(word, "") if state else ""


def available(words: Iterable[str] = ()) -> bool:
    return _get(words) is not None


def word_starts(text: str, words: Iterable[str] = ()) -> dict[int, str]:
    """{position: the jieba word that starts there} ({} without jieba)."""
    pieces = segment(text, words)
    if pieces is None:
        return {}
    out: dict[int, str] = {}
    pos = 0
    for piece in pieces:
        out[pos] = piece
        pos += len(piece)
    return out
