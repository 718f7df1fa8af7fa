"""Turning whatever a user uploads into the RGB image the engine expects.

Documented conversions (never a crash): animated images use their first frame; 16-bit and
other modes are converted to 8-bit RGB; CMYK is converted to RGB; transparency is flattened
onto white (for masks, the alpha channel itself is the mask when it carries one).
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image, ImageOps

from .errors import UserError
from .image_meta import open_image


def decode_base64_bytes(data: str, field: str = "image") -> bytes:
    """The file bytes of raw base64 or a data URL (`data:image/png;base64,...`)."""
    if not isinstance(data, str) or not data:
        raise UserError(f"{field} must be a base64-encoded image", field=field)
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise UserError(f"{field} is not valid base64", field=field) from None


def decode_base64_image(data: str, field: str = "image") -> Image.Image:
    """A1111 clients send raw base64 or a data URL (`data:image/png;base64,...`)."""
    raw = decode_base64_bytes(data, field)
    try:
        return open_image(io.BytesIO(raw))
    except UserError as e:
        raise UserError(f"{field}: {e}", field=field) from None


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


def load_upload(source, field: str = "init_images") -> Image.Image | None:
    """An uploaded picture (file path, bytes, file object, PIL image or base64 text) as RGB,
    with the conversions above. None stays None; anything unreadable is a UserError."""
    if source is None or source == "":
        return None
    if isinstance(source, str) and (source.startswith("data:") or len(source) > 4096):
        img = decode_base64_image(source, field)
    else:
        try:
            img = open_image(source)
        except UserError as e:
            raise UserError(f"{field}: {e}", field=field) from None
    return to_rgb(img)


def load_mask(source, field: str = "mask") -> Image.Image | None:
    """An uploaded mask image as 'L' (white = repaint), see to_mask."""
    if source is None or source == "":
        return None
    if isinstance(source, str) and (source.startswith("data:") or len(source) > 4096):
        img = decode_base64_image(source, field)
    else:
        try:
            img = open_image(source)
        except UserError as e:
            raise UserError(f"{field}: {e}", field=field) from None
    return to_mask(img)


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
