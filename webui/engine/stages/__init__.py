"""Passes after the first one: hires fix (an img2img pass over the upscaled picture) and face
detail (an inpaint pass per face). Each builds a `PassSpec` and calls `denoise.run_pass`."""

from __future__ import annotations

from . import hires


def any_wanted(req) -> bool:
    """Whether a request runs a stage after its base pass (such requests run alone)."""
    return hires.wanted(req) or bool(req.face_detail)
