"""Generation metadata inside image files: write it, read it back from any common source.

Writing follows A1111: PNG gets a text chunk named `parameters` (iTXt when the text is not
Latin-1, so Chinese or emoji prompts survive); JPEG and WebP get the EXIF UserComment tag
(0x9286 in the Exif IFD) with the "UNICODE\\0" header and UTF-16 big-endian text.

Reading accepts A1111/Forge/SD.Next files (PNG `parameters`, EXIF UserComment), files from
tools that use a `Comment`/`Description` text or the EXIF ImageDescription, ComfyUI PNGs
(`prompt` / `workflow` JSON), InvokeAI (`invokeai_metadata`) and NovelAI PNGs, deriving an
A1111-style infotext where the file carries enough to do so (the other tools' formats are
converted in `foreign_formats`, PNG text chunks read in `png_chunks`).

Everything read here may come from an upload: it opens through `uploads`, so bad bytes raise
`UserError`, never anything else, and Pillow's decompression-bomb limit stays on.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

from PIL import Image, PngImagePlugin

from webui.atomic_files import write_atomic
from webui.errors import UserError
from webui.metadata.foreign_formats import comfyui_to_infotext, invokeai_to_infotext, novelai_to_infotext
from webui.metadata.infotext_syntax import MIN_PARAM_PAIRS, parse_params_line
from webui.metadata.png_chunks import png_text
from webui.metadata.uploads import describe_source, open_bytes, read_source_bytes

PNG_COMPRESS_LEVEL = 4  # measured: ~same size as Pillow's default 6, a little faster
JPEG_QUALITY = 90
WEBP_QUALITY = 90

EXIF_IFD = 0x8769
TAG_USER_COMMENT = 0x9286
TAG_IMAGE_DESCRIPTION = 0x010E
TAG_XP_COMMENT = 0x9C9C

_UC_UNICODE = b"UNICODE\x00"
_UC_ASCII = b"ASCII\x00\x00\x00"
_UC_JIS = b"JIS\x00\x00\x00\x00\x00"
_UC_UNDEFINED = b"\x00" * 8

# Image.info entries that are not text metadata.
_NON_TEXT_INFO = frozenset(
    {
        "exif", "icc_profile", "dpi", "jfif", "jfif_version", "jfif_unit", "jfif_density",
        "progressive", "progression", "photoshop", "adobe", "adobe_transform", "transparency",
        "gamma", "srgb", "chromaticity", "loop", "duration", "background", "timestamp",
        "xmp", "mp", "aspect", "compression", "interlace", "lossless", "blend", "disposal",
        "version", "extension", "mpoffset", "resolution", "unit",
    }
)
_PARAMETERS_KEYS = ("parameters", "Parameters")
_COMMENT_KEYS = ("Comment", "comment", "Description", "description", "UserComment")

_FORMAT_BY_SUFFIX = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


# ---------------------------------------------------------------------------------------------
# Writing


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _png_info(infotext: str | None, extra_text: Mapping[str, str] | None) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    texts: dict[str, str] = {}
    if infotext:
        texts["parameters"] = infotext
    for key, value in (extra_text or {}).items():
        if value is not None:
            texts[str(key)] = str(value)
    for key, value in texts.items():
        if _latin1(value):
            info.add_text(key, value)
        else:
            info.add_itxt(key, value, lang="", tkey="", zip=False)
    return info


def _png_ready(image: Image.Image) -> Image.Image:
    if image.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        return image
    return image.convert("RGBA" if "A" in image.getbands() else "RGB")


def png_bytes_with_infotext(
    image: Image.Image,
    infotext: str | None,
    *,
    extra_text: Mapping[str, str] | None = None,
    compress_level: int = PNG_COMPRESS_LEVEL,
) -> bytes:
    """The image as PNG bytes carrying `infotext` in a `parameters` text chunk.

    Latin-1 text goes into tEXt (what A1111 writes); anything else into an uncompressed
    iTXt chunk (UTF-8). `extra_text` adds more text chunks. An empty infotext writes none.
    """
    buffer = io.BytesIO()
    _png_ready(image).save(
        buffer, format="PNG", pnginfo=_png_info(infotext, extra_text), compress_level=compress_level
    )
    return buffer.getvalue()


def encode_user_comment(text: str) -> bytes:
    """EXIF UserComment payload as A1111 writes it: "UNICODE\\0" + UTF-16 big-endian."""
    return _UC_UNICODE + text.encode("utf-16-be")


def exif_bytes_with_infotext(infotext: str) -> bytes:
    """EXIF block (with its "Exif\\0\\0" header) holding `infotext` as UserComment.

    Pass it as `exif=` to Pillow's JPEG or WebP save.
    """
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[TAG_USER_COMMENT] = encode_user_comment(infotext or "")
    return exif.tobytes()


def image_bytes_with_infotext(
    image: Image.Image,
    infotext: str | None,
    fmt: str = "PNG",
    *,
    quality: int | None = None,
    compress_level: int = PNG_COMPRESS_LEVEL,
    lossless: bool = False,
) -> bytes:
    """Encode as PNG, JPEG or WebP (`lossless`: lossless WebP) with the infotext where A1111
    puts it for that format."""
    fmt = fmt.upper().lstrip(".")
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt == "PNG":
        return png_bytes_with_infotext(image, infotext, compress_level=compress_level)
    if fmt not in ("JPEG", "WEBP"):
        raise ValueError(f"unsupported image format {fmt!r}")
    kwargs: dict[str, object] = {}
    if infotext:
        kwargs["exif"] = exif_bytes_with_infotext(infotext)
    if fmt == "JPEG":
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        kwargs["quality"] = quality or JPEG_QUALITY
    else:
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        kwargs["quality"] = quality or WEBP_QUALITY
        if lossless:
            kwargs["lossless"] = True
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def save_png(
    image: Image.Image,
    path: str | os.PathLike[str],
    infotext: str | None,
    *,
    compress_level: int = PNG_COMPRESS_LEVEL,
) -> Path:
    """Atomically save `image` as a PNG with the `parameters` chunk; returns the path."""
    return write_atomic(path, png_bytes_with_infotext(image, infotext, compress_level=compress_level))


def save_image(
    image: Image.Image,
    path: str | os.PathLike[str],
    infotext: str | None,
    *,
    quality: int | None = None,
) -> Path:
    """Atomically save as PNG, JPEG or WebP (chosen by the file suffix) with metadata."""
    suffix = Path(path).suffix.lower()
    fmt = _FORMAT_BY_SUFFIX.get(suffix)
    if fmt is None:
        raise ValueError(f"cannot save images as {suffix or 'files without a suffix'}")
    return write_atomic(path, image_bytes_with_infotext(image, infotext, fmt, quality=quality))




# ---------------------------------------------------------------------------------------------
# Reading metadata


def decode_user_comment(data: bytes | str | None) -> str | None:
    """Text of an EXIF UserComment: 8-byte charset header, then the text.

    "UNICODE\\0" text is UTF-16; A1111 writes big-endian, some tools little-endian: a byte
    order mark decides, else where the zero bytes of ASCII characters sit. "ASCII" text is
    read as UTF-8 (some writers put UTF-8 behind that header); a missing header as UTF-8.
    """
    if data is None:
        return None
    if isinstance(data, str):
        return data.rstrip("\x00")
    data = bytes(data)
    header, body = data[:8], data[8:]
    if header == _UC_UNICODE:
        if body[:2] == b"\xfe\xff":
            text = body[2:].decode("utf-16-be", errors="replace")
        elif body[:2] == b"\xff\xfe":
            text = body[2:].decode("utf-16-le", errors="replace")
        else:
            even_zeros = body[0::2].count(0)
            odd_zeros = body[1::2].count(0)
            encoding = "utf-16-le" if odd_zeros > even_zeros else "utf-16-be"
            text = body[: len(body) // 2 * 2].decode(encoding, errors="replace")
    elif header == _UC_ASCII:
        text = body.decode("utf-8", errors="replace")
    elif header == _UC_JIS:
        text = body.decode("shift_jis", errors="replace")
    elif header == _UC_UNDEFINED:
        text = body.decode("utf-8", errors="replace")
    else:
        text = data.decode("utf-8", errors="replace")
    return text.rstrip("\x00").strip() or None


def _looks_like_infotext(text: str | None) -> bool:
    if not text:
        return False
    last = text.strip().replace("\r\n", "\n").split("\n")[-1]
    return len(parse_params_line(last)) >= MIN_PARAM_PAIRS
def _text_items(image: Image.Image, data: bytes | None) -> dict[str, str]:
    info: dict[str, object] = dict(image.info or {})
    if data is not None and image.format == "PNG":
        info.update(png_text(data, skip=set(info)))
    items: dict[str, str] = {}
    for key, value in info.items():
        if not isinstance(key, str) or key in _NON_TEXT_INFO:
            continue
        if isinstance(value, str):
            items[key] = str(value)
        elif isinstance(value, (bytes, bytearray)) and key in ("comment", "Comment"):
            items[key] = bytes(value).decode("utf-8", errors="replace").rstrip("\x00")
    return items


def _exif_texts(image: Image.Image) -> tuple[str | None, dict[str, str]]:
    """(UserComment text, other EXIF text items worth showing)."""
    try:
        exif = image.getexif()
    except Exception:  # noqa: BLE001 - broken EXIF must not hide the rest
        return None, {}
    found: dict[str, str] = {}
    comment = None
    try:
        raw = exif.get_ifd(EXIF_IFD).get(TAG_USER_COMMENT)
        comment = decode_user_comment(raw) if raw is not None else None
    except Exception:  # noqa: BLE001
        comment = None
    try:
        description = exif.get(TAG_IMAGE_DESCRIPTION)
        if isinstance(description, bytes):
            description = description.decode("utf-8", errors="replace")
        if isinstance(description, str) and description.strip("\x00 "):
            found["ImageDescription"] = description.rstrip("\x00")
        xp = exif.get(TAG_XP_COMMENT)
        if isinstance(xp, (bytes, tuple)):
            xp_text = bytes(xp).decode("utf-16-le", errors="replace").rstrip("\x00")
            if xp_text.strip():
                found["XPComment"] = xp_text
    except Exception:  # noqa: BLE001
        pass
    return comment, found


def read_infotext(source: object) -> tuple[str | None, dict[str, str]]:
    """(A1111 infotext or None, other text items) of an image.

    `source` may be a PIL image, bytes, a path or a binary file object. The infotext comes
    from, in order: the PNG `parameters` chunk; the EXIF UserComment; a `Comment`,
    `Description` or EXIF ImageDescription text that looks like an infotext; NovelAI,
    InvokeAI or ComfyUI metadata converted to an infotext. `items` holds every other text
    entry (ComfyUI's raw `prompt` / `workflow` JSON included), as the png-info API returns.

    Raises UserError when the source is not a readable image.
    """
    data: bytes | None = None
    if isinstance(source, Image.Image):
        image = source
    else:
        data = read_source_bytes(source)
        image = open_bytes(data, describe_source(source))
    try:
        return _read_metadata(image, data)
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - metadata is optional; never fail the caller on it
        return None, {}


def _read_metadata(image: Image.Image, data: bytes | None) -> tuple[str | None, dict[str, str]]:
    items = _text_items(image, data)
    comment, exif_items = _exif_texts(image)
    for key, value in exif_items.items():
        items.setdefault(key, value)

    for key in _PARAMETERS_KEYS:
        if key in items and items[key].strip():
            return items.pop(key), items

    if comment:
        return comment, items

    if items.get("Software") == "NovelAI":
        converted = novelai_to_infotext(items, image.size)
        if converted:
            return converted, items

    for key in (*_COMMENT_KEYS, "ImageDescription"):
        if _looks_like_infotext(items.get(key)):
            return items.pop(key), items

    if "invokeai_metadata" in items:
        converted = invokeai_to_infotext(items["invokeai_metadata"])
        if converted:
            return converted, items

    if "prompt" in items:
        converted = comfyui_to_infotext(items["prompt"], image.size)
        if converted:
            return converted, items

    return None, items


