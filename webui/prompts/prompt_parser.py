"""The A1111 prompt syntax: attention weights, ``BREAK`` and ``<lora:...>`` tags.

Pure Python, no torch. The encoder (:mod:`webui.prompts.prompt_encoder`) turns the result into tensors.

Attention syntax (weights multiply when nested)::

    >>> parse_weights("a (red:1.3) dress")
    [('a ', 1.0), ('red', 1.3), (' dress', 1.0)]
    >>> parse_weights("((smile)) [hat]")
    [('smile', 1.2100000000000002), (' ', 1.0), ('hat', 0.9090909090909091)]
    >>> parse_weights(r"a \\(literal\\) bracket")
    [('a (literal) bracket', 1.0)]
    >>> parse_weights("portrait BREAK background")
    [('portrait', 1.0), ('BREAK', -1.0), ('background', 1.0)]

Problems a user can make (unbalanced brackets, ``(x:abc)``) never raise: the prompt is read the
way A1111 reads it and :func:`parse_prompt` adds a human-readable warning.

LoRA tags are removed from the text and returned in order::

    >>> p = parse_prompt("photo <lora:faceDetail:0.6> of a woman <lyco:skin>")
    >>> p.loras
    [('faceDetail', 0.6), ('skin', 1.0)]
    >>> p.segments
    [('photo  of a woman ', 1.0)]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

__all__ = [
    "BREAK",
    "MAX_WEIGHT",
    "ParsedPrompt",
    "ROUND_MULTIPLIER",
    "SQUARE_MULTIPLIER",
    "extract_loras",
    "is_break",
    "parse_prompt",
    "parse_weights",
]

ROUND_MULTIPLIER = 1.1
#: Largest emphasis (and LoRA) weight, either sign. A1111 puts no bound on them; past a few the
#: picture is already noise, and a huge one overflows the half-precision embeddings (inf/NaN,
#: a black image).
MAX_WEIGHT = 10.0
SQUARE_MULTIPLIER = 1 / 1.1

#: The marker segment a standalone ``BREAK`` turns into.
BREAK: tuple[str, float] = ("BREAK", -1.0)

Segment = tuple[str, float]


def is_break(segment: tuple[str, float]) -> bool:
    """True for the ``BREAK`` marker segment."""
    return segment[0] == BREAK[0] and segment[1] == BREAK[1]


@dataclass
class ParsedPrompt:
    """A prompt split into weighted text segments.

    ``segments``: ``(text, weight)`` pairs in order, neighbours with equal weight merged, ``BREAK``
    markers as ``("BREAK", -1.0)``; an empty prompt gives ``[("", 1.0)]``.
    ``warnings``: human-readable notes about things the user probably did not mean.
    ``loras``: ``(name, weight)`` for every ``<lora:...>``/``<lyco:...>`` tag, in order.
    """

    segments: list[Segment]
    warnings: list[str] = field(default_factory=list)
    loras: list[tuple[str, float]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# LoRA / extra-network tags
# --------------------------------------------------------------------------------------------

# <type:args>, the A1111 extra-network tag shape: a word, a colon, anything but '>'.
_TAG_RE = re.compile(r"<(\w+):([^<>]*)>")
_LORA_TYPES = {"lora", "lyco"}


def _parse_float(text: str) -> float | None:
    """A strict decimal number (``1``, ``1.25``, ``-.5``, ``+2.``) or None."""
    text = text.strip()
    if not _NUMBER_RE.fullmatch(text):
        return None
    return float(text)


_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def extract_loras(text: str) -> tuple[str, list[tuple[str, float]], list[str]]:
    """Remove ``<lora:name[:weight]>`` tags (``<lyco:...>`` is an alias) from ``text``.

    Returns ``(text_without_tags, [(name, weight), ...], warnings)``. The weight defaults to 1.0;
    a weight that is not a number gives a warning and 1.0. Extra ``:``-separated fields (A1111's
    separate text-encoder/UNet weights) are ignored with a warning. Tags of other extra-network
    types (``<hypernet:...>``) are removed with a warning, as A1111 also strips them.

        >>> extract_loras("a <lora:x:0.5> b <LoRA:y>")
        ('a  b ', [('x', 0.5), ('y', 1.0)], [])
        >>> extract_loras("<lora:x:strong>")[1:]
        ([('x', 1.0)], ["LoRA tag '<lora:x:strong>': weight 'strong' is not a number; using 1.0."])
    """
    loras: list[tuple[str, float]] = []
    warnings: list[str] = []

    def replace(match: re.Match[str]) -> str:
        kind = match.group(1).lower()
        tag = match.group(0)
        if kind not in _LORA_TYPES:
            warnings.append(f"'{tag}': '<{match.group(1)}:...>' tags are not supported; removed from the prompt.")
            return ""
        fields = match.group(2).split(":")
        name = fields[0].strip()
        if not name:
            warnings.append(f"LoRA tag '{tag}' has no name; removed from the prompt.")
            return ""
        weight = 1.0
        if len(fields) > 1 and fields[1].strip():
            value = _parse_float(fields[1])
            if value is None:
                warnings.append(f"LoRA tag '{tag}': weight '{fields[1].strip()}' is not a number; using 1.0.")
            elif not -MAX_WEIGHT <= value <= MAX_WEIGHT:
                weight = math.copysign(MAX_WEIGHT, value)
                warnings.append(f"LoRA tag '{_snippet(tag, 0, 40)}': the weight is beyond {MAX_WEIGHT:g}, which "
                                f"would turn the picture to noise or black; using {weight:g}.")
            else:
                weight = value
        if len(fields) > 2:
            warnings.append(f"LoRA tag '{tag}': only one weight is supported; the extra fields were ignored.")
        loras.append((name, weight))
        return ""

    return _TAG_RE.sub(replace, text), loras, warnings


# --------------------------------------------------------------------------------------------
# Attention weights
# --------------------------------------------------------------------------------------------

# One scanner token per match, tried in this order.
_SCAN_RE = re.compile(
    r"""
      (?P<escape>\\[()\[\]\\])            # \( \) \[ \] \\  -> the character itself
    | (?P<weight>:(?P<wtext>[^()\[\]\\:]*)\))  # ':1.3)' closes a round bracket with a weight
    | (?P<open>[(\[])
    | (?P<close>[)\]])
    | (?P<text>[^\\()\[\]:]+|[\\:])        # plain text; a lone backslash or colon is text too
    """,
    re.VERBOSE,
)
_BREAK_RE = re.compile(r"\s*\bBREAK\b\s*")


def _snippet(text: str, pos: int, width: int = 24) -> str:
    piece = text[pos : pos + width]
    return piece + ("..." if pos + width < len(text) else "")


def _parse_attention(text: str, where=None) -> tuple[list[Segment], list[str]]:
    """The attention scanner behind :func:`parse_weights` (no LoRA handling).

    ``where(i)`` turns an index in ``text`` into the 1-based character number shown in warnings.
    """
    if where is None:

        def where(index: int) -> int:
            return index + 1

    res: list[list] = []  # [text, weight]; BREAK markers are [BREAK text, -1.0]
    warnings: list[str] = []
    round_open: list[int] = []  # position in text of each open '('
    round_start: list[int] = []  # index in res where its range starts
    square_open: list[int] = []
    square_start: list[int] = []
    square_special: list[bool] = []  # ':' or '|' inside: A1111 prompt editing / alternation

    def add_text(piece: str) -> None:
        if square_special and ("|" in piece or ":" in piece):
            square_special[-1] = True
        parts = _BREAK_RE.split(piece)
        for i, part in enumerate(parts):
            if i > 0:
                res.append([BREAK[0], BREAK[1]])
            if part:
                res.append([part, 1.0])

    clamped: list[str] = []  # text whose weight went past MAX_WEIGHT

    def multiply(start: int, factor: float) -> None:
        for item in res[start:]:
            if item[1] != BREAK[1] or item[0] != BREAK[0]:
                weight = item[1] * factor
                if not -MAX_WEIGHT <= weight <= MAX_WEIGHT:  # also inf (a 400-digit weight), NaN (0 x inf)
                    weight = 0.0 if math.isnan(weight) else math.copysign(MAX_WEIGHT, weight)
                    if item[0].strip() and len(clamped) < 3 and item[0].strip() not in clamped:
                        clamped.append(item[0].strip())
                item[1] = weight

    for m in _SCAN_RE.finditer(text):
        pos = m.start()
        if m.group("escape"):
            add_text(m.group("escape")[1])
        elif m.group("weight") is not None:
            wtext = m.group("wtext")
            value = _parse_float(wtext)
            if round_open and value is not None:
                round_open.pop()
                multiply(round_start.pop(), value)
            elif round_open:
                # Like A1111: ':abc' stays text and the bracket gives its usual 1.1.
                warnings.append(
                    f"'{wtext.strip()}' in '{text[round_open[-1] : m.end()]}' is not a number, so it was "
                    f"read as text with the default 1.1 emphasis; write e.g. '(word:1.2)'."
                )
                add_text(":" + wtext)
                round_open.pop()
                multiply(round_start.pop(), ROUND_MULTIPLIER)
            else:
                add_text(":" + wtext + ")")
                warnings.append(
                    f"')' at character {where(m.end() - 1)} has no matching '(' and was kept as text; "
                    f"write '\\)' for a literal bracket."
                )
        elif m.group("open"):
            if m.group("open") == "(":
                round_open.append(pos)
                round_start.append(len(res))
            else:
                square_open.append(pos)
                square_start.append(len(res))
                square_special.append(False)
        elif m.group("close"):
            char = m.group("close")
            if char == ")" and round_open:
                round_open.pop()
                multiply(round_start.pop(), ROUND_MULTIPLIER)
            elif char == "]" and square_open:
                opened = square_open.pop()
                if square_special.pop():
                    warnings.append(
                        f"'[{text[opened + 1 : pos]}]' looks like prompt editing or alternation "
                        f"([a:b:when], [a|b]), which is not supported; it was read as text with "
                        f"de-emphasis."
                    )
                multiply(square_start.pop(), SQUARE_MULTIPLIER)
            else:
                add_text(char)
                escaped = "\\" + char
                warnings.append(
                    f"'{char}' at character {where(pos)} has no matching "
                    f"'{'(' if char == ')' else '['}' and was kept as text; write '{escaped}' for a "
                    f"literal bracket."
                )
        else:
            add_text(m.group("text"))

    # Unclosed brackets still apply to the rest of the prompt (what A1111 users see).
    for opened, start in zip(round_open, round_start):
        multiply(start, ROUND_MULTIPLIER)
        warnings.append(
            f"'(' at character {where(opened)} ('{_snippet(text, opened)}') is never closed, so "
            f"everything after it is emphasized; add ')' or write '\\(' for a literal bracket."
        )
    for opened, start in zip(square_open, square_start):
        multiply(start, SQUARE_MULTIPLIER)
        warnings.append(
            f"'[' at character {where(opened)} ('{_snippet(text, opened)}') is never closed, so "
            f"everything after it is de-emphasized; add ']' or write '\\[' for a literal bracket."
        )

    if clamped:
        warnings.append(
            f"the emphasis of {', '.join(repr(_snippet(t, 0)) for t in clamped)} went past "
            f"{MAX_WEIGHT:g} (weights multiply when brackets nest), which would wash the picture "
            f"out or turn it black; it was limited to {MAX_WEIGHT:g} (or -{MAX_WEIGHT:g})."
        )
    merged: list[Segment] = []
    for piece, weight in res:
        seg = (piece, weight)
        if merged and not is_break(seg) and not is_break(merged[-1]) and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + piece, weight)
        else:
            merged.append(seg)
    if not merged:
        merged = [("", 1.0)]
    return merged, warnings


def parse_weights(text: str) -> list[Segment]:
    """``(text, weight)`` segments of an A1111 prompt (LoRA tags are left in the text).

    ``(x)`` x1.1, ``((x))`` x1.21, ``(x:1.3)`` x1.3, ``[x]`` /1.1, nesting multiplies;
    ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are literal characters; a standalone uppercase ``BREAK``
    becomes the marker ``("BREAK", -1.0)`` (also inside brackets). Neighbours of equal weight are
    merged.

        >>> parse_weights("(a (b:2) c)")
        [('a ', 1.1), ('b', 2.2), (' c', 1.1)]
        >>> parse_weights("(unclosed emphasis")
        [('unclosed emphasis', 1.1)]
        >>> parse_weights("stray) bracket")
        [('stray) bracket', 1.0)]
        >>> parse_weights("(x:abc)")
        [('x:abc', 1.1)]
    """
    return _parse_attention(text)[0]


def parse_prompt(text: str) -> ParsedPrompt:
    """Parse a whole prompt: LoRA tags out first, then attention weights and ``BREAK``.

        >>> p = parse_prompt("(face:1.2) <lora:detail:0.5> [blur")
        >>> p.segments, p.loras
        ([('face', 1.2), ('  ', 1.0), ('blur', 0.9090909090909091)], [('detail', 0.5)])
        >>> len(p.warnings)
        1
    """
    stripped, loras, lora_warnings = extract_loras(text)
    removed = [m.span() for m in _TAG_RE.finditer(text)]

    def where(index: int) -> int:  # character number in the prompt as the user typed it
        for start, end in removed:
            if start > index:
                break
            index += end - start
        return index + 1

    segments, warnings = _parse_attention(stripped, where)
    return ParsedPrompt(segments=segments, warnings=lora_warnings + warnings, loras=loras)
