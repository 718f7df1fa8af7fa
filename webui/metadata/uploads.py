"""Opening untrusted image files: an upload (bytes, path, file object) becomes a PIL image or
a `UserError`, never anything else. The byte limit is checked before reading, the pixel
limit from the header before decoding, only the allowed formats reach a decoder, and
Pillow's decompression-bomb limit stays on. The one wording of the too-large messages lives
here so the UI and the API say the same thing.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from webui.errors import UserError
from webui.metadata.png_chunks import PNG_SIGNATURE, png_without_text

# Formats accepted from uploads; anything else is refused before a decoder runs.
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG covers MPO

MAX_FILE_BYTES = 200 * 1024 * 1024


def describe_source(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name or "The file"
    name = getattr(source, "name", None)
    if isinstance(name, str) and name:
        return Path(name).name
    return "The uploaded file"


def _human_bytes(n: int) -> str:
    for unit, size in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def upload_too_large(label: str, size: int, max_bytes: int) -> str:
    """The one message for an upload over the byte limit (UI and API alike)."""
    return (f"{label} is {_human_bytes(size)}; the upload limit is {_human_bytes(max_bytes)}. "
            "Save it as JPEG/WebP or downscale it first.")


def upload_too_many_pixels(label: str, width: int, height: int, max_pixels: int) -> str:
    """The one message for an image over the pixel limit (UI and API alike)."""
    return (f"{label} is {width}x{height} ({width * height} pixels); the limit is {max_pixels} pixels. "
            "Downscale it first.")


def read_source_bytes(source: object, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    label = describe_source(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > max_bytes:
            raise UserError(upload_too_large(label, len(source), max_bytes))
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            size = os.path.getsize(source)
            if size > max_bytes:
                raise UserError(upload_too_large(label, size, max_bytes))
            with open(source, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise UserError(f"{label} is not a readable image (cannot open it)") from exc
    if hasattr(source, "read"):
        try:
            data = source.read(max_bytes + 1)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - any reader failure is a bad upload
            raise UserError(f"{label} is not a readable image") from exc
        if not isinstance(data, (bytes, bytearray)):
            raise UserError(f"{label} is not a readable image")
        if len(data) > max_bytes:
            raise UserError(upload_too_large(label, len(data), max_bytes))
        return bytes(data)
    raise UserError(f"{label} is not a readable image")


def open_bytes(data: bytes, label: str) -> Image.Image:
    try:
        try:
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except ValueError:
            if not data.startswith(PNG_SIGNATURE):
                raise
            # Pillow refuses oversized text chunks; the pixels may still be fine.
            image = Image.open(io.BytesIO(png_without_text(data)), formats=("PNG",))
    except Image.DecompressionBombError as exc:
        raise UserError(f"{label} has too many pixels to be processed safely") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on bad input
        raise UserError(f"{label} is not a readable image") from exc
    return image


def open_image(source: object, *, load: bool = True, max_bytes: int = MAX_FILE_BYTES,
               max_pixels: int | None = None, label: str | None = None) -> Image.Image:
    """Open an upload (bytes, path, file object or PIL image) as a PIL image.

    `max_bytes` and `max_pixels` are checked before any pixel is decoded (the size comes from
    the header), so an oversized or bomb-like upload costs no memory. With `load` the pixels
    are decoded now, so a truncated or corrupt file fails here with a UserError instead of
    later inside the pipeline.
    """
    label = label or describe_source(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        image = open_bytes(read_source_bytes(source, max_bytes), label)
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise UserError(upload_too_many_pixels(label, image.width, image.height, max_pixels))
    if load and not isinstance(source, Image.Image):
        try:
            image.load()
        except Image.DecompressionBombError as exc:
            raise UserError(f"{label} has too many pixels to be processed safely") from exc
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{label} is not a readable image (the data is damaged)") from exc
    return image
