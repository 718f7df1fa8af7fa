"""Prompt styles: reusable prompt/negative-prompt snippets applied in a chosen order.

A style's text may contain ``{prompt}``; the current prompt is put in its place. A style
without ``{prompt}`` is appended to the prompt with ", ". The same rule applies to the
negative prompt, so a list of styles builds up both prompts step by step, in the order the
user selected them.

Styles come from two places:

* :data:`BUILTIN_STYLES`, a small set of portrait-oriented styles shipped with the UI;
* ``styles.csv`` files in the A1111 format (header ``name,prompt,negative_prompt``), looked
  up in a list of places given by the caller (typically the models folder and the working
  directory). Broken rows are reported with file and line number and skipped; the rest of the
  file is still used.

:func:`load_style_library` (``style_files.py``, with the CSV reader) combines both into a
:class:`StyleLibrary`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from webui.errors import UserError

__all__ = [
    "PROMPT_PLACEHOLDER",
    "Style",
    "StyleLibrary",
    "BUILTIN_STYLES",
    "merge_template",
    "join_prompts",
    "apply_styles",
    "styles_to_api",
]

PROMPT_PLACEHOLDER = "{prompt}"


@dataclass(frozen=True)
class Style:
    """One prompt style.

    ``prompt`` and ``negative_prompt`` are templates: ``{prompt}`` marks where the user's text
    goes; without it the style text is appended after ", ".
    ``name_zh`` is an optional display name in Chinese; ``source`` says where the style came
    from ("builtin" or "file.csv:line").
    """

    name: str
    prompt: str = ""
    negative_prompt: str = ""
    name_zh: str = ""
    source: str = "builtin"

    @property
    def label(self) -> str:
        """Display label: the English name, with the Chinese name when there is one."""
        return f"{self.name} · {self.name_zh}" if self.name_zh else self.name

    def to_api(self) -> dict[str, str]:
        """The REST ``prompt-styles`` item shape."""
        return {"name": self.name, "prompt": self.prompt, "negative_prompt": self.negative_prompt}


# ---------------------------------------------------------------------------------------------
# Applying templates


def _tidy_separators(text: str) -> str:
    """Remove the empty slots an empty ``{prompt}`` leaves behind (", , x" -> "x")."""
    text = re.sub(r"(?:\s*,\s*){2,}", ", ", text)
    text = re.sub(r"[ \t]+,", ",", text)
    text = re.sub(r"^[\s,]+|[\s,]+$", "", text)
    return re.sub(r"[ \t]{2,}", " ", text)


def join_prompts(*parts: str) -> str:
    """Join non-empty prompt parts with ", " (whitespace-only parts are ignored)."""
    cleaned = [p.strip().strip(",").strip() for p in parts if p and p.strip().strip(",").strip()]
    return ", ".join(cleaned)


def merge_template(template: str, text: str) -> str:
    """Put ``text`` into ``template``.

    * ``{prompt}`` in the template is replaced by ``text`` (every occurrence);
    * otherwise the template is appended to ``text`` with ", ";
    * an empty ``text`` leaves no dangling commas behind.
    """
    template = template or ""
    text = text or ""
    if PROMPT_PLACEHOLDER in template:
        merged = template.replace(PROMPT_PLACEHOLDER, text)
        return _tidy_separators(merged) if not text.strip() else merged
    return join_prompts(text, template) if template.strip() else text


def apply_styles(
    prompt: str,
    negative: str,
    styles: Iterable[Style | str],
    library: StyleLibrary | None = None,
) -> tuple[str, str]:
    """Apply ``styles`` in order to ``prompt`` and ``negative``; returns the new pair.

    Items may be :class:`Style` objects or style names; names are looked up in ``library``
    (default: the built-in styles). An unknown name raises :class:`UserError`.
    """
    lib = library if library is not None else StyleLibrary(BUILTIN_STYLES)
    for item in styles:
        style = item if isinstance(item, Style) else lib.get(item)
        prompt = merge_template(style.prompt, prompt)
        negative = merge_template(style.negative_prompt, negative)
    return prompt, negative


def styles_to_api(styles: Iterable[Style]) -> list[dict[str, str]]:
    """The REST ``prompt-styles`` list: ``[{"name", "prompt", "negative_prompt"}]``."""
    return [s.to_api() for s in styles]


# ---------------------------------------------------------------------------------------------
# Built-in styles (written for this project)

BUILTIN_STYLES: tuple[Style, ...] = (
    Style(
        "Portrait Essentials",
        "{prompt}, finely detailed face, sharp focus on the eyes, well-balanced composition",
        "lowres, blurry, jpeg artifacts, deformed face, asymmetric eyes, bad anatomy, bad hands, "
        "extra fingers, fused fingers, long neck, watermark, signature, text",
        "人像基础",
    ),
    Style(
        "Natural Light Portrait",
        "{prompt}, soft natural window light, gentle shadow falloff, true-to-life skin tones, "
        "subtle skin texture, full-frame camera, 85mm lens, shallow depth of field",
        "plastic skin, airbrushed skin, oversaturated, harsh flash, cartoon, illustration, 3d render",
        "自然光人像",
    ),
    Style(
        "Studio Lighting",
        "{prompt}, professional studio lighting, large softbox key light, reflector fill, "
        "subtle hair light, seamless paper backdrop, crisp catchlights",
        "cluttered background, uneven exposure, harsh on-camera flash, color cast",
        "影棚布光",
    ),
    Style(
        "Rembrandt Lighting",
        "{prompt}, Rembrandt lighting, single key light high at 45 degrees, small triangle of light "
        "on the shadow-side cheek, deep shadow falloff, low-key mood",
        "flat lighting, overexposed, washed out, frontal flash",
        "伦勃朗光",
    ),
    Style(
        "Golden Hour",
        "{prompt}, golden hour backlight, warm low sun, glowing rim light in the hair, "
        "soft lens flare, hazy warm air",
        "harsh midday sun, blown-out highlights, cold blue cast, squinting",
        "黄金时刻",
    ),
    Style(
        "High Key",
        "{prompt}, high-key portrait, bright even light, white background, airy soft shadows, "
        "clean fresh colors",
        "dark, gloomy, heavy shadows, underexposed, muddy colors",
        "高调明亮",
    ),
    Style(
        "Cinematic Film Still",
        "{prompt}, cinematic film still, anamorphic lens look, teal and orange color grade, "
        "motivated practical lighting, atmospheric haze, subtle film grain",
        "flat lighting, amateur snapshot, oversharpened, video game graphics",
        "电影剧照",
    ),
    Style(
        "Analog Film",
        "{prompt}, shot on 35mm color negative film, warm natural tones, fine organic grain, "
        "soft highlight roll-off, slightly muted colors",
        "digital oversharpening, hdr look, plastic skin, neon colors",
        "胶片质感",
    ),
    Style(
        "Black and White",
        "{prompt}, black and white portrait photograph, rich tonal range, deep blacks, "
        "luminous highlights, silver gelatin print look",
        "color, color cast, sepia, low contrast, grey haze",
        "黑白人像",
    ),
    Style(
        "Neon Night",
        "{prompt}, night portrait lit by neon signs, magenta and cyan light spill on the skin, "
        "wet street reflections, city lights bokeh",
        "daylight, flat lighting, overexposed sky",
        "霓虹夜景",
    ),
    Style(
        "Fashion Editorial",
        "{prompt}, high-fashion editorial photograph, bold styling, confident pose, crisp strobe "
        "light, refined retouching, magazine quality",
        "snapshot, awkward pose, wrinkled clothes, cluttered set, amateur",
        "时尚大片",
    ),
    Style(
        "Anime Illustration",
        "{prompt}, anime illustration, clean line art, cel shading, expressive eyes, "
        "vibrant colors, detailed hair strands",
        "photorealistic, 3d, realistic skin texture, western cartoon, sketchy lines, muddy colors",
        "日系动漫",
    ),
    Style(
        "Character Concept Art",
        "{prompt}, character concept art, clear readable silhouette, costume design details, "
        "neutral standing pose, plain light grey background",
        "busy background, cropped limbs, extreme perspective, motion blur",
        "角色概念设计",
    ),
    Style(
        "Classical Oil Painting",
        "{prompt}, classical oil painting on canvas, layered glazes, visible brushstrokes, "
        "warm chiaroscuro, old-master palette",
        "photograph, digital art, flat colors, anime, airbrushed smoothness",
        "古典油画",
    ),
    Style(
        "Watercolor",
        "{prompt}, watercolor painting, soft wet-in-wet washes, pigment blooms, transparent "
        "layers, white paper showing through, loose brushwork",
        "photograph, heavy black outlines, opaque paint, digital gradients, 3d",
        "水彩",
    ),
    Style(
        "Pencil Sketch",
        "{prompt}, graphite pencil drawing, careful tonal shading, cross-hatching, "
        "visible paper grain, monochrome",
        "color, paint, photograph, smudged mess, ink blots",
        "铅笔素描",
    ),
    Style(
        "Gongbi",
        "{prompt}, Chinese gongbi painting, meticulous fine-line brushwork, flat mineral colors "
        "layered on silk, delicate even outlines, elegant traditional composition",
        "photograph, oil painting, thick brushstrokes, western perspective, 3d render",
        "工笔",
    ),
    Style(
        "Ink Wash",
        "{prompt}, Chinese ink wash painting, expressive brushstrokes, graded ink tones on rice "
        "paper, generous empty space, restrained palette",
        "photograph, saturated colors, hard digital edges, 3d render, cluttered composition",
        "水墨",
    ),
    Style(
        "Guofeng Illustration",
        "{prompt}, guofeng illustration, Chinese traditional aesthetics, flowing silk garments, "
        "ornate hair ornaments, soft muted palette, decorative cloud patterns",
        "western fantasy armor, sci-fi, photograph, low detail",
        "国风插画",
    ),
    Style(
        "3D Character Render",
        "{prompt}, stylized 3d character render, subsurface scattering skin, soft global "
        "illumination, physically based materials, clean studio backdrop",
        "2d, flat illustration, sketch, photograph, low poly, noisy render",
        "3D角色渲染",
    ),
)


# ---------------------------------------------------------------------------------------------
# Library


class StyleLibrary:
    """An ordered set of styles by name, plus the problems met while loading them."""

    def __init__(self, styles: Iterable[Style] = (), problems: Iterable[str] = ()):
        self._styles: dict[str, Style] = {}
        for style in styles:
            self._styles[style.name] = style
        self.problems: list[str] = list(problems)

    def __len__(self) -> int:
        return len(self._styles)

    def __iter__(self):
        return iter(self._styles.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) is not None

    def names(self) -> list[str]:
        return list(self._styles)

    def add(self, style: Style) -> None:
        self._styles[style.name] = style

    def _find(self, name: str) -> Style | None:
        if name in self._styles:
            return self._styles[name]
        key = name.strip().casefold()
        for style in self._styles.values():
            if style.name.casefold() == key or (style.name_zh and style.name_zh == name.strip()):
                return style
        return None

    def get(self, name: str) -> Style:
        """The style called ``name`` (exact, then case-insensitive, then Chinese name)."""
        style = self._find(name)
        if style is None:
            known = ", ".join(self._styles) or "none"
            raise UserError(f"Unknown style '{name}'. Available styles: {known}.", field="styles")
        return style

    def resolve(self, names: Iterable[str]) -> list[Style]:
        return [self.get(n) for n in names]

    def apply(self, prompt: str, negative: str, names: Iterable[Style | str]) -> tuple[str, str]:
        return apply_styles(prompt, negative, names, self)

    def to_api(self) -> list[dict[str, str]]:
        return styles_to_api(self)
