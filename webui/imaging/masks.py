"""Mask helpers for inpainting, face detail and outpainting.

Everything here is plain image arithmetic (PIL / NumPy / OpenCV), no Stable Diffusion code.

Conventions
-----------
* A *region* is ``(x0, y0, x1, y1)`` in pixels, ``x1``/``y1`` exclusive (the PIL crop box).
* A *mask* is a PIL image in mode ``"L"``: 0 keeps the original pixel, 255 takes the generated
  one, values in between blend linearly.
* ``composite`` guarantees that every pixel whose mask value is 0 is bit-for-bit the original.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw

from webui.errors import UserError

Region = tuple[int, int, int, int]

__all__ = [
    "Region",
    "FILL_MODES",
    "box_to_region",
    "expand_to_aspect",
    "feathered_mask",
    "blur_mask",
    "mask_bbox",
    "composite",
    "paste_crop",
    "expand_canvas",
]

#: Fill modes accepted by :func:`expand_canvas`.
FILL_MODES = ("edge", "reflect", "noise", "black", "gray", "white")


# --------------------------------------------------------------------------- regions


def box_to_region(box: Any) -> Region:
    """Accept a face box (anything with ``x, y, w, h``) or an ``(x0, y0, x1, y1)`` sequence."""
    if all(hasattr(box, a) for a in ("x", "y", "w", "h")):
        x0, y0 = int(round(box.x)), int(round(box.y))
        return x0, y0, x0 + int(round(box.w)), y0 + int(round(box.h))
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return x0, y0, x1, y1


def _check_size(size: Sequence[int], what: str = "image size") -> tuple[int, int]:
    try:
        w, h = (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError):
        raise UserError(f"Invalid {what} {size!r}: expected (width, height).") from None
    if w <= 0 or h <= 0:
        raise UserError(f"Invalid {what} {w}x{h}: width and height must be positive.")
    return w, h


def _fit_span(lo: int, length: int, limit: int) -> tuple[int, int]:
    """Move the span [lo, lo+length) inside [0, limit); shrink it to ``limit`` if longer."""
    length = min(length, limit)
    lo = min(max(lo, 0), limit - length)
    return lo, lo + length


def expand_to_aspect(region: Sequence[int], aspect: float | None, image_size: Sequence[int]) -> Region:
    """Grow ``region`` around its centre until ``width / height == aspect``, staying in the image.

    The region is only ever enlarged (never cropped), then shifted to lie inside the image.
    When the image is too small in one direction the region takes the full image extent
    there, and the ratio is as close as the image allows (callers resize the crop to the
    model size anyway). ``aspect`` None or <= 0 only clamps. This is the behaviour of the
    "only masked" inpainting mode: the crop gets the aspect ratio of the generation size so
    resizing it does not distort the content.
    """
    W, H = _check_size(image_size)
    x0, y0, x1, y1 = (int(v) for v in region)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(W, x1), min(H, y1)
    if x1 <= x0 or y1 <= y0:
        raise UserError(f"The region {tuple(region)} lies outside the {W}x{H} image.")
    w, h = x1 - x0, y1 - y0
    if aspect is not None and aspect > 0 and math.isfinite(aspect):
        if w / h < aspect:
            w = min(W, max(w, int(round(h * aspect))))
        else:
            h = min(H, max(h, int(round(w / aspect))))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    nx0, nx1 = _fit_span(int(math.floor(cx - w / 2.0 + 0.5)), w, W)
    ny0, ny1 = _fit_span(int(math.floor(cy - h / 2.0 + 0.5)), h, H)
    # the span move must not drop any part of the original region
    if nx0 > x0:
        nx0, nx1 = x0, x0 + (nx1 - nx0)
    if nx1 < x1:
        nx0, nx1 = x1 - (nx1 - nx0), x1
    if ny0 > y0:
        ny0, ny1 = y0, y0 + (ny1 - ny0)
    if ny1 < y1:
        ny0, ny1 = y1 - (ny1 - ny0), y1
    return nx0, ny0, nx1, ny1


# --------------------------------------------------------------------------- masks


def _gaussian(arr: np.ndarray, support: int, sigma: float) -> np.ndarray:
    """Gaussian blur with a kernel truncated at ``support`` px (nothing leaks further)."""
    k = 2 * support + 1
    return cv2.GaussianBlur(arr, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)


def feathered_mask(size: Sequence[int], box: Any, blur_px: int, shape: str = "ellipse") -> Image.Image:
    """Soft mask for a face: a filled ellipse (or rounded rectangle) in ``box``, then blurred.

    ``size`` is the (width, height) of the mask; ``box`` a face box (``x, y, w, h``) or a
    region ``(x0, y0, x1, y1)``. The Gaussian kernel is truncated at ``blur_px`` pixels
    (sigma = blur_px / 2.5), so every pixel farther than ``blur_px`` from the shape is exactly 0.
    ``shape`` is ``"ellipse"``, ``"rounded"`` or ``"rect"``.
    """
    W, H = _check_size(size, "mask size")
    blur_px = int(round(blur_px))
    if blur_px < 0:
        raise UserError(f"Mask blur must be 0 or more pixels, got {blur_px}.")
    x0, y0, x1, y1 = box_to_region(box)
    mask = Image.new("L", (W, H), 0)
    if x1 <= x0 or y1 <= y0:
        return mask
    draw = ImageDraw.Draw(mask)
    xy = (x0, y0, x1 - 1, y1 - 1)
    if shape == "ellipse":
        draw.ellipse(xy, fill=255)
    elif shape == "rounded":
        draw.rounded_rectangle(xy, radius=max(1, min(x1 - x0, y1 - y0) // 4), fill=255)
    elif shape == "rect":
        draw.rectangle(xy, fill=255)
    else:
        raise UserError(f"Unknown mask shape {shape!r}: use 'ellipse', 'rounded' or 'rect'.")
    if blur_px == 0:
        return mask
    arr = _gaussian(np.asarray(mask), blur_px, blur_px / 2.5)
    return Image.fromarray(arr, "L")


def feathered_polygon(size: Sequence[int], points: Sequence[Sequence[float]], blur_px: int,
                      grow: float = 0.0) -> Image.Image:
    """Soft mask of a filled polygon (a face outline), as :func:`feathered_mask` blurs its
    shapes: every pixel farther than ``blur_px`` from the polygon is exactly 0. ``grow`` scales
    the polygon about its centroid first (0.1 = 10% larger)."""
    W, H = _check_size(size, "mask size")
    blur_px = int(round(blur_px))
    if blur_px < 0:
        raise UserError(f"Mask blur must be 0 or more pixels, got {blur_px}.")
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    mask = Image.new("L", (W, H), 0)
    if len(pts) < 3:
        return mask
    centre = pts.mean(axis=0)
    pts = centre + (pts - centre) * (1.0 + float(grow))
    ImageDraw.Draw(mask).polygon([(float(x), float(y)) for x, y in pts], fill=255)
    if blur_px == 0:
        return mask
    return Image.fromarray(_gaussian(np.asarray(mask), blur_px, blur_px / 2.5), "L")


def blur_mask(mask: Image.Image, radius: float) -> Image.Image:
    """The inpainting "mask blur": a Gaussian blur of the L mask with standard deviation ``radius``.

    The kernel is truncated at 2.5 sigma. ``radius`` 0 returns an unchanged copy.
    """
    if radius is None or radius < 0 or not math.isfinite(radius):
        raise UserError(f"Mask blur must be 0 or more, got {radius}.")
    mask = mask.convert("L")
    if radius == 0:
        return mask.copy()
    support = max(1, int(math.floor(2.5 * radius + 0.5)))
    return Image.fromarray(_gaussian(np.asarray(mask), support, float(radius)), "L")


def mask_bbox(mask: Image.Image, padding: int, image_size: Sequence[int] | None = None) -> Region | None:
    """Crop region for "only masked" inpainting, or None when the mask is empty.

    The bounding box of the non-zero mask pixels, grown by ``padding`` on every side,
    clamped to the mask, then enlarged (see :func:`expand_to_aspect`) to the aspect ratio
    of ``image_size`` = the (width, height) the crop will be generated at. ``image_size``
    None keeps the padded box as it is.
    """
    padding = int(padding)
    if padding < 0:
        raise UserError(f"Only-masked padding must be 0 or more pixels, got {padding}.")
    arr = np.asarray(mask.convert("L"))
    ys, xs = np.nonzero(arr)
    if xs.size == 0:
        return None
    W, H = mask.size
    region = (
        max(0, int(xs.min()) - padding),
        max(0, int(ys.min()) - padding),
        min(W, int(xs.max()) + 1 + padding),
        min(H, int(ys.max()) + 1 + padding),
    )
    aspect = None
    if image_size is not None:
        tw, th = _check_size(image_size, "target size")
        aspect = tw / th
    return expand_to_aspect(region, aspect, (W, H))


# --------------------------------------------------------------------------- compositing


def _mode_for(image: Image.Image) -> str:
    return image.mode if image.mode in ("RGB", "RGBA", "L") else "RGB"


COMPOSITE_ROWS = 128


def composite(original: Image.Image, generated: Image.Image, mask: Image.Image) -> Image.Image:
    """Blend ``generated`` over ``original`` with ``mask`` (same sizes).

    mask 0 -> the original pixel, exactly; 255 -> the generated pixel, exactly; in between
    ``round(orig + (gen - orig) * m / 255)``. The result has the original's mode (RGB, RGBA
    or L; other modes become RGB).
    """
    if original.size != generated.size or original.size != mask.size:
        raise UserError(
            f"Cannot composite: original {original.size[0]}x{original.size[1]}, generated "
            f"{generated.size[0]}x{generated.size[1]} and mask {mask.size[0]}x{mask.size[1]} "
            "must all have the same size."
        )
    mode = _mode_for(original)
    orig = np.asarray(original.convert(mode))
    gen = np.asarray(generated.convert(mode))
    m = np.asarray(mask.convert("L"))
    if orig.ndim == 3:
        m = m[..., None]
    # Exact integer arithmetic, a band of rows at a time: (o*(255-m) + g*m) / 255 rounded. 255 is
    # odd, so no value is ever half-way and this equals the float formula; the sum stays below
    # 65536, so uint16 holds it, and a 4096x4096 photo needs a few MB instead of a GB of floats.
    out = np.empty_like(orig)
    for y in range(0, orig.shape[0], COMPOSITE_ROWS):
        rows = slice(y, y + COMPOSITE_ROWS)
        w = m[rows].astype(np.uint16)
        blend = orig[rows].astype(np.uint16) * (255 - w) + gen[rows].astype(np.uint16) * w
        out[rows] = (blend + 127) // 255
    return Image.fromarray(out, mode)


def paste_crop(
    original: Image.Image, crop_result: Image.Image, region: Sequence[int], mask: Image.Image
) -> Image.Image:
    """Put a processed crop back into the full image through ``mask``.

    ``crop_result`` is what came out of the model for the crop ``region`` (any size: it is
    resized to the region with Lanczos). ``mask`` is either full-image sized or region
    sized; outside the region the mask is treated as 0. Pixels where the (full-size) mask is
    0 stay exactly the original's.
    """
    x0, y0, x1, y1 = (int(v) for v in region)
    W, H = original.size
    if not (0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H):
        raise UserError(f"The crop region {(x0, y0, x1, y1)} does not fit in the {W}x{H} image.")
    rw, rh = x1 - x0, y1 - y0
    mode = _mode_for(original)
    patch = crop_result.convert(mode)
    if patch.size != (rw, rh):
        patch = patch.resize((rw, rh), Image.Resampling.LANCZOS)
    mask = mask.convert("L")
    if mask.size == (W, H):
        full_mask = Image.new("L", (W, H), 0)
        full_mask.paste(mask.crop((x0, y0, x1, y1)), (x0, y0))
    elif mask.size == (rw, rh):
        full_mask = Image.new("L", (W, H), 0)
        full_mask.paste(mask, (x0, y0))
    else:
        raise UserError(
            f"The mask is {mask.size[0]}x{mask.size[1]}; it must match the image ({W}x{H}) "
            f"or the crop region ({rw}x{rh})."
        )
    pasted = original.convert(mode)  # a copy
    pasted.paste(patch, (x0, y0))
    return composite(original, pasted, full_mask)


# --------------------------------------------------------------------------- outpainting


def expand_canvas(
    image: Image.Image,
    left: int = 0,
    right: int = 0,
    top: int = 0,
    bottom: int = 0,
    fill: str = "edge",
    overlap: int = 0,
    seed: int | None = None,
) -> tuple[Image.Image, Image.Image]:
    """Grow the canvas for outpainting; returns ``(image, mask)``.

    The original pixels keep their values and sit at ``(left, top)``. The mask (mode L) is
    255 on the new area and 0 on the original, except that with ``overlap`` > 0 it also
    covers that many pixels of the original along each side that was extended, so the seam
    gets repainted. ``fill`` decides what the new area starts as: ``"edge"`` repeats the
    border pixels, ``"reflect"`` mirrors the image, ``"noise"`` is the edge colours with
    strong Gaussian noise (``seed`` makes it repeatable), ``"black"``/``"gray"``/``"white"``
    are flat colours.
    """
    pads = {"left": left, "right": right, "top": top, "bottom": bottom, "overlap": overlap}
    for name, v in pads.items():
        if v is None or int(v) != v or v < 0:
            raise UserError(f"Outpainting {name} must be a whole number of pixels >= 0, got {v!r}.")
    left, right, top, bottom, overlap = (int(pads[k]) for k in ("left", "right", "top", "bottom", "overlap"))
    if fill not in FILL_MODES:
        raise UserError(f"Unknown outpainting fill {fill!r}: use one of {', '.join(FILL_MODES)}.")
    src = image.convert("RGB")
    arr = np.asarray(src)
    h, w = arr.shape[:2]
    pad_width = ((top, bottom), (left, right), (0, 0))
    if fill in ("edge", "noise"):
        out = np.pad(arr, pad_width, mode="edge")
    elif fill == "reflect":
        out = np.pad(arr, pad_width, mode="symmetric")
    else:
        value = {"black": 0, "gray": 128, "white": 255}[fill]
        out = np.pad(arr, pad_width, mode="constant", constant_values=value)
    out = np.ascontiguousarray(out)
    new_area = np.ones(out.shape[:2], dtype=bool)
    new_area[top : top + h, left : left + w] = False
    if fill == "noise" and new_area.any():
        rng = np.random.default_rng(seed)
        noisy = out.astype(np.float32) + rng.normal(0.0, 64.0, out.shape).astype(np.float32)
        noisy = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        out[new_area] = noisy[new_area]
    mask = new_area.copy()
    if overlap:
        if left:
            mask[top : top + h, left : left + min(overlap, w)] = True
        if right:
            mask[top : top + h, left + w - min(overlap, w) : left + w] = True
        if top:
            mask[top : top + min(overlap, h), left : left + w] = True
        if bottom:
            mask[top + h - min(overlap, h) : top + h, left : left + w] = True
    mask_img = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    return Image.fromarray(out, "RGB"), mask_img
