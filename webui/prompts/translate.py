"""Translate Chinese prompt text to English while keeping A1111 prompt syntax intact.

The CLIP text encoder only understands English, so CJK text in a prompt is translated before
generation. Only the runs of CJK characters are sent to a translator; everything else stays as
typed: ``(红色头发:1.3)`` becomes ``(red hair:1.3)``, ``<lora:名字:0.8>`` is untouched (LoRA
names are file names), and ``BREAK``, ``AND``, ``[a:b:0.5]``, commas, English words and numbers
are preserved. Full-width punctuation typed with a Chinese input method (，：（）【】) is turned
into its ASCII form first so that weights and brackets work.

Translators (anything with ``translate(text: str) -> str``):

* :class:`GlossaryTranslator` (``glossary.py``): offline, a portrait glossary
  (``glossary_zh.json``) with longest-match segmentation and a few grammar rules for
  的/穿着/一个 ... ; unknown words are kept as they are and reported.
* :class:`MarianTranslator` (``marian.py``): a MarianMT zh->en model (e.g.
  Helsinki-NLP/opus-mt-zh-en) from a folder or the local Hugging Face cache; never downloads,
  loads on first use.

What counts as CJK text, and the punctuation clean-up, live in ``cjk_text.py``.

:func:`make_translator` picks one from a setting string; :func:`translate_prompt` does the
syntax-aware work and returns a :class:`TranslationResult` with warnings for the UI.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from webui.errors import UserError
from webui.prompts.cjk_text import (CJK, PROTECTED_RE, RUN_RE, clean_output, has_cjk, normalize_punctuation,
                                    symbol_warnings)
from webui.prompts.glossary import GlossaryTranslator
# make_translator looks find_cached_marian up in this module (tests replace it here).
from webui.prompts.marian import MARIAN_REPO_ID, MarianTranslator, find_cached_marian

__all__ = [
    "TRANSLATION_SETTINGS",
    "Translator",
    "TranslationResult",
    "has_cjk",
    "translate_prompt",
    "make_translator",
]

log = logging.getLogger(__name__)

TRANSLATION_SETTINGS = ("auto", "glossary", "marian", "off")


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
    for m in PROTECTED_RE.finditer(normalized):
        pieces.append((True, normalized[last:m.start()]))
        pieces.append((False, m.group(0)))
        last = m.end()
    pieces.append((True, normalized[last:]))

    runs: list[str] = []
    for is_plain, piece in pieces:
        if is_plain:
            runs.extend(m.group(0) for m in RUN_RE.finditer(piece))
    warnings: list[str] = symbol_warnings(normalized)
    if not runs:
        return TranslationResult(original, normalized, warnings)

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
        cleaned = clean_output(out)
        if not cleaned:
            warnings.append(f"'{run}' could not be translated (empty result); kept as typed.")
            cleaned = run
        else:
            leftovers.extend(re.findall(f"{CJK}+", cleaned))
        mapping[run] = cleaned
    if leftovers:
        warnings.append("Not translated, kept as typed: " + ", ".join(dict.fromkeys(leftovers)))

    out_parts: list[str] = []
    for is_plain, piece in pieces:
        if not is_plain:
            out_parts.append(piece)
            continue
        pos = 0
        for m in RUN_RE.finditer(piece):
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
