"""Hires fix options of a request: the "same as the first pass" choices, the output size
(``target_size``, shared with the engine's second pass) and the pixel-limit check at the edge.
"""

from __future__ import annotations

from ..errors import UserError
from ..samplers_names import SCHEDULE_TYPES, normalize_schedule_type, resolve_sampler
from ..validate import check_pixel_limit
from .fields import as_str

SAME_SAMPLER = "Use same sampler"
SAME_SCHEDULER = "Use same scheduler"


def _floor8(v: float) -> int:
    return max(64, int(v) // 8 * 8)


def _ceil8(v: float) -> int:
    return max(64, -(-int(round(v)) // 8) * 8)


def target_size(width: int, height: int, scale: float, resize_x: int = 0, resize_y: int = 0
                ) -> tuple[tuple[int, int], tuple[int, int]]:
    """((upscale_w, upscale_h), (out_w, out_h)) for a first pass of width x height.

    The output is what the user asked for, in multiples of 8; the upscale size differs from
    it only when both resize sides are given with another aspect ratio (cover, then crop).
    """
    if not resize_x and not resize_y:
        out = (_floor8(width * scale), _floor8(height * scale))
        return out, out
    if not resize_y:
        out = (_floor8(resize_x), _floor8(resize_x * height / width))
        return out, out
    if not resize_x:
        out = (_floor8(resize_y * width / height), _floor8(resize_y))
        return out, out
    out = (_floor8(resize_x), _floor8(resize_y))
    if width / height < out[0] / out[1]:  # first pass is narrower: match widths, crop height
        up = (out[0], max(out[1], _ceil8(out[0] * height / width)))
    else:
        up = (max(out[0], _ceil8(out[1] * width / height)), out[1])
    return up, out


def check_request(req, max_pixels: int) -> None:
    """Refuse, at the request edge, a hires fix whose output would exceed the pixel limit."""
    if not (req.enable_hr and req.task == "txt2img"):
        return
    _, (w, h) = target_size(req.width, req.height, req.hr_scale, req.hr_resize_x, req.hr_resize_y)
    try:
        check_pixel_limit(w, h, max_pixels, "hires fix output")
    except UserError as e:
        raise UserError(str(e), field="hr_resize_x" if (req.hr_resize_x or req.hr_resize_y) else "hr_scale") from None


def hr_sampler(fields: dict) -> str:
    name = as_str(fields, "hr_sampler_name", SAME_SAMPLER, 100) or SAME_SAMPLER
    if name.lower() == SAME_SAMPLER.lower():
        return SAME_SAMPLER
    try:
        return resolve_sampler(name)[0]
    except UserError as e:
        raise UserError(f"hires sampler: {e}", field="hr_sampler_name") from None


def hr_scheduler(fields: dict) -> str:
    name = as_str(fields, "hr_scheduler", SAME_SCHEDULER, 100) or SAME_SCHEDULER
    sampler = as_str(fields, "hr_sampler_name", SAME_SAMPLER, 100) or SAME_SAMPLER
    if sampler.lower() != SAME_SAMPLER.lower():
        suffix = resolve_sampler(sampler)[1]  # "DPM++ 2M Karras": the suffix wins, as for the first pass
        if suffix != "Automatic":
            return suffix
    if name.lower() == SAME_SCHEDULER.lower():
        return SAME_SCHEDULER
    label = normalize_schedule_type(name)
    if label is None:
        raise UserError(f"unknown hires schedule type {name!r}; use {SAME_SCHEDULER!r} or one of "
                        f"{', '.join(SCHEDULE_TYPES)}", field="hr_scheduler")
    return label
