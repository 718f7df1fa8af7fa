"""What every upscaler shares: the :class:`Upscaler` protocol, the target size of a scale and
the check of a user's scale factor, the folder model files live in, and the two plain PIL
resamplers (Lanczos, Nearest). The model-file upscalers build on it in
``spandrel_upscalers.py``; ``upscalers.py`` names and picks them.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol, runtime_checkable

from PIL import Image

from webui.errors import UserError

UPSCALER_SUBDIR = "ESRGAN"

ProgressFn = Callable[[int, int], None]


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(round(w * scale), round(h * scale))``, at least 1x1."""
    w, h = size
    return max(1, int(round(w * scale))), max(1, int(round(h * scale)))


def check_scale(scale: float) -> float:
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise UserError(f"Upscale factor must be a number, got {scale!r}.") from None
    if not math.isfinite(scale) or scale <= 0:
        raise UserError(f"Upscale factor must be greater than 0, got {scale}.")
    return scale


# --------------------------------------------------------------------------- protocol + simple ones


@runtime_checkable
class Upscaler(Protocol):
    name: str

    def upscale(self, image: Image.Image, scale: float) -> Image.Image: ...


class _PILUpscaler:
    name = ""
    _filter: Image.Resampling

    def upscale(self, image: Image.Image, scale: float, **_: Any) -> Image.Image:
        scale = check_scale(scale)
        size = scaled_size(image.size, scale)
        if size == image.size:
            return image.copy()
        return image.resize(size, self._filter)


class LanczosUpscaler(_PILUpscaler):
    name = "Lanczos"
    _filter = Image.Resampling.LANCZOS


class NearestUpscaler(_PILUpscaler):
    name = "Nearest"
    _filter = Image.Resampling.NEAREST
