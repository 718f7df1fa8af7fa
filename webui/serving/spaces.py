"""Hugging Face Spaces (ZeroGPU) support that costs nothing elsewhere.

On a ZeroGPU Space (SPACES_ZERO_GPU set and the `spaces` package importable, which the Spaces
image provides) GPU functions are wrapped with `spaces.GPU(duration=...)`, the duration being
estimated from the request. Everywhere else `gpu()` returns the function unchanged; `spaces` is
deliberately not in requirements.txt.

ZeroGPU runs the wrapped function in a forked worker: previews and progress still stream back
(it is a generator), but Interrupt/Skip pressed in the page cannot reach a job running there,
so on ZeroGPU a job always runs to its end (keep batch counts small).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os

log = logging.getLogger(__name__)

# Seconds per sampling step for one 512x512 image on a ZeroGPU slice, with headroom: an H200
# does SD1.5 512x512 at ~25-50 ms/step and SDXL 1024x1024 at ~80 ms/step eager (4x the pixels).
SECONDS_PER_STEP_512 = 0.1
BASE_SECONDS = 10
MIN_SECONDS, MAX_SECONDS = 15, 300


def zero_gpu_module():
    """The `spaces` module when running on ZeroGPU, else None."""
    if not os.environ.get("SPACES_ZERO_GPU"):
        return None
    try:
        return importlib.import_module("spaces")
    except ImportError:
        log.warning("SPACES_ZERO_GPU is set but the `spaces` package is missing; running without it")
        return None


def estimate_seconds(req) -> int:
    """GPU time to reserve for one request: steps x pixels x images, plus model warm-up."""
    images = max(1, req.batch_size) * max(1, req.n_iter)
    area = req.width * req.height / (512 * 512)
    strength = 1.0 if req.task == "txt2img" else max(0.1, req.denoising_strength)
    steps = req.steps * strength
    hires = getattr(req, "enable_hr", False)
    if hires:
        steps += getattr(req, "hr_second_pass_steps", 0) or req.steps
        area *= max(1.0, getattr(req, "hr_scale", 1.0) or 1.0) ** 2
    seconds = BASE_SECONDS + images * steps * area * SECONDS_PER_STEP_512
    return int(min(MAX_SECONDS, max(MIN_SECONDS, seconds)))


def gpu(fn):
    """Wrap `fn(req, ...)` for ZeroGPU with a duration estimated from `req`; else return fn."""
    spaces = zero_gpu_module()
    if spaces is None:
        return fn

    def duration(req, *args, **kwargs):
        return estimate_seconds(req)

    wrapped = spaces.GPU(duration=duration)(fn)
    return functools.wraps(fn)(wrapped)
