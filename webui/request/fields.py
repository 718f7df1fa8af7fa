"""Loosely typed request fields (UI widgets, A1111 JSON) -> checked values: each helper takes
the field's name, default and bounds, and raises a UserError naming the field.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..validate import number, shown


def as_int(fields: dict, name: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
    v = fields.get(name, default)
    if v is None or v == "":
        return default
    return number(v, name, name, lo, hi, integer=True)


def as_float(fields: dict, name: str, default: float, lo: float | None = None, hi: float | None = None) -> float:
    v = fields.get(name, default)
    if v is None or v == "":
        return default
    return number(v, name, name, lo, hi)


def as_bool(fields: dict, name: str, default: bool) -> bool:
    v = fields.get(name, default)
    if isinstance(v, bool):
        return v
    if v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.lower() in ("true", "1", "yes")
    if v is None:
        return default
    raise UserError(f"{name} must be true or false, got {shown(v)}", field=name)


def as_str(fields: dict, name: str, default: str, max_len: int) -> str:
    v = fields.get(name, default)
    if v is None:
        return default
    if not isinstance(v, str):
        raise UserError(f"{name} must be text, got {type(v).__name__}", field=name)
    if len(v) > max_len:
        raise UserError(f"{name} is {len(v)} characters long; the limit is {max_len}", field=name)
    return v


def size_field(fields: dict, name: str, default: int, hi: int) -> int:
    v = as_int(fields, name, default, 64, hi)
    if v % 8:
        raise UserError(f"{name} must be a multiple of 8 (e.g. {v - v % 8} or {v - v % 8 + 8}), got {v}",
                        field=name)
    return v


def choice(fields: dict, name: str, default, options) -> Any:
    """Accept an option's index or its text (A1111 sends either for enums)."""
    v = fields.get(name, default)
    if v is None:
        return default
    if isinstance(v, str) and not v.isdigit():
        for i, o in enumerate(options):
            if v.lower() == o.lower():
                return i
        raise UserError(f"{name} must be one of {', '.join(options)}; got {shown(v)}", field=name)
    return as_int({name: v}, name, default, 0, len(options) - 1)
