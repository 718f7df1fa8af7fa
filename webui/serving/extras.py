"""The Extras tab's work on any image: upscale it, or run the face detail pass on it.

Results go to outputs/extras-images/YYYY-MM-DD/NNNNN.png. The saved infotext is the source
image's own (when it had one) with keys saying what was done appended -- A1111's
"Postprocess upscale by/to" and "Postprocess upscaler", our "Face detail ..." keys -- so a
picture's history is not lost. Without a source infotext, an upscale records only its keys
and a face pass records its full generation parameters.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import UserError
from ..metadata.image_meta import read_infotext
from ..imaging.images import to_rgb
from ..metadata.infotext_syntax import build_infotext, parse_infotext
from .outputs import save_numbered
from ..models.upscaler_base import scaled_size
from ..models.upscalers import is_latent_upscaler
from ..validate import check_pixel_limit, number

log = logging.getLogger(__name__)

EXTRAS_SUBDIR = "extras-images"
MAX_SCALE = 8  # the Extras slider's largest factor


@dataclass
class ExtrasResult:
    image: Image.Image
    infotext: str
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)


def target_size(size: tuple[int, int], scale: float = 2.0, width: int = 0, height: int = 0) -> tuple[int, int]:
    """By a factor, or to width x height (one of them 0 = keep the aspect ratio)."""
    w, h = size
    if width and height:
        return int(width), int(height)
    if width:
        return int(width), max(1, round(int(width) * h / w))
    if height:
        return max(1, round(int(height) * w / h)), int(height)
    if not scale or scale <= 0:
        raise UserError(f"upscale factor must be greater than 0, got {scale}", field="upscaling_resize")
    return scaled_size(size, scale)


def merge_infotext(source: str | None, params: dict, fallback: str = "") -> str:
    """The source image's infotext with ``params`` added (or ``fallback`` + params without one)."""
    base = source or fallback
    parsed = parse_infotext(base) if base else {}
    prompt = parsed.pop("Prompt", "")
    negative = parsed.pop("Negative prompt", "")
    return build_infotext(prompt, negative, {**parsed, **params})


def save(image: Image.Image, infotext: str, outputs_dir: Path, warnings: list[str]) -> Path | None:
    folder = Path(outputs_dir) / EXTRAS_SUBDIR / _dt.date.today().isoformat()
    try:
        # Never over an existing file; numbers go on past 99999 (outputs.save_numbered).
        return save_numbered(folder, lambda n: f"{n:05d}.png", image, infotext)
    except OSError as e:
        log.warning("could not save to %s: %s", folder, e)
        warnings.append(f"the image was not saved to {folder} ({e.strerror or e}); download it from the page")
        return None


def _source(image: Image.Image | None) -> tuple[Image.Image, str | None]:
    if image is None:
        raise UserError("upload an image first", field="image")
    info, _ = read_infotext(image)
    return to_rgb(image), info


def upscale(service, image: Image.Image | None, upscaler: str, scale: float = 2.0, width: int = 0,
            height: int = 0, save_image: bool = True, owner: str | None = None) -> ExtrasResult:
    """Upscale an uploaded image by ``scale`` or to ``width`` x ``height``."""
    if is_latent_upscaler(upscaler):
        raise UserError(f"{upscaler} works on latents inside hires fix only; choose Lanczos or an ESRGAN model",
                        field="upscaler_1")
    img, source_info = _source(image)
    most = service.settings.limits.max_upload_pixels  # the result's pixel limit bounds each side too
    scale = 0 if scale in (None, "") else number(scale, "upscaling_resize", "upscaling_resize", 0, MAX_SCALE)
    width = number(width or 0, "upscaling_resize_w", "upscaling_resize_w", 0, most, integer=True)
    height = number(height or 0, "upscaling_resize_h", "upscaling_resize_h", 0, most, integer=True)
    size = target_size(img.size, scale, width, height)
    check_pixel_limit(*size, most, "upscaled image")
    out = service.upscale_image(img, upscaler, size, owner)
    by_size = bool(width or height)
    params = {
        "Postprocess upscale by": None if by_size else scale,
        "Postprocess upscale to": f"{size[0]}x{size[1]}" if by_size else None,
        "Postprocess upscaler": upscaler,
    }
    result = ExtrasResult(out, merge_infotext(source_info, params))
    if save_image:
        result.path = save(out, result.infotext, service.settings.outputs_dir, result.warnings)
    return result


def face_detail(service, image: Image.Image | None, fields: dict, owner: str | None = None,
                save_image: bool = True) -> ExtrasResult:
    """The face detail pass on an uploaded image; ``fields`` are request fields (prompt,
    face_detail_* ...). No face found: the image comes back unchanged, with a warning."""
    img, source_info = _source(image)
    req = service.request({**fields, "init_image": img, "face_detail": True}, "img2img")
    r = service.detail_faces(req, owner)
    face_params = {k: v for k, v in parse_infotext(r.infotexts[0]).items() if k.startswith("Face detail")}
    info = merge_infotext(source_info, face_params) if source_info else r.infotexts[0]
    result = ExtrasResult(r.images[0], info, warnings=list(r.warnings))
    if save_image:
        result.path = save(result.image, info, service.settings.outputs_dir, result.warnings)
    return result
