"""A1111's "extras" postprocessing for /sdapi/v1/extra-single-image and extra-batch-images.

- Resize: `resize_mode` 0 scales by `upscaling_resize`; 1 scales to `upscaling_resize_w` x
  `upscaling_resize_h`: by the larger of the two ratios, then (with `upscaling_crop`) cut to that
  size around the centre, as A1111 does.
- Upscalers: `upscaler_1` makes the picture ("None": no upscale at all, as in A1111); a second
  `upscaler_2` with `extras_upscaler_2_visibility` > 0 is blended over it at that weight.
- Face restoration: GFPGAN and CodeFormer are not here; a visibility above 0 is accepted and
  answered with a warning (the face detail pass of txt2img/img2img and the Extras tab is ours).

Every upscale goes through Service.upscale_image (the caller's turn on the GPU queue). Nothing is
saved (A1111's API does not save extras either); the result carries the source's infotext with
the "Postprocess ..." keys added, and `html_info` says what was done.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from PIL import Image

from ..errors import UserError
from ..imaging.images import to_rgb
from ..metadata.image_meta import read_infotext
from ..models.upscalers import is_latent_upscaler, list_upscalers
from ..validate import check_pixel_limit, number
from .extras import MAX_SCALE, merge_infotext

FACE_RESTORE_NOTE = ("face restoration ({}) is not available here: GFPGAN and CodeFormer are not installed; "
                     "use face_detail in txt2img/img2img or the Extras tab's face detail pass")


@dataclass
class Postprocessed:
    image: Image.Image
    infotext: str
    notes: list[str] = field(default_factory=list)


def _upscaler(service, name, key: str) -> str | None:
    if name in (None, "", "None", "none"):
        return None
    names = list_upscalers(service.settings.models_dir, include_latent=False)
    if not isinstance(name, str) or name not in names:
        raise UserError(f"{key}: no upscaler called {str(name)[:80]!r}; choose one of {', '.join(names)} "
                        "(see /sdapi/v1/upscalers)", field=key)
    if is_latent_upscaler(name):
        raise UserError(f"{key}: {name} works inside hires fix only", field=key)
    return name


def check_options(service, opts: dict) -> dict:
    """The postprocessing fields, read and bounded once for a request (all images share them)."""
    most = service.settings.limits.max_upload_pixels
    mode = int(number(opts.get("resize_mode", 0), "resize_mode", "resize_mode", 0, 1, integer=True))
    return {
        "mode": mode,
        "scale": number(opts.get("upscaling_resize", 2), "upscaling_resize", "upscaling_resize", 0.01, MAX_SCALE),
        "width": int(number(opts.get("upscaling_resize_w", 512), "upscaling_resize_w", "upscaling_resize_w", 1,
                            most, integer=True)),
        "height": int(number(opts.get("upscaling_resize_h", 512), "upscaling_resize_h", "upscaling_resize_h", 1,
                             most, integer=True)),
        "crop": bool(opts.get("upscaling_crop", True)),
        "up1": _upscaler(service, opts.get("upscaler_1"), "upscaler_1"),
        "up2": _upscaler(service, opts.get("upscaler_2"), "upscaler_2"),
        "vis2": number(opts.get("extras_upscaler_2_visibility", 0), "extras_upscaler_2_visibility",
                       "extras_upscaler_2_visibility", 0, 1),
        "faces": [n for n, k in (("GFPGAN", "gfpgan_visibility"), ("CodeFormer", "codeformer_visibility"))
                  if number(opts.get(k, 0) or 0, k, k, 0, 1) > 0],
    }


def postprocess(service, image: Image.Image, o: dict, owner=None) -> Postprocessed:
    """One picture through the checked options `o` (check_options)."""
    source_info, _ = read_infotext(image)
    img = to_rgb(image)
    notes = [FACE_RESTORE_NOTE.format(", ".join(o["faces"]))] if o["faces"] else []
    params: dict = {}
    if o["up1"] is not None:
        w, h = img.size
        by = max(o["width"] / w, o["height"] / h) if o["mode"] == 1 else o["scale"]
        size = (max(1, round(w * by)), max(1, round(h * by)))
        check_pixel_limit(*size, service.settings.limits.max_upload_pixels, "upscaled image")
        out = service.upscale_image(img, o["up1"], size, owner)
        if o["up2"] is not None and o["vis2"] > 0:
            second = service.upscale_image(img, o["up2"], size, owner)
            out = Image.blend(out, second.resize(out.size), o["vis2"])
            params["Postprocess upscaler 2"] = o["up2"]
        if o["mode"] == 1 and o["crop"]:
            left, top = (out.width - o["width"]) // 2, (out.height - o["height"]) // 2
            out = out.crop((left, top, left + o["width"], top + o["height"]))
        params = {"Postprocess upscale by": None if o["mode"] == 1 else o["scale"],
                  "Postprocess upscale to": f"{o['width']}x{o['height']}" if o["mode"] == 1 else None,
                  "Postprocess upscaler": o["up1"], **params}
        img = out
    return Postprocessed(img, merge_infotext(source_info, params) if params or source_info else "", notes)


def html_info(results: list[Postprocessed]) -> str:
    """What A1111 shows under an extras result: the infotext and any notes, as HTML."""
    first = results[0] if results else None
    lines = [first.infotext] if first and first.infotext else []
    notes = [] if first is None else first.notes
    return "".join(f"<p>{html.escape(x)}</p>" for x in lines + notes)
