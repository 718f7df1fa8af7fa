"""Generation metadata inside image files: write it, read it back from any common source.

Writing follows A1111: PNG gets a text chunk named `parameters` (iTXt when the text is not
Latin-1, so Chinese or emoji prompts survive); JPEG and WebP get the EXIF UserComment tag
(0x9286 in the Exif IFD) with the "UNICODE\\0" header and UTF-16 big-endian text.

Reading accepts A1111/Forge/SD.Next files (PNG `parameters`, EXIF UserComment), files from
tools that use a `Comment`/`Description` text or the EXIF ImageDescription, ComfyUI PNGs
(`prompt` / `workflow` JSON), InvokeAI (`invokeai_metadata`) and NovelAI PNGs, deriving an
A1111-style infotext where the file carries enough to do so.

Everything read here may come from an upload: bad bytes raise `UserError`, never anything
else, and Pillow's decompression-bomb limit stays on.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from collections.abc import Mapping
from pathlib import Path

from PIL import Image, PngImagePlugin

from webui.atomic_files import write_atomic
from webui.errors import UserError
from webui.metadata.infotext import MIN_PARAM_PAIRS, build_infotext, parse_params_line
from webui.samplers_names import a1111_sampler_name, a1111_schedule_label, split_legacy_sampler

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

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_MAX_TEXT_CHUNK = 16 * 1024 * 1024  # decompressed size cap per PNG text chunk

# Formats accepted from uploads; anything else is refused before a decoder runs.
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG covers MPO

MAX_FILE_BYTES = 200 * 1024 * 1024

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
) -> bytes:
    """Encode as PNG, JPEG or WebP with the infotext where A1111 puts it for that format."""
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
# Opening untrusted files


def _describe(source: object) -> str:
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


def _read_source_bytes(source: object, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    label = _describe(source)
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


def _open_bytes(data: bytes, label: str) -> Image.Image:
    try:
        try:
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except ValueError:
            if not data.startswith(_PNG_SIGNATURE):
                raise
            # Pillow refuses oversized text chunks; the pixels may still be fine.
            image = Image.open(io.BytesIO(_png_without_text(data)), formats=("PNG",))
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
    label = label or _describe(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        image = _open_bytes(_read_source_bytes(source, max_bytes), label)
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


def _inflate(data: bytes) -> bytes | None:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, _MAX_TEXT_CHUNK)
    except zlib.error:
        return None
    return None if inflater.unconsumed_tail else out


def _png_chunks(data: bytes):
    """(type, body, start, end) of each whole chunk of a PNG byte string, up to IEND."""
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            return
        kind = data[pos + 4 : pos + 8]
        yield kind, data[pos + 8 : pos + 8 + length], pos, end
        if kind == b"IEND":
            return
        pos = end


def _png_without_text(data: bytes) -> bytes:
    """The PNG with its text chunks removed (for files whose text Pillow refuses)."""
    parts = [data[: len(_PNG_SIGNATURE)]]
    last = len(_PNG_SIGNATURE)
    for kind, _body, start, end in _png_chunks(data):
        if kind in _PNG_TEXT_CHUNKS:
            parts.append(data[last:start])
            last = end
    parts.append(data[last:])
    return b"".join(parts)


def _png_text(data: bytes, skip: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """Every text chunk of a PNG whose key is not in `skip`, read straight from the bytes.

    Pillow reports the text placed before the pixel data when it opens a file; text placed
    after it (some tools append it) would need the whole image decoded, and Pillow refuses
    compressed text over 1 MB (large ComfyUI workflows): this reads both, with each
    chunk's decompressed size capped at 16 MB.
    """
    found: dict[str, str] = {}
    if not data.startswith(_PNG_SIGNATURE):
        return found
    for kind, body, _start, _end in _png_chunks(data):
        if kind not in _PNG_TEXT_CHUNKS:
            continue
        key, _, rest = body.partition(b"\x00")
        name = key.decode("latin-1")
        if not name or name in skip or name in found:
            continue
        text: str | None = None
        if kind == b"tEXt":
            text = rest.decode("latin-1")
        elif kind == b"zTXt" and rest[:1] == b"\x00":
            raw = _inflate(rest[1:])
            text = None if raw is None else raw.decode("latin-1")
        elif kind == b"iTXt" and len(rest) >= 2:
            compressed = rest[0] == 1
            _lang, _, rest = rest[2:].partition(b"\x00")
            _tkey, _, raw = rest.partition(b"\x00")
            raw = _inflate(raw) if compressed else raw
            text = None if raw is None else raw.decode("utf-8", errors="replace")
        if text is not None:
            found[name] = text
    return found


def _text_items(image: Image.Image, data: bytes | None) -> dict[str, str]:
    info: dict[str, object] = dict(image.info or {})
    if data is not None and image.format == "PNG":
        info.update(_png_text(data, skip=set(info)))
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
        data = _read_source_bytes(source)
        image = _open_bytes(data, _describe(source))
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
        converted = _novelai_to_infotext(items, image.size)
        if converted:
            return converted, items

    for key in (*_COMMENT_KEYS, "ImageDescription"):
        if _looks_like_infotext(items.get(key)):
            return items.pop(key), items

    if "invokeai_metadata" in items:
        converted = _invokeai_to_infotext(items["invokeai_metadata"])
        if converted:
            return converted, items

    if "prompt" in items:
        converted = comfyui_to_infotext(items["prompt"], image.size)
        if converted:
            return converted, items

    return None, items


# ---------------------------------------------------------------------------------------------
# Other tools' metadata -> infotext


def _format_weight(value: object) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "1"
    return str(int(number)) if number.is_integer() else f"{number:g}"


def _model_stem(name: object) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def _novelai_to_infotext(items: Mapping[str, str], size: tuple[int, int]) -> str | None:
    try:
        data = json.loads(items.get("Comment", ""))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    sampler = a1111_sampler_name(str(data.get("sampler", ""))) or data.get("sampler")
    params = {
        "Steps": data.get("steps"),
        "Sampler": sampler,
        "CFG scale": data.get("scale"),
        "Seed": data.get("seed"),
        "Size": size,
    }
    if data.get("strength") is not None and data.get("noise") is not None:
        params["Denoising strength"] = data.get("strength")
    prompt = items.get("Description") or str(data.get("prompt", ""))
    return build_infotext(prompt, str(data.get("uc", "") or ""), params)


_INVOKE_SAMPLERS = {"kdpm_2": "DPM2", "kdpm_2_a": "DPM2 a", "dpmpp_2s": "DPM++ 2S a", "ddpm": "DDPM"}


def _invokeai_to_infotext(raw: str) -> str | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or "positive_prompt" not in data:
        return None
    scheduler = str(data.get("scheduler") or "")
    schedule = None
    if scheduler.endswith("_k"):
        scheduler, schedule = scheduler[:-2], "Karras"
    sampler = _INVOKE_SAMPLERS.get(scheduler) or a1111_sampler_name(scheduler) or scheduler or None
    model = data.get("model")
    model_name = None
    if isinstance(model, dict):
        model_name = model.get("name") or model.get("model_name")
    elif isinstance(model, str):
        model_name = model
    size = None
    if isinstance(data.get("width"), int) and isinstance(data.get("height"), int):
        size = (data["width"], data["height"])
    params = {
        "Steps": data.get("steps"),
        "Sampler": sampler,
        "Schedule type": schedule or ("Automatic" if sampler else None),
        "CFG scale": data.get("cfg_scale"),
        "Seed": data.get("seed"),
        "Size": size,
        "Model": _model_stem(model_name),
        "Denoising strength": data.get("strength"),
    }
    return build_infotext(
        str(data.get("positive_prompt") or ""), str(data.get("negative_prompt") or ""), params
    )


# ComfyUI: the `prompt` chunk is the executed graph {node id: {class_type, inputs}}; an input
# is either a literal or a link [source node id, output index].

_COMFY_MAX_DEPTH = 24
_LATENT_INPUTS = ("latent_image", "samples", "latent", "latents", "pixels", "image")
_NO_FOLLOW = frozenset(
    {*_LATENT_INPUTS, "model", "clip", "vae", "positive", "negative", "conditioning", "mask"}
)


def _comfy_node(graph: Mapping[str, object], ref: object) -> dict | None:
    if isinstance(ref, list) and len(ref) == 2 and isinstance(ref[0], (str, int)):
        node = graph.get(str(ref[0]))
        if isinstance(node, dict) and isinstance(node.get("inputs"), dict):
            return node
    return None


def _comfy_ref_id(ref: object) -> str | None:
    if isinstance(ref, list) and len(ref) == 2 and isinstance(ref[0], (str, int)):
        return str(ref[0])
    return None


def _comfy_literal(graph: Mapping[str, object], value: object, kinds: tuple[type, ...], depth: int = 0):
    """A literal of one of `kinds`, following links into primitive-like nodes."""
    if isinstance(value, bool):
        return None
    if isinstance(value, kinds):
        return value
    node = _comfy_node(graph, value)
    if node is None or depth > _COMFY_MAX_DEPTH:
        return None
    inputs = node["inputs"]
    for key in ("value", "seed", "noise_seed", "int", "float", "number", "text", "string", "Text"):
        if key in inputs:
            found = _comfy_literal(graph, inputs[key], kinds, depth + 1)
            if found is not None:
                return found
    for item in inputs.values():
        found = _comfy_literal(graph, item, kinds, depth + 1) if not isinstance(item, list) else None
        if found is not None:
            return found
    return None


def _comfy_param(graph, node: dict, keys: tuple[str, ...], kinds: tuple[type, ...], depth: int = 2):
    """Value of the first of `keys` in `node`'s inputs or in nodes linked to it (e.g. the
    guider / sigmas / noise nodes of SamplerCustomAdvanced), not crossing latents or models."""
    inputs = node["inputs"]
    for key in keys:
        if key in inputs:
            found = _comfy_literal(graph, inputs[key], kinds)
            if found is not None:
                return found
    if depth > 0:
        for key, value in inputs.items():
            if key in _NO_FOLLOW:
                continue
            sub = _comfy_node(graph, value)
            if sub is not None:
                found = _comfy_param(graph, sub, keys, kinds, depth - 1)
                if found is not None:
                    return found
    return None


def _comfy_link(graph, node: dict, keys: tuple[str, ...], depth: int = 2):
    """The link value of the first of `keys` in `node` or in linked non-latent nodes."""
    inputs = node["inputs"]
    for key in keys:
        if key in inputs and isinstance(inputs[key], list):
            return inputs[key]
    if depth > 0:
        for key, value in inputs.items():
            if key in _NO_FOLLOW:
                continue
            sub = _comfy_node(graph, value)
            if sub is not None:
                found = _comfy_link(graph, sub, keys, depth - 1)
                if found is not None:
                    return found
    return None


def _comfy_text(graph, ref: object, role: str, depth: int = 0) -> str | None:
    """Prompt text behind a conditioning link (CLIPTextEncode and pass-through nodes)."""
    node = _comfy_node(graph, ref)
    if node is None or depth > _COMFY_MAX_DEPTH:
        return None
    inputs = node["inputs"]
    for key in ("text", "text_g", "text_l", "prompt", "string", "Text"):
        if key in inputs:
            text = _comfy_literal(graph, inputs[key], (str,))
            if text is not None:
                return text
    for key in (role, "conditioning", "conditioning_to", "conditioning_1", "conditioning_from",
                "conditioning_2", "base_" + role):
        if key in inputs:
            text = _comfy_text(graph, inputs[key], role, depth + 1)
            if text is not None:
                return text
    return None


def _comfy_model(graph, ref: object) -> tuple[str | None, list[tuple[str, object]]]:
    """(checkpoint name, [(lora name, weight), ...]) behind a model link."""
    loras: list[tuple[str, object]] = []
    node = _comfy_node(graph, ref)
    for _ in range(_COMFY_MAX_DEPTH):
        if node is None:
            break
        inputs = node["inputs"]
        for key in ("ckpt_name", "unet_name", "model_name", "base_ckpt_name"):
            name = _comfy_literal(graph, inputs.get(key), (str,))
            if name:
                return name, loras
        lora = _comfy_literal(graph, inputs.get("lora_name"), (str,))
        if lora:
            weight = _comfy_literal(graph, inputs.get("strength_model", 1.0), (int, float))
            loras.append((lora, 1.0 if weight is None else weight))
        node = _comfy_node(graph, inputs.get("model"))
    return None, loras


def _comfy_latent_chain(graph, node: dict):
    """Walk a sampler's latent input: yields nodes until a sampler or a source is reached."""
    ref = next((node["inputs"][k] for k in _LATENT_INPUTS if k in node["inputs"]), None)
    for _ in range(_COMFY_MAX_DEPTH):
        current = _comfy_node(graph, ref)
        if current is None:
            return
        yield _comfy_ref_id(ref), current
        inputs = current["inputs"]
        ref = next((inputs[k] for k in _LATENT_INPUTS if isinstance(inputs.get(k), list)), None)


def _is_comfy_sampler(node: dict) -> bool:
    class_type = str(node.get("class_type", ""))
    return "KSampler" in class_type or class_type.startswith("SamplerCustom")


def _comfy_size(graph, node: dict) -> tuple[int, int] | None:
    width = _comfy_literal(graph, node["inputs"].get("width"), (int,))
    height = _comfy_literal(graph, node["inputs"].get("height"), (int,))
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    return None


def comfyui_to_infotext(prompt_graph: object, image_size: tuple[int, int] | None = None) -> str | None:
    """An A1111 infotext derived from a ComfyUI `prompt` graph (JSON text or dict), or None.

    Takes the first-pass sampler (the one fed by an empty latent): its positive / negative
    prompt texts, seed, steps, cfg, sampler and scheduler, the latent size, the checkpoint
    behind its model (LoRA loaders on the way become `<lora:name:weight>` in the prompt),
    and a second sampler fed by an upscaled copy of its output as the hires pass.
    """
    graph = prompt_graph
    if isinstance(graph, (str, bytes)):
        try:
            graph = json.loads(graph)
        except ValueError:
            return None
    if not isinstance(graph, dict):
        return None
    graph = {str(k): v for k, v in graph.items() if isinstance(v, dict)}
    samplers = [(nid, node) for nid, node in graph.items()
                if isinstance(node.get("inputs"), dict) and _is_comfy_sampler(node)]
    if not samplers:
        return None
    samplers.sort(key=lambda item: (0, int(item[0])) if item[0].isdigit() else (1, item[0]))
    sampler_ids = {nid for nid, _ in samplers}

    base_id, base = samplers[0]
    size = None
    for nid, node in samplers:
        chain = list(_comfy_latent_chain(graph, node))
        if any(cid in sampler_ids for cid, _ in chain):
            continue
        sizes = [_comfy_size(graph, n) for _, n in chain if "latent" in str(n.get("class_type", "")).lower()]
        sizes = [s for s in sizes if s]
        if sizes:
            base_id, base, size = nid, node, sizes[-1]
            break

    positive = _comfy_text(graph, _comfy_link(graph, base, ("positive", "conditioning")), "positive")
    negative_link = _comfy_link(graph, base, ("negative",))
    negative = _comfy_text(graph, negative_link, "negative") if negative_link else None

    sampler_raw = _comfy_param(graph, base, ("sampler_name", "sampler"), (str,))
    scheduler_raw = _comfy_param(graph, base, ("scheduler",), (str,))
    sampler = None
    schedule = None
    if sampler_raw:
        sampler, legacy = split_legacy_sampler(sampler_raw)
        sampler = a1111_sampler_name(sampler) or sampler_raw
        schedule = legacy if legacy != "Automatic" else None
    if scheduler_raw:
        schedule = a1111_schedule_label(scheduler_raw) or scheduler_raw

    checkpoint, loras = _comfy_model(graph, _comfy_link(graph, base, ("model",)))
    prompt = positive or ""
    for lora, weight in loras:
        tag = f"<lora:{_model_stem(lora)}:{_format_weight(weight)}>"
        prompt = f"{prompt}, {tag}" if prompt else tag

    params: dict[str, object] = {
        "Steps": _comfy_param(graph, base, ("steps",), (int,)),
        "Sampler": sampler,
        "Schedule type": schedule or ("Automatic" if sampler else None),
        "CFG scale": _comfy_param(graph, base, ("cfg", "guidance"), (int, float)),
        "Seed": _comfy_param(graph, base, ("seed", "noise_seed"), (int,)),
        "Size": size or image_size,
        "Model": _model_stem(checkpoint),
    }
    denoise = _comfy_param(graph, base, ("denoise",), (int, float))
    if isinstance(denoise, (int, float)) and denoise < 1:
        params["Denoising strength"] = denoise

    # A later sampler whose latent comes from the base sampler through an upscale: hires.
    for nid, node in samplers:
        if nid == base_id:
            continue
        chain = list(_comfy_latent_chain(graph, node))
        ids = [cid for cid, _ in chain]
        if base_id not in ids:
            continue
        hires: dict[str, object] = {}
        upscaler = None
        for _, step in chain[: ids.index(base_id)]:
            class_type = str(step.get("class_type", ""))
            scale = _comfy_literal(graph, step["inputs"].get("scale_by"), (int, float))
            if scale:
                hires["Hires upscale"] = scale
            elif "upscale" in class_type.lower() and _comfy_size(graph, step):
                hires["Hires resize"] = _comfy_size(graph, step)
            model_node = _comfy_node(graph, step["inputs"].get("upscale_model"))
            if model_node is not None:
                upscaler = _model_stem(_comfy_literal(graph, model_node["inputs"].get("model_name"), (str,)))
                hires["upscale model"] = True
            elif class_type.startswith("Latent") and upscaler is None and hires:
                upscaler = "Latent"
        if not hires:
            continue  # e.g. an SDXL refiner pass: same size, not a hires fix
        if hires.pop("upscale model", False) and size and image_size:
            # Model upscales (often followed by a rescale): the factor is what came out.
            hires.pop("Hires resize", None)
            hires["Hires upscale"] = round(image_size[0] / size[0], 3)
        hires["Hires steps"] = _comfy_param(graph, node, ("steps",), (int,))
        hires["Hires upscaler"] = upscaler
        hires_denoise = _comfy_param(graph, node, ("denoise",), (int, float))
        if hires_denoise is not None:
            params["Denoising strength"] = hires_denoise
        params.update(hires)
        break

    if not any(params.get(k) is not None for k in ("Steps", "Seed", "CFG scale")) and not prompt:
        return None
    return build_infotext(prompt, negative or "", params)
