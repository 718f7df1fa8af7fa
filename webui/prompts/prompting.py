"""What the model reads: the artist's prompt, translated to English, wrapped in the preset's
template and the chosen styles.

Order, for the prompt:
1. translation of the CJK parts (or the artist's own edited English, when it was made for this
   very prompt);
2. the preset's prompt template around it;
3. the styles, in the order chosen;
4. any CJK left (from a style or template written in Chinese) is translated too.
The negative prompt gets steps 1, 3 and 4. A1111 syntax survives every step.

The result also carries the infotext keys that make the image reproducible and honest:
"Original prompt" (what the artist typed, when translation changed it), "Preset", "Styles array".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from .cjk_text import has_cjk
from .presets import Preset
from .styles import PROMPT_PLACEHOLDER, StyleLibrary, merge_template
from .translate import Translator, translate_prompt


@dataclass
class ExpandedPrompts:
    prompt: str
    negative_prompt: str
    infotext_params: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for the artist: translation problems


def _english(text: str, translator: Translator | None, override: str | None, notes: list[str]) -> str:
    if override is not None and override.strip():
        return override.strip()
    if not has_cjk(text or ""):
        return text or ""
    result = translate_prompt(text, translator)
    notes.extend(result.warnings)
    return result.english


def _peel(text: str, template: str) -> str | None:
    """The text `template` was applied to, if `text` is exactly such a result; else None."""
    template = template or ""
    if not template.strip():
        return text
    if PROMPT_PLACEHOLDER in template:
        prefix, _, suffix = template.partition(PROMPT_PLACEHOLDER)
        if PROMPT_PLACEHOLDER in suffix:
            return None
    else:
        prefix, suffix = "", ", " + template.strip()
    if len(text) >= len(prefix) + len(suffix) and text.startswith(prefix) and text.endswith(suffix):
        return text[len(prefix):len(text) - len(suffix)]
    return None


def already_expanded(text: str, templates: Sequence[str]) -> bool:
    """True when `text` is what applying `templates` in order produces (an infotext prompt sent
    back with its Styles array / Preset), so applying them again would double them."""
    if not text or not any((t or "").strip() for t in templates):
        return False
    for template in reversed(templates):
        inner = _peel(text, template)
        if inner is None:
            return False
        text = inner
    return True


def _apply(text: str, templates: Sequence[str]) -> str:
    if already_expanded(text, templates):
        return text
    for template in templates:
        text = merge_template(template, text)
    return text


def expand_prompts(
    prompt: str,
    negative_prompt: str,
    *,
    styles: Sequence[str] = (),
    library: StyleLibrary,
    preset: Preset | None = None,
    translator: Translator | None = None,
    translated_prompt: str | None = None,
    translated_negative_prompt: str | None = None,
) -> ExpandedPrompts:
    """Expand one request's prompts. Unknown style names raise UserError (from the library)."""
    notes: list[str] = []
    # Fail before any work on a typo. A style named twice (or by its English and Chinese
    # names) is applied once: applying it again would only repeat its text.
    chosen = list({s.name: s for s in library.resolve(styles)}.values())
    pos = _english(prompt, translator, translated_prompt, notes)
    neg = _english(negative_prompt, translator, translated_negative_prompt, notes)
    # A prompt that already carries the template and styles (replayed from an infotext) is kept.
    pos = _apply(pos, ([preset.prompt or PROMPT_PLACEHOLDER] if preset else []) + [s.prompt for s in chosen])
    neg = _apply(neg, [s.negative_prompt for s in chosen])
    pos = _english(pos, translator, None, notes)
    neg = _english(neg, translator, None, notes)
    if has_cjk(pos) or has_cjk(neg):
        notes.append("Some Chinese text is left untranslated; the model only understands English, so edit "
                     "the translated prompt.")

    params: list[tuple[str, str]] = []
    if (prompt or "") != pos and (prompt or "") != "" and has_cjk(prompt):
        params.append(("Original prompt", prompt))
    if (negative_prompt or "") != neg and has_cjk(negative_prompt or ""):
        params.append(("Original negative prompt", negative_prompt))
    if preset is not None:
        params.append(("Preset", preset.name))
    if chosen:
        params.append(("Styles array", json.dumps([s.name for s in chosen], ensure_ascii=False)))
    return ExpandedPrompts(pos, neg, params, list(dict.fromkeys(notes)))
