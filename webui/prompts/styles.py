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

:func:`load_style_library` combines both into a :class:`StyleLibrary`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from webui.errors import UserError

__all__ = [
    "PROMPT_PLACEHOLDER",
    "Style",
    "StyleLibrary",
    "BUILTIN_STYLES",
    "merge_template",
    "join_prompts",
    "apply_styles",
    "parse_styles_csv",
    "load_styles_csv",
    "find_styles_files",
    "load_style_library",
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


# ---------------------------------------------------------------------------------------------
# styles.csv import


class _CsvRowError(Exception):
    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


def _split_csv_records(text: str):
    """Yield ``(line_number, fields | None, error | None)`` for each record of ``text``.

    A small CSV reader (RFC 4180 with Python-csv leniency for quotes inside unquoted fields)
    that, unlike :mod:`csv`, recovers from a broken record: an unterminated quote or junk after
    a closing quote costs only that record, parsing resumes on the following line.
    """
    n = len(text)
    pos = 0
    line = 1
    while pos < n:
        start_pos, start_line = pos, line
        fields: list[str] = []
        field: list[str] = []
        error: str | None = None
        while True:
            if pos < n and text[pos] == '"':
                # Quoted field.
                pos += 1
                closed = False
                while pos < n:
                    ch = text[pos]
                    if ch == '"':
                        if pos + 1 < n and text[pos + 1] == '"':
                            field.append('"')
                            pos += 2
                            continue
                        pos += 1
                        closed = True
                        break
                    if ch == "\n":
                        line += 1
                    field.append(ch)
                    pos += 1
                if not closed:
                    error = "a quote (\") is opened but never closed"
                    break
                if pos < n and text[pos] not in ",\r\n":
                    error = (
                        "unexpected text after a closing quote"
                        + (f" on line {line}" if line != start_line else "")
                        + "; quotes inside a field must be doubled (\"\")"
                    )
                    break
            else:
                while pos < n and text[pos] not in ",\r\n":
                    field.append(text[pos])
                    pos += 1
            fields.append("".join(field))
            field = []
            if pos < n and text[pos] == ",":
                pos += 1
                continue
            # End of record.
            if pos < n and text[pos] == "\r":
                pos += 1
            if pos < n and text[pos] == "\n":
                pos += 1
            line += 1
            break
        if error is None:
            yield start_line, fields, None
            continue
        yield start_line, None, error
        # Resume on the line after the start of the broken record: when a stray quote swallowed
        # the following lines, those lines are most likely rows of their own.
        resume_line = start_line
        pos = start_pos
        line = start_line
        while pos < n and line <= resume_line:
            nl = text.find("\n", pos)
            if nl < 0:
                pos = n
                break
            pos = nl + 1
            line += 1


def parse_styles_csv(text: str, source: str = "styles.csv") -> tuple[list[Style], list[str]]:
    """Parse the text of an A1111 ``styles.csv``; returns ``(styles, problems)``.

    The header row must have a ``name`` column; ``prompt`` (or the older ``text``) and
    ``negative_prompt`` are optional, other columns are ignored. Problems name the file and line.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    styles: list[Style] = []
    problems: list[str] = []
    header: list[str] | None = None
    seen: dict[str, int] = {}
    for line, fields, error in _split_csv_records(text):
        if error is not None:
            problems.append(f"{source}, line {line}: {error}; row skipped")
            continue
        assert fields is not None
        if all(not f.strip() for f in fields):
            continue  # blank line
        if header is None:
            header = [f.strip().lower() for f in fields]
            if "name" not in header:
                problems.append(
                    f"{source}, line {line}: the header row must have a 'name' column "
                    f"(expected name,prompt,negative_prompt); file skipped"
                )
                return [], problems
            continue
        if len(fields) < len(header):
            missing = ", ".join(header[len(fields):])
            problems.append(
                f"{source}, line {line}: {len(fields)} column(s) instead of {len(header)} "
                f"(missing: {missing}); row skipped"
            )
            continue
        if len(fields) > len(header) and any(f.strip() for f in fields[len(header):]):
            problems.append(
                f"{source}, line {line}: {len(fields)} columns instead of {len(header)} "
                f"(a comma inside a field needs quotes); row skipped"
            )
            continue
        row = dict(zip(header, fields))
        name = row.get("name", "").strip()
        if not name:
            problems.append(f"{source}, line {line}: the style has no name; row skipped")
            continue
        prompt = row.get("prompt", row.get("text", ""))
        negative = row.get("negative_prompt", "")
        if name in seen:
            problems.append(
                f"{source}, line {line}: style '{name}' is also defined on line {seen[name]}; "
                f"the later one is used"
            )
            styles = [s for s in styles if s.name != name]
        seen[name] = line
        styles.append(Style(name, prompt, negative, source=f"{source}:{line}"))
    if header is None:
        problems.append(f"{source}: the file is empty (expected a header name,prompt,negative_prompt)")
    return styles, problems


def load_styles_csv(path: str | Path) -> tuple[list[Style], list[str]]:
    """Read one styles.csv file; never raises for a bad file, reports it instead."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [], [f"{path.name}: cannot be read ({exc.strerror or exc})"]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [f"{path.name}: not UTF-8 text (byte {exc.start}); save it as UTF-8"]
    return parse_styles_csv(text, source=path.name)


def find_styles_files(places: Iterable[str | Path]) -> list[Path]:
    """The styles CSV files found in ``places``.

    Each place is either a CSV file or a folder; in a folder ``styles.csv`` and then
    ``styles-*.csv`` / ``styles_*.csv`` (sorted) are used. Missing places are ignored and a
    file is listed once even if two places point at it.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for place in places:
        if place is None:
            continue
        p = Path(place)
        candidates: list[Path] = []
        if p.is_file():
            candidates = [p]
        elif p.is_dir():
            main = p / "styles.csv"
            if main.is_file():
                candidates.append(main)
            extra = sorted({*p.glob("styles-*.csv"), *p.glob("styles_*.csv")})
            candidates.extend(extra)
        for c in candidates:
            key = c.resolve()
            if key not in seen:
                seen.add(key)
                found.append(c)
    return found


def load_style_library(
    places: Sequence[str | Path] = (), *, include_builtin: bool = True
) -> StyleLibrary:
    """Built-in styles plus every styles CSV found in ``places`` (in that order).

    A style from a file replaces a built-in or earlier style of the same name. Problems are in
    ``library.problems``; loading never raises.
    """
    library = StyleLibrary(BUILTIN_STYLES if include_builtin else ())
    for path in find_styles_files(places):
        styles, problems = load_styles_csv(path)
        for style in styles:
            library.add(style)
        library.problems.extend(problems)
    return library
