"""The A1111 "parameters" text (infotext) as text: build it from a prompt, a negative prompt and
`Key: value` pairs (A1111's key order, JSON-quoted values where needed) and parse it back into
a dict by key, never by position, so the variants other UIs write all read. Mapping the parsed
keys to request fields is `infotext.py`'s job; this part is plain text work.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from numbers import Integral, Real

NEGATIVE_PREFIX = "Negative prompt:"

# A1111 1.10's fixed keys, in the order it writes them; extras follow, then Version.
_FIXED_KEYS: tuple[str, ...] = (
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Image CFG scale",
    "Seed",
    "Face restoration",
    "Size",
    "Model hash",
    "Model",
    "FP8 weight",
    "Cache FP16 weight for LoRA",
    "VAE hash",
    "VAE",
    "Variation seed",
    "Variation seed strength",
    "Seed resize from",
    "Denoising strength",
    "Conditional mask weight",
    "Clip skip",
    "ENSD",
    "Token merging ratio",
    "Token merging ratio hr",
    "Init image hash",
    "RNG",
    "Tiling",
)

# Extras A1111 and its built-in extensions add, in the order they are usually added.
_KNOWN_EXTRA_KEYS: tuple[str, ...] = (
    "Hires prompt",
    "Hires negative prompt",
    "Hires upscale",
    "Hires resize",
    "Hires steps",
    "Hires upscaler",
    "Hires checkpoint",
    "Hires sampler",
    "Hires schedule type",
    "Hires CFG Scale",
    "Mask blur",
    "Inpaint area",
    "Masked area padding",
    "Masked content",
    "Mask mode",
    "Mask preset",
    "Lora hashes",
    "TI hashes",
    "Styles array",
    "Style",
    "Preset",
    "Character",
)

_TRAILING_KEYS: tuple[str, ...] = ("Version", "User")

KEY_ORDER: tuple[str, ...] = (*_FIXED_KEYS, *_KNOWN_EXTRA_KEYS)
_KEY_RANK = {key: rank for rank, key in enumerate(KEY_ORDER)}

# Keys whose value is a width x height pair.
_SIZE_KEYS = frozenset({"Size", "Seed resize from", "Hires resize"})

# Minimum number of pairs for a last line to count as the parameters line.
MIN_PARAM_PAIRS = 3

_KEY_RE = re.compile(r"^\w[\w .\-/+()\[\]'&]{0,79}$")
_BAD_KEY_CHARS = re.compile(r'[,:"\r\n]')


# ---------------------------------------------------------------------------------------------
# Building


def format_value(value: object) -> str:
    """A parameter value as A1111 prints it, before quoting (7.0 -> "7", (512, 768) -> "512x768")."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        number = float(value)
        if math.isfinite(number) and number.is_integer() and abs(number) < 1e16:
            return str(int(number))
        # str() of numpy float32 gives its own shortest form ("0.1", not "0.10000000149").
        return repr(number) if type(value) is float else str(value)
    if isinstance(value, Mapping):
        # The A1111 hash-list format: "name: hash, name2: hash2".
        return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return json.dumps([format_value(v) for v in value], ensure_ascii=False)
    return str(value)


def quote(text: str) -> str:
    """JSON-quote a value that would otherwise break the `Key: value, ...` line."""
    if any(ch in text for ch in ",:\n\r") or (text.startswith('"') and len(text) > 1):
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(text: str) -> str:
    """Inverse of `quote`; leaves anything that is not a valid JSON string unchanged."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            value = json.loads(text)
        except ValueError:
            return text
        if isinstance(value, str):
            return value
    return text


def _ordered_items(params: Mapping[str, object]) -> list[tuple[str, str]]:
    known: list[tuple[int, str, str]] = []
    unknown: list[tuple[str, str]] = []
    trailing: list[tuple[str, str]] = []
    for key, value in params.items():
        # A key cannot carry the separators of the line it lives in.
        key = _BAD_KEY_CHARS.sub(" ", str(key)).strip()
        if not key or value is None:
            continue
        if key in _SIZE_KEYS and isinstance(value, (list, tuple)) and len(value) == 2:
            text = f"{format_value(value[0])}x{format_value(value[1])}"
        else:
            text = format_value(value)
        # Single-line values only; strip ends so the parse gives the same string back.
        text = text.strip()
        if not text:
            continue
        if key in _TRAILING_KEYS:
            trailing.append((key, text))
        elif key in _KEY_RANK:
            known.append((_KEY_RANK[key], key, text))
        else:
            unknown.append((key, text))
    known.sort(key=lambda item: item[0])
    trailing.sort(key=lambda item: _TRAILING_KEYS.index(item[0]))
    return [(k, v) for _, k, v in known] + unknown + trailing


def build_params_line(params: Mapping[str, object]) -> str:
    """The last infotext line: `Key: value` pairs in A1111's order joined by ", "."""
    parts = []
    for key, text in _ordered_items(params):
        parts.append(key if text == key else f"{key}: {quote(text)}")
    return ", ".join(parts)


def build_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """The A1111 infotext for one image.

    `params` maps A1111 keys ("Steps", "Sampler", "Schedule type", "CFG scale", "Seed",
    "Size", "Model hash", "Model", ..., "Version") to values; order does not matter: A1111's
    key order is applied, unknown keys follow in insertion order and Version comes last.
    None and empty values are skipped. Floats print like A1111 (7.0 -> "7"); "Size" may be a
    (width, height) pair; a dict prints as "name: hash, ..." (for "Lora hashes").
    """
    prompt_text = "" if prompt is None else str(prompt)
    negative_text = "" if negative_prompt is None else str(negative_prompt)
    text = prompt_text
    if negative_text.strip():
        text += f"\n{NEGATIVE_PREFIX} {negative_text}"
    line = build_params_line(params or {})
    if line:
        text += "\n" + line
    return text.strip()


# ---------------------------------------------------------------------------------------------
# Parsing


def _scan_json_string(line: str, start: int) -> int:
    """Index just past the closing quote of the JSON string starting at `start`, or -1."""
    i = start + 1
    n = len(line)
    while i < n:
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    return -1


def parse_params_line(line: str) -> dict[str, str]:
    """`Key: value, ...` pairs of one line (values unquoted). Segments that are not pairs
    (bare flags, garbage) are skipped."""
    result: dict[str, str] = {}
    i = 0
    n = len(line)
    while i < n:
        while i < n and line[i] in " \t,":
            i += 1
        if i >= n:
            break
        colon = line.find(":", i)
        comma = line.find(",", i)
        if colon < 0 or (0 <= comma < colon):
            # No colon before the next comma: a bare flag or garbage; skip the segment.
            if comma < 0:
                break
            i = comma + 1
            continue
        key = line[i:colon].strip()
        j = colon + 1
        while j < n and line[j] in " \t":
            j += 1
        value: str | None = None
        if j < n and line[j] == '"':
            end = _scan_json_string(line, j)
            if end > 0:
                k = end
                while k < n and line[k] in " \t":
                    k += 1
                if k >= n or line[k] == ",":
                    value = unquote(line[j:end])
                    i = k + 1
        if value is None:
            comma = line.find(",", j)
            end = n if comma < 0 else comma
            value = line[j:end].strip()
            i = end + 1
        if _KEY_RE.match(key):
            result[key] = value
    return result


def _is_negative_line(line: str) -> bool:
    return line.lstrip()[: len(NEGATIVE_PREFIX)].lower() == NEGATIVE_PREFIX.lower()


def parse_infotext(text: str) -> dict[str, str]:
    """Split an infotext into {"Prompt", "Negative prompt", and every `Key` of the last line}.

    All values are strings (quoted values unquoted). The last line counts as the parameters
    line only when it holds at least `MIN_PARAM_PAIRS` pairs; otherwise it belongs to the
    prompt. Never raises: garbage gives {"Prompt": <text>, "Negative prompt": ""} at worst.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()

    lines = text.split("\n") if text else []
    params: dict[str, str] = {}
    if lines:
        candidate = parse_params_line(lines[-1])
        if len(candidate) >= MIN_PARAM_PAIRS:
            params = candidate
            lines = lines[:-1]

    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in lines:
        if not in_negative and _is_negative_line(line):
            in_negative = True
            line = line.lstrip()[len(NEGATIVE_PREFIX):].strip()
        (negative_lines if in_negative else prompt_lines).append(line)

    result = {
        "Prompt": "\n".join(prompt_lines).strip(),
        "Negative prompt": "\n".join(negative_lines).strip(),
    }
    for key, value in params.items():
        if key in result:
            # A tool that writes "Prompt: ..." pairs: use it only if the text had none.
            if not result[key]:
                result[key] = value
            continue
        result[key] = value
    return result
