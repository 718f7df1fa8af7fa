"""What differs between txt2img, img2img and inpaint, kept out of the engine's one path:
input preparation, which diffusers pipeline class runs it, the paste-back of an inpainted
region, and the infotext keys each task adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps

from ..errors import UserError
from ..imaging.images import to_mask, to_rgb
from ..imaging.masks import blur_mask, expand_canvas, mask_bbox, paste_crop
from ..request import MASKED_CONTENT, GenerationRequest

_CLASSES = {
    # (pipeline kind, sdxl) -> diffusers pipeline class name
    ("txt2img", False): "StableDiffusionPipeline",
    ("txt2img", True): "StableDiffusionXLPipeline",
    ("img2img", False): "StableDiffusionImg2ImgPipeline",
    ("img2img", True): "StableDiffusionXLImg2ImgPipeline",
    ("inpaint", False): "StableDiffusionInpaintPipeline",
    ("inpaint", True): "StableDiffusionXLInpaintPipeline",
}
INPAINT_AREAS = ("Whole picture", "Only masked")


@dataclass
class Prepared:
    task: str
    image: Image.Image | None = None       # what the pipeline sees (at the model's size)
    mask: Image.Image | None = None        # 'L', blurred, at the pipeline's size
    original: Image.Image | None = None    # inpaint: the input picture the result is pasted into
    paste_mask: Image.Image | None = None  # inpaint: 'L' blurred mask at the original's size
    region: tuple[int, int, int, int] | None = None  # inpaint: part of the original the model saw
    model_box: tuple[int, int, int, int] | None = None  # ...and where it sits in the model's image
    width: int = 512
    height: int = 512

    @property
    def kind(self) -> str:
        """The pipeline kind that runs it: a 9-channel inpainting UNet always inpaints (with
        an all-white mask when the task has none)."""
        return "inpaint" if self.mask is not None else "txt2img" if self.image is None else "img2img"


def fit_boxes(src: tuple[int, int], width: int, height: int, mode: int) -> tuple[tuple, tuple]:
    """For a resize mode, which part of the source (box in source pixels) ends up where in
    the width x height result (box in result pixels). Inpainting uses it to map the result back."""
    sw, sh = src
    if mode == 0 or (sw, sh) == (width, height):
        return (0, 0, sw, sh), (0, 0, width, height)
    if mode == 1:  # cover, centre-crop: a centred box of the source with the target's aspect
        scale = max(width / sw, height / sh)
        cw, ch = min(sw, round(width / scale)), min(sh, round(height / scale))
        left, top = (sw - cw) // 2, (sh - ch) // 2
        return (left, top, left + cw, top + ch), (0, 0, width, height)
    # mode 2: fit inside, centred; the bands around it are filled from the edge pixels
    scale = min(width / sw, height / sh)
    fw, fh = max(1, round(sw * scale)), max(1, round(sh * scale))
    left, top = (width - fw) // 2, (height - fh) // 2
    return (0, 0, sw, sh), (left, top, left + fw, top + fh)


def resize_image(img: Image.Image, width: int, height: int, mode: int) -> Image.Image:
    """A1111 resize modes: 0 just resize, 1 crop and resize, 2 resize and fill."""
    if img.size == (width, height):
        return img
    (sx0, sy0, sx1, sy1), (x0, y0, x1, y1) = fit_boxes(img.size, width, height, mode)
    fitted = img.crop((sx0, sy0, sx1, sy1)).resize((x1 - x0, y1 - y0), Image.LANCZOS)
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return fitted
    # mode 2: stretch the edge rows/columns of the fitted picture into the empty bands
    out = Image.new(img.mode, (width, height))
    out.paste(fitted, (x0, y0))
    w, h = fitted.size
    if x0 > 0:
        out.paste(fitted.crop((0, 0, 1, h)).resize((x0, h)), (0, y0))
    if width - x1 > 0:
        out.paste(fitted.crop((w - 1, 0, w, h)).resize((width - x1, h)), (x1, y0))
    if y0 > 0:
        out.paste(fitted.crop((0, 0, w, 1)).resize((w, y0)), (x0, 0))
    if height - y1 > 0:
        out.paste(fitted.crop((0, h - 1, w, h)).resize((w, height - y1)), (x0, y1))
    return out


def _fill_masked(img: Image.Image, mask: Image.Image, mode: int, seed: int) -> Image.Image:
    """Masked content: what the masked area starts from before denoising."""
    name = MASKED_CONTENT[mode]
    if name == "original":
        return img
    if name == "fill":  # colours of the surroundings: repeated heavy blurs of the unmasked picture
        fill = img
        for r in (64, 32, 16, 8, 4, 2):
            fill = Image.composite(fill.filter(ImageFilter.GaussianBlur(r)), img, mask)
        return fill
    hard = mask.point(lambda v: 255 if v > 0 else 0)
    if name == "latent noise":
        rng = np.random.default_rng(seed)
        noise = Image.fromarray(rng.integers(0, 256, (img.height, img.width, 3), dtype=np.uint8))
        return Image.composite(noise, img, hard)
    grey = Image.new("RGB", img.size, (127, 127, 127))  # "latent nothing": a neutral start
    return Image.composite(grey, img, hard)


def inpaint_mask(req: GenerationRequest) -> Image.Image:
    """The request's mask as 'L' at the image's size, inverted for "inpaint not masked";
    refuses a mask that would repaint nothing."""
    mask = to_mask(req.mask)
    if req.inpainting_mask_invert:
        mask = ImageOps.invert(mask)
    if mask.getbbox() is None:
        what = ("covers the whole picture, so inverted it repaints nothing"
                if req.inpainting_mask_invert else "is empty")
        raise UserError(f"The mask {what}: paint over the part of the picture to change "
                        "(white in an uploaded mask = repaint).", field="mask")
    return mask


def prepare(req: GenerationRequest, model) -> Prepared:
    inpaint_unet = model.is_inpaint
    task = req.task
    if task == "txt2img" and not inpaint_unet:
        return Prepared(task, width=req.width, height=req.height)
    if task == "txt2img":  # an inpainting checkpoint draws from scratch with everything masked
        grey = Image.new("RGB", (req.width, req.height), (127, 127, 127))
        white = Image.new("L", (req.width, req.height), 255)
        return Prepared(task, grey, white, width=req.width, height=req.height)
    init = to_rgb(req.init_image)
    size = (req.width, req.height)
    if task == "img2img":
        image = resize_image(init, *size, req.resize_mode)
        if inpaint_unet:  # a 9-channel UNet needs a mask: all white = change everything
            white = Image.new("L", image.size, 255)
            return Prepared(task, image, white, *[None] * 4, *size)
        return Prepared(task, image, width=req.width, height=req.height)
    # inpaint: the model works on a width x height picture (all of the input, or the crop
    # around the mask); finish() maps its output back onto the input at the input's size.
    blurred = blur_mask(inpaint_mask(req), req.mask_blur)
    if req.inpaint_full_res:
        region = mask_bbox(blurred, req.inpaint_full_res_padding, size)
        crop = init.crop(region).resize(size, Image.LANCZOS)
        crop_mask = blurred.crop(region).resize(size, Image.LANCZOS)
        model_box = (0, 0, *size)
    else:
        region, model_box = fit_boxes(init.size, *size, req.resize_mode)
        crop = resize_image(init, *size, req.resize_mode)
        crop_mask = resize_image(blurred, *size, req.resize_mode)
    start = _fill_masked(crop, crop_mask, req.inpainting_fill, req.seed)
    return Prepared(task, start, crop_mask, init, blurred, region, model_box, *size)


def outpaint(image: Image.Image, mask: Image.Image | None, left: int = 0, right: int = 0, top: int = 0,
             bottom: int = 0) -> tuple[Image.Image, Image.Image | None]:
    """Extend the canvas for outpainting: the new area is masked (plus any mask drawn on the
    original, moved along) and starts as the repeated edge pixels. No sides: unchanged."""
    if not any((left, right, top, bottom)):
        return image, mask
    big, new_area = expand_canvas(to_rgb(image), left=left, right=right, top=top, bottom=bottom, fill="edge")
    if mask is not None:
        moved = Image.new("L", big.size, 0)
        moved.paste(to_mask(mask), (left, top))
        new_area = ImageChops.lighter(new_area, moved)
    return big, new_area


def outpaint_size(canvas: tuple[int, int], width: int, height: int, limits) -> tuple[int, int]:
    """The model's working size for an extended canvas: about width x height pixels, in the
    canvas's shape (so "Just resize" does not squash the picture), multiples of 8."""
    cw, ch = canvas
    area = width * height
    w = math.sqrt(area * cw / ch)
    h = area / w
    w = int(min(limits.max_width, max(64, round(w / 8) * 8)))
    h = int(min(limits.max_height, max(64, round(h / 8) * 8)))
    while w * h > limits.max_pixels:
        w, h = max(64, w - 8), max(64, h - 8)
    return w, h


def pipeline_class(kind: str, sdxl: bool) -> str:
    return _CLASSES[(kind, sdxl)]


def strength(req: GenerationRequest, prepared: Prepared) -> float:
    """How much of the starting picture is repainted: all of it when drawing from scratch."""
    return 1.0 if prepared.task == "txt2img" else req.denoising_strength


def skip_denoise(req: GenerationRequest) -> bool:
    """Denoising strength 0 (or too few steps left by it) returns the input unchanged."""
    return req.task != "txt2img" and int(req.steps * req.denoising_strength) < 1


def finish(img: Image.Image, prepared: Prepared) -> Image.Image:
    """Map an inpainted result back onto the input, at the input's size: pixels where the
    blurred mask is 0 are exactly the input's; in between the mask blends."""
    if prepared.task != "inpaint":
        return img
    patch = img.crop(prepared.model_box) if prepared.model_box != (0, 0, *img.size) else img
    return paste_crop(prepared.original, patch, prepared.region, prepared.paste_mask)


def infotext_params(req: GenerationRequest) -> dict:
    if req.task == "txt2img":
        return {}
    params = {"Denoising strength": req.denoising_strength}
    if req.task == "inpaint":
        params.update({
            "Mask blur": req.mask_blur,
            "Inpaint area": INPAINT_AREAS[int(req.inpaint_full_res)],
            "Masked area padding": req.inpaint_full_res_padding if req.inpaint_full_res else None,
            "Masked content": MASKED_CONTENT[req.inpainting_fill],
            "Mask preset": req.mask_preset or None,
        })
        if req.inpainting_mask_invert:
            params["Mask mode"] = "Inpaint not masked"
    return params
