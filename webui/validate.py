"""Checks at the request edge, shared by every reader of user input (build_request,
Service.prepare, the REST routes, the ControlNet / IP-Adapter / extras parsers):

- number(): the one numeric coercion (no OverflowError, NaN or infinity gets through);
- check_fields() / check_value(): every value of a request, known field or not, is valid
  text, a finite number that fits in 64 bits, and lists are within their declared bounds;
- check_pixel_limit(): an output size within the pixel limit.

Every problem is a UserError naming the field; shown() keeps a bad value in a message short
and printable.
"""

from __future__ import annotations

import math
import re

from .errors import UserError

__all__ = ["LIST_BOUNDS", "check_fields", "check_pixel_limit", "check_value", "number", "shown", "text_problem"]


def shown(value, width: int = 60) -> str:
    """``value`` for a message: its repr (which escapes what is not printable), cut short, so
    an error never carries megabytes or an unprintable character back to the client."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        # repr() of a huge int is slow, and refused past 4300 digits.
        return f"a {int(value.bit_length() * math.log10(2)) + 1}-digit number"
    text = repr(value)
    return text if len(text) <= width else f"{text[:width]}... ({len(text)} characters)"


def _bounds(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" between {lo} and {hi}"
    if lo is not None:
        return f" of at least {lo}"
    return f" of at most {hi}" if hi is not None else ""


def number(value, what: str, field: str | None, lo=None, hi=None, integer: bool = False):
    """The one numeric coercion: an int, float or numeric text -> an int (``integer``) or a
    float within [lo, hi]. Never raises anything but UserError: booleans, NaN, infinities,
    integers beyond the float range and text that is not a number are refused, ``what``
    (e.g. "steps" or "ControlNet unit 0: weight") and ``field`` naming it."""
    kind = "a whole number" if integer else "a number"
    bounds = _bounds(lo, hi)
    if isinstance(value, bool):
        raise UserError(f"{what} must be {kind}{bounds}, got {shown(value)}", field=field)
    exact = None  # an int, compared exactly (no float conversion, so no OverflowError)
    if isinstance(value, int):
        exact = value
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        try:
            exact = int(value.strip())
        except ValueError:  # past Python's 4300-digit limit
            raise UserError(f"{what} must be {kind}{bounds}, got {shown(value)}", field=field) from None
    if exact is not None:
        if (lo is not None and exact < lo) or (hi is not None and exact > hi):
            raise UserError(f"{what} must be {kind}{bounds}, got {shown(value)}", field=field)
        if integer:
            return exact
        try:
            return float(exact)
        except OverflowError:
            raise UserError(f"{what} must be a finite number, got {shown(value)}", field=field) from None
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{what} must be {kind}{bounds}, got {shown(value)}", field=field) from None
    if not math.isfinite(f):
        raise UserError(f"{what} must be a finite number{bounds}, got {shown(value)}", field=field)
    if integer and not f.is_integer():
        raise UserError(f"{what} must be a whole number, got {shown(value)}", field=field)
    if (lo is not None and f < lo) or (hi is not None and f > hi):
        raise UserError(f"{what} must be {kind}{bounds}, got {shown(value)}", field=field)
    return int(f) if integer else f


# ---- every value of a request: valid text, finite numbers, bounded lists ---------------------

# Most items in a list (or keys in an object) per field; a name with "*" stands for any key.
# Fields not named here (unknown ones are ignored, but echoed by the API) get MAX_ITEMS.
LIST_BOUNDS = {
    "styles": 32,
    "init_images": 16,           # only the first is used; A1111 clients may send one per image
    "controlnet_units": 16,      # of which at most controlnet.MAX_UNITS are on
    "ip_adapters": 8,            # of which at most ipadapter.MAX_ADAPTERS
    "alwayson_scripts": 32,      # scripts
    "alwayson_scripts.*": 64,    # one script's settings ...
    "alwayson_scripts.*.args": 64,  # ... or args (ControlNet units, ADetailer tabs)
    "override_settings": 64,
    "extra_params": 64,
}
MAX_ITEMS = 256
MAX_DEPTH = 32
# Not valid Unicode text: lone UTF-16 surrogates (a JSON "\ud800" decodes to one); and NUL,
# which C libraries (tokenizers, PNG text chunks) read as the end of the text.
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` is not acceptable text, or None."""
    if text.isascii() and "\x00" not in text:  # the common case, e.g. base64 images: no regex scan
        return None
    m = _BAD_CHAR.search(text)
    if m is None:
        return None
    where = f"at character {m.start() + 1}"
    if m.group() == "\x00":
        return f"contains a NUL character ({where}); remove it"
    return (f"contains {m.group()!r}, half of a UTF-16 surrogate pair ({where}), which is not valid "
            "Unicode text; send the whole character (UTF-8 encoded, or both halves of the \\u escape)")


def _bound(names: list[str]) -> int:
    for pattern, most in LIST_BOUNDS.items():
        parts = pattern.split(".")
        if len(parts) == len(names) and all(p in ("*", n) for p, n in zip(parts, names)):
            return most
    return MAX_ITEMS


def check_value(value, field: str, path: str | None = None) -> None:
    """Walk ``value`` (a request field, or a whole JSON body with ``field`` "body"): every
    string and object key must be valid text, every float finite, every int within 64 bits,
    every list or object within its bound (LIST_BOUNDS), nesting at most MAX_DEPTH deep.
    Raises UserError naming ``field``; the message gives the place inside it
    (``alwayson_scripts.controlnet.args[0].model``). Other objects (images, arrays) are left
    to the field's own parser."""
    stack = [(value, path or field, [] if field == "body" else [field], 0)]
    while stack:
        v, where, names, depth = stack.pop()
        if isinstance(v, str):
            problem = text_problem(v)
            if problem:
                raise UserError(f"{where} {problem}", field=field)
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise UserError(f"{where} must be a finite number, got {v}", field=field)
        elif isinstance(v, int) and not isinstance(v, bool):
            if not -2**63 <= v < 2**64:  # what a JSON answer (orjson) can carry back
                raise UserError(f"{where} is {shown(v)}; whole numbers must fit in 64 bits", field=field)
        elif isinstance(v, (dict, list, tuple)):
            if depth >= MAX_DEPTH:
                raise UserError(f"{where} is nested more than {MAX_DEPTH} levels deep", field=field)
            most = _bound(names)
            if len(v) > most:
                what = "keys" if isinstance(v, dict) else "items"
                raise UserError(f"{where} has {len(v)} {what}; at most {most} are allowed", field=field)
            if isinstance(v, dict):
                for k, item in v.items():
                    key = k if isinstance(k, str) else str(k)
                    problem = text_problem(key)
                    if problem:
                        raise UserError(f"a key in {where} {problem}", field=field)
                    shown_key = key if len(key) <= 40 else key[:40] + "..."
                    stack.append((item, f"{where}.{shown_key}", names + [key], depth + 1))
            else:
                stack.extend((item, f"{where}[{i}]", names, depth + 1) for i, item in enumerate(v))


def check_fields(fields: dict) -> None:
    """check_value for each field of a request; a key that is not valid text is refused too."""
    for name, value in fields.items():
        if not isinstance(name, str):
            raise UserError(f"field names must be text, got {shown(name)}", field=shown(name))
        problem = text_problem(name)
        if problem:
            raise UserError(f"a field name {problem}", field=ascii(name))
        check_value(value, name if name.strip() else repr(name))


def check_pixel_limit(width: int, height: int, max_pixels: int, what: str = "upscaled image") -> None:
    """Raise :class:`UserError` when ``width x height`` is over ``max_pixels``."""
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise UserError(f"The {what} size {width}x{height} is invalid: width and height must be positive.")
    if max_pixels and width * height > max_pixels:
        raise UserError(
            f"The {what} would be {width}x{height} = {width * height / 1e6:.2f} megapixels, over the limit of "
            f"{max_pixels / 1e6:.2f} megapixels ({int(max_pixels)} pixels). Lower the upscale factor or the "
            "target width/height (or the input size), or raise the pixel limit in the settings."
        )
