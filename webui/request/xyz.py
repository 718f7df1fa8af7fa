"""The X/Y/Z plot script: its arguments in A1111's order, its axis types and their values.

``script_args`` (A1111's order): x_type, x_values, x_values_dropdown, y_type, y_values,
y_values_dropdown, z_type, z_values, z_values_dropdown, draw_legend, include_lone_images,
include_sub_grids, no_fixed_seeds, vary_seeds_x, vary_seeds_y, vary_seeds_z, margin_size,
csv_mode. The older 15-argument form (no vary_seeds_*) is accepted too. An axis type is its
name or its index in A1111's list for that tab (``axis_names``).

Values are A1111's syntax: a comma list (CSV quoting allowed), integer ranges ``1-5``,
``1-10 (+2)`` and ``1-3 [5]`` (five values from 1 to 3), and the same with decimals for decimal
axes. ``plan_cells`` turns the arguments and the request fields into one field dict per cell;
every cell is then checked as a request of its own before anything runs.
"""

from __future__ import annotations

import csv
import random
import re
from dataclasses import dataclass

from ..errors import UserError
from .generation import MAX_SEED

MAX_AXIS_VALUES = 64
MAX_CELLS = 256
FIELD = "script_args"

# A1111's axis list, in its order; "txt2img"/"img2img" marks the types only one tab lists.
# Each type: (name, tab or None, value kind, request field or None when not honoured here).
_AXES = [
    ("Nothing", None, "none", ""), ("Seed", None, "int", "seed"), ("Var. seed", None, "int", "subseed"),
    ("Var. strength", None, "float", "subseed_strength"), ("Steps", None, "int", "steps"),
    ("Hires steps", "txt2img", "int", "hr_second_pass_steps"), ("CFG Scale", None, "float", "cfg_scale"),
    ("Image CFG Scale", "img2img", "float", None), ("Prompt S/R", None, "str", "prompt_sr"),
    ("Prompt order", None, "str", None), ("Sampler", "txt2img", "str", "sampler_name"),
    ("Hires sampler", "txt2img", "str", "hr_sampler_name"), ("Sampler", "img2img", "str", "sampler_name"),
    ("Checkpoint name", None, "str", "sd_model_checkpoint"),
    ("Negative Guidance minimum sigma", None, "float", None), ("Sigma Churn", None, "float", None),
    ("Sigma min", None, "float", None), ("Sigma max", None, "float", None), ("Sigma noise", None, "float", None),
    ("Schedule type", None, "str", "scheduler"), ("Schedule min sigma", None, "float", None),
    ("Schedule max sigma", None, "float", None), ("Schedule rho", None, "float", None),
    ("Beta schedule alpha", None, "float", None), ("Beta schedule beta", None, "float", None),
    ("Eta", None, "float", None), ("Clip skip", None, "int", "clip_skip"),
    ("Denoising", None, "float", "denoising_strength"), ("Initial noise multiplier", None, "float", None),
    ("Extra noise", None, "float", None), ("Hires upscaler", "txt2img", "str", "hr_upscaler"),
    ("Cond. Image Mask Weight", "img2img", "float", None), ("VAE", None, "str", "sd_vae"),
    ("Styles", None, "str", None), ("UniPC Order", None, "int", None), ("Face restore", None, "str", None),
    ("Token merging ratio", None, "float", None), ("Token merging ratio high-res", None, "float", None),
    ("Always discard next-to-last sigma", None, "str", None), ("SGM noise multiplier", None, "str", None),
    ("Refiner checkpoint", None, "str", None), ("Refiner switch at", None, "float", None),
    ("RNG source", None, "str", None), ("FP8 mode", None, "str", None), ("Size", None, "str", "size"),
]


def _axes(task: str) -> list[tuple]:
    tab = "txt2img" if task == "txt2img" else "img2img"
    return [a for a in _AXES if a[1] in (None, tab)]


def axis_names(is_img2img: bool) -> list[str]:
    """The axis types in A1111's order for a tab (an axis type's index is its place here)."""
    return [a[0] for a in _axes("img2img" if is_img2img else "txt2img")]


def supported_axis_names(task: str) -> list[str]:
    """The axis types this server can vary, in A1111's order."""
    return [a[0] for a in _axes(task) if a[3] is not None]


@dataclass(frozen=True)
class Axis:
    name: str
    field: str  # request field ("" for Nothing; "prompt_sr", "size" are handled specially)
    values: tuple

    def label(self, value) -> str:
        if self.field in ("prompt_sr", "sd_model_checkpoint", "sd_vae"):
            return str(value)
        if self.field == "size":
            return f"Size: {value[0]}x{value[1]}"
        return f"{self.name}: {value:g}" if isinstance(value, float) else f"{self.name}: {value}"


@dataclass(frozen=True)
class XYZPlot:
    x: Axis
    y: Axis
    z: Axis
    draw_legend: bool = True
    include_lone_images: bool = False
    include_sub_grids: bool = False
    no_fixed_seeds: bool = False
    margin_size: int = 0

    def shape(self) -> tuple[int, int, int]:
        return len(self.x.values), len(self.y.values), len(self.z.values)

    def infotext_params(self) -> list[tuple[str, str]]:
        out = [("Script", "X/Y/Z plot")]
        for a, axis in zip("XYZ", (self.x, self.y, self.z)):
            if axis.field:
                shown = ("x".join(map(str, v)) if axis.field == "size" else f"{v:g}" if isinstance(v, float)
                         else str(v) for v in axis.values)
                out += [(f"{a} Type", axis.name), (f"{a} Values", ", ".join(shown))]
        return out


_INT_RANGE = re.compile(r"^\s*([+-]?\d+)\s*-\s*([+-]?\d+)\s*(?:\(\s*([+-]?\d+)\s*\)|\[\s*(\d+)\s*\])?\s*$")
_FLOAT = r"[+-]?(?:\d+\.?\d*|\.\d+)"
_FLOAT_RANGE = re.compile(rf"^\s*({_FLOAT})\s*-\s*({_FLOAT})\s*(?:\(\s*({_FLOAT})\s*\)|\[\s*(\d+)\s*\])?\s*$")


def _too_many(what: str, n: int) -> UserError:
    return UserError(f"{what} has {n} values; the X/Y/Z plot allows at most {MAX_AXIS_VALUES} per axis "
                     f"(and {MAX_CELLS} cells in all)", field=FIELD)


def _expand(item: str, kind: str, what: str) -> list:
    """One comma-separated item: a number or a range of numbers."""
    m = (_INT_RANGE if kind == "int" else _FLOAT_RANGE).match(item)
    if m:
        num = int if kind == "int" else float
        start, end = num(m.group(1)), num(m.group(2))
        if m.group(4) is not None:  # [count]
            count = int(m.group(4))
            if count > MAX_AXIS_VALUES:
                raise _too_many(what, count)
            if count < 1:
                raise UserError(f"{what}: the count in {item.strip()!r} must be at least 1", field=FIELD)
            vals = [start + (end - start) * i / max(count - 1, 1) for i in range(count)]
            return [int(v) for v in vals] if kind == "int" else [round(v, 6) for v in vals]
        step = num(m.group(3)) if m.group(3) is not None else num(1 if start <= end else -1)
        if step == 0 or (end - start) * step < 0:
            raise UserError(f"{what}: the step in {item.strip()!r} never reaches the end", field=FIELD)
        n = int((end - start) / step + 1e-9) + 1
        if n > MAX_AXIS_VALUES:
            raise _too_many(what, n)
        return [start + i * step if kind == "int" else round(start + i * step, 6) for i in range(n)]
    try:
        return [int(item) if kind == "int" else float(item)]
    except ValueError:
        raise UserError(f"{what}: {item.strip()[:60]!r} is not {'a whole number' if kind == 'int' else 'a number'} "
                        "or a range like 1-5, 1-10 (+2), 1-3 [5]", field=FIELD) from None


def parse_values(text, kind: str, what: str) -> list:
    """An axis's values text -> its values (A1111's syntax, see the module docstring)."""
    if isinstance(text, (list, tuple)):
        items = [str(v) for v in text]
    elif isinstance(text, (str, int, float)) and not isinstance(text, bool):
        if len(str(text)) > 10_000:
            raise UserError(f"{what} is too long", field=FIELD)
        items = next(csv.reader([str(text)], skipinitialspace=True), [])
    else:
        raise UserError(f"{what} must be text", field=FIELD)
    items = [i.strip() for i in items if i.strip()]
    values: list = []
    for item in items:
        values += [item] if kind == "str" else _expand(item, kind, what)
        if len(values) > MAX_AXIS_VALUES:
            raise _too_many(what, len(values))
    return values


def _axis(kind_arg, text, dropdown, task: str, letter: str, csv_mode: bool) -> Axis:
    axes = _axes(task)
    what = f"{letter} type"
    if kind_arg is None or (isinstance(kind_arg, str) and not kind_arg.strip()):
        kind_arg = "Nothing"
    if isinstance(kind_arg, bool) or not isinstance(kind_arg, (int, str)):
        raise UserError(f"{what} must be an axis type's name or index", field=FIELD)
    if isinstance(kind_arg, int) or kind_arg.strip().isdigit():
        i = int(kind_arg)
        if not 0 <= i < len(axes):
            raise UserError(f"{what} {i} is not an axis type: {task} has 0..{len(axes) - 1}", field=FIELD)
        found = axes[i]
    else:
        found = next((a for a in axes if a[0].lower() == kind_arg.strip().lower()), None)
        if found is None:
            raise UserError(f"{what}: no axis type {kind_arg[:60]!r}; {task} has {', '.join(axis_names(task != 'txt2img'))}",
                            field=FIELD)
    name, _, kind, field = found
    if field is None:
        raise UserError(f"{what}: the axis type {name!r} is not supported here; these are: "
                        f"{', '.join(supported_axis_names(task))}", field=FIELD)
    if not field:
        return Axis(name, "", (None,))
    source = dropdown if kind == "str" and not csv_mode and isinstance(dropdown, list) and dropdown else text
    values = parse_values(source, kind, f"{letter} values ({name})")
    if not values:
        raise UserError(f"{letter} values: the {name} axis has no values", field=FIELD)
    if field == "size":
        values = [_size(v, letter) for v in values]
    if field == "prompt_sr":
        values = [str(v) for v in values]
    return Axis(name, field, tuple(values))


def _size(value: str, letter: str) -> tuple[int, int]:
    m = re.match(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$", value)
    if not m:
        raise UserError(f"{letter} values (Size): {value[:40]!r} is not WIDTHxHEIGHT", field=FIELD)
    return int(m.group(1)), int(m.group(2))


def parse_plot(args, task: str) -> XYZPlot:
    """``script_args`` of the X/Y/Z plot (A1111's order; see the module docstring)."""
    if not isinstance(args, (list, tuple)):
        raise UserError("script_args must be a list (A1111's X/Y/Z plot argument order)", field=FIELD)
    args = list(args)
    if len(args) in (14, 15):  # the older order: no vary_seeds_x/y/z
        args = args[:13] + [False, False, False] + args[13:]
    defaults = [1, "", [], 0, "", [], 0, "", [], True, False, False, False, False, False, False, 0, False]
    if len(args) > len(defaults):
        raise UserError(f"script_args has {len(args)} values; the X/Y/Z plot takes at most {len(defaults)}",
                        field=FIELD)
    a = args + defaults[len(args):]
    csv_mode = bool(a[17])
    x = _axis(a[0], a[1], a[2], task, "X", csv_mode)
    y = _axis(a[3], a[4], a[5], task, "Y", csv_mode)
    z = _axis(a[6], a[7], a[8], task, "Z", csv_mode)
    margin = a[16]
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= 500:
        raise UserError("script_args: margin_size must be a number of pixels from 0 to 500", field=FIELD)
    plot = XYZPlot(x, y, z, bool(a[9]), bool(a[10]), bool(a[11]), bool(a[12]), int(margin))
    nx, ny, nz = plot.shape()
    if nx * ny * nz > MAX_CELLS:
        raise UserError(f"the X/Y/Z plot would have {nx}x{ny}x{nz} = {nx * ny * nz} cells; at most {MAX_CELLS} "
                        f"(and {MAX_AXIS_VALUES} per axis)", field=FIELD)
    return plot


def _apply(fields: dict, axis: Axis, value) -> None:
    if not axis.field:
        return
    if axis.field == "prompt_sr":
        search = axis.values[0]
        for key in ("prompt", "negative_prompt"):
            if isinstance(fields.get(key), str):
                fields[key] = fields[key].replace(search, value)
    elif axis.field == "size":
        fields["width"], fields["height"] = value
    else:
        fields[axis.field] = value


def plan_cells(plot: XYZPlot, fields: dict) -> tuple[XYZPlot, list[tuple[tuple[int, int, int], dict]]]:
    """The plot with its seeds fixed, and one field dict per cell, x fastest then y then z
    (A1111's order of the lone images). Seeds are fixed first unless no_fixed_seeds: a -1 seed
    becomes one random seed for every cell, a -1 on a seed axis a random seed of its own."""
    base = {k: v for k, v in fields.items() if k not in ("script_name", "script_args")}
    if int(base.get("batch_size") or 1) * int(base.get("n_iter") or 1) != 1:
        raise UserError("the X/Y/Z plot makes one picture per cell: batch_size and n_iter must be 1",
                        field="batch_size")
    for axis in (plot.x, plot.y, plot.z):
        if axis.field == "prompt_sr" and not any(axis.values[0] in str(base.get(k) or "")
                                                 for k in ("prompt", "negative_prompt")):
            raise UserError(f"Prompt S/R: {axis.values[0]!r} is not in the prompt or the negative prompt",
                            field=FIELD)
    rng = random.Random()
    if not plot.no_fixed_seeds and base.get("seed") in (None, -1, "-1"):
        base["seed"] = rng.randrange(MAX_SEED)

    def fixed(axis: Axis, v):
        if axis.field in ("seed", "subseed") and v == -1 and not plot.no_fixed_seeds:
            return rng.randrange(MAX_SEED)
        return v

    axes = [Axis(a.name, a.field, tuple(fixed(a, v) for v in a.values)) for a in (plot.x, plot.y, plot.z)]
    cells = []
    for iz, vz in enumerate(axes[2].values):
        for iy, vy in enumerate(axes[1].values):
            for ix, vx in enumerate(axes[0].values):
                cell = dict(base)
                for axis, value in zip(axes, (vx, vy, vz)):
                    _apply(cell, axis, value)
                cells.append(((ix, iy, iz), cell))
    return XYZPlot(*axes, plot.draw_legend, plot.include_lone_images, plot.include_sub_grids,
                   plot.no_fixed_seeds, plot.margin_size), cells


__all__ = ["FIELD", "MAX_AXIS_VALUES", "MAX_CELLS", "Axis", "XYZPlot", "axis_names", "parse_plot",
           "parse_values", "plan_cells", "supported_axis_names"]
