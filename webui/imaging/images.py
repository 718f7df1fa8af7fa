"""Turning whatever a user uploads into the RGB image the engine expects.

Documented conversions (never a crash): animated images use their first frame; 16-bit and
other modes are converted to 8-bit RGB; CMYK is converted to RGB; transparency is flattened
onto white (for masks, the alpha channel itself is the mask when it carries one).
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
from PIL import Image, ImageOps

from ..errors import UserError
from ..metadata.uploads import open_image, upload_too_large
from ..settings import Limits


# What uploads are called in messages, by request field.
UPLOAD_LABELS = {"init_images": "The input image", "mask": "The mask", "image": "The image"}


def upload_label(field: str) -> str:
    return UPLOAD_LABELS.get(field, f"The {field} image")


def open_upload(source, limits: Limits | None = None, field: str = "image") -> Image.Image:
    """Open an uploaded file (path, bytes, file object or PIL image) within the upload limits:
    bytes and pixels are checked before the pixels are decoded. Same messages for UI and API."""
    lim = limits or Limits()
    return open_image(source, max_bytes=lim.max_upload_bytes, max_pixels=lim.max_upload_pixels,
                      label=upload_label(field))


def decode_base64_bytes(data: str, field: str = "image", limits: Limits | None = None) -> bytes:
    """The file bytes of raw base64 or a data URL (`data:image/png;base64,...`)."""
    if not isinstance(data, str) or not data:
        raise UserError(f"{field} must be a base64-encoded image", field=field)
    lim = limits or Limits()
    if data.startswith("data:"):
        data = data.partition(",")[2]
    if len(data) // 4 * 3 > lim.max_upload_bytes + 3:  # refuse before decoding the text
        raise UserError(upload_too_large(upload_label(field), len(data) // 4 * 3, lim.max_upload_bytes),
                        field=field)
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise UserError(f"{field} is not valid base64", field=field) from None


def decode_base64_image(data: str, field: str = "image", limits: Limits | None = None) -> Image.Image:
    """A1111 clients send raw base64 or a data URL (`data:image/png;base64,...`)."""
    raw = decode_base64_bytes(data, field, limits)
    try:
        return open_upload(raw, limits, field)
    except UserError as e:
        raise UserError(str(e), field=field) from None


def to_rgb(img: Image.Image) -> Image.Image:
    if getattr(img, "is_animated", False):
        img.seek(0)
    img = ImageOps.exif_transpose(img) if img.getexif() else img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def to_mask(img: Image.Image) -> Image.Image:
    """An uploaded or drawn mask as 'L': white = repaint. A mask with real transparency uses
    its alpha channel (what a brush layer is); otherwise its brightness."""
    if getattr(img, "is_animated", False):
        img.seek(0)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        alpha = img.convert("RGBA").getchannel("A")
        if alpha.getextrema() != (255, 255):
            return alpha
    return to_rgb(img).convert("L")


def _open_any(source, field: str, limits: Limits | None):
    """A file path, bytes, file object, PIL image or base64 text, within the upload limits."""
    if isinstance(source, str) and (source.startswith("data:") or len(source) > 4096):
        return decode_base64_image(source, field, limits)
    try:
        return open_upload(source, limits, field)
    except UserError as e:
        raise UserError(str(e), field=field) from None


def load_upload(source, field: str = "init_images", limits: Limits | None = None) -> Image.Image | None:
    """An uploaded picture as RGB, with the conversions above. None stays None; anything
    unreadable or over the upload limits is a UserError."""
    if source is None or source == "":
        return None
    return to_rgb(_open_any(source, field, limits))


def load_mask(source, field: str = "mask", limits: Limits | None = None) -> Image.Image | None:
    """An uploaded mask image as 'L' (white = repaint), see to_mask."""
    if source is None or source == "":
        return None
    return to_mask(_open_any(source, field, limits))


def editor_mask(layers, size: tuple[int, int]) -> Image.Image | None:
    """The mask painted in the browser editor: every pixel any brush layer touched (alpha > 0)
    is 255. A layer of another size than the picture is stretched to it (nearest pixel).
    None when nothing was painted."""
    out = None
    for layer in layers or ():
        if layer is None:
            continue
        if not isinstance(layer, Image.Image):
            layer = open_image(layer)
        if layer.mode not in ("RGBA", "LA"):
            continue  # a layer without alpha carries no strokes
        alpha = np.asarray(layer.getchannel("A")) > 0
        m = Image.fromarray(alpha.astype(np.uint8) * 255, "L")
        if m.size != tuple(size):
            m = m.resize(tuple(size), Image.NEAREST)
        out = m if out is None else Image.fromarray(np.maximum(np.asarray(out), np.asarray(m)), "L")
    if out is not None and out.getbbox() is None:
        return None
    return out


def combine_masks(*masks: Image.Image | None) -> Image.Image | None:
    """Union of the drawn and uploaded masks (both 'L', same size); None if there are none."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = np.asarray(present[0])
    for m in present[1:]:
        if m.size != present[0].size:
            raise UserError(f"the uploaded mask is {m.width}x{m.height} but the picture is "
                            f"{present[0].width}x{present[0].height}; they must be the same size", field="mask")
        out = np.maximum(out, np.asarray(m))
    return Image.fromarray(out, "L")


def image_bytes(img) -> int:
    """Bytes of a decoded PIL image's pixels (0 for anything else: a path, None)."""
    if not isinstance(img, Image.Image):
        return 0
    w, h = img.size
    bits = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}.get(img.mode, 8)
    return w * h * max(1, len(img.getbands()) * bits // 8)
