"""Checks at the request edge, shared by every reader of user input (build_request, the
ControlNet / IP-Adapter / extras parsers): number() is the one numeric coercion (no
OverflowError, NaN or infinity gets through); shown() keeps a bad value in a message short
and printable. Every problem is a UserError naming the field.
"""

from __future__ import annotations

import math

from .errors import UserError

__all__ = ["number", "shown"]


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
