"""What differs between txt2img, img2img and inpaint, kept out of the engine's one path:
input preparation, which diffusers pipeline class runs it, its call arguments, the paste-back
of an inpainted region, and the infotext keys each task adds.
"""

from __future__ import annotations

from dataclasses import dataclass

import diffusers
import numpy as np
from PIL import Image, ImageFilter

from .request import MASKED_CONTENT, GenerationRequest

_CLASSES = {
    # (task, sdxl, 9-channel inpainting UNet) -> diffusers pipeline class name
    ("txt2img", False, False): "StableDiffusionPipeline",
    ("txt2img", True, False): "StableDiffusionXLPipeline",
    ("img2img", False, False): "StableDiffusionImg2ImgPipeline",
    ("img2img", True, False): "StableDiffusionXLImg2ImgPipeline",
    ("inpaint", False, False): "StableDiffusionInpaintPipeline",
    ("inpaint", True, False): "StableDiffusionXLInpaintPipeline",
}
INPAINT_AREAS = ("Whole picture", "Only masked")


@dataclass
class Prepared:
    task: str
    cls_name: str
    image: Image.Image | None = None       # what the pipeline sees (at the model's size)
    mask: Image.Image | None = None        # 'L', blurred, at the pipeline's size
    original: Image.Image | None = None    # the picture the result is pasted into
    paste_mask: Image.Image | None = None  # 'L' blurred mask at the original's size
    region: tuple[int, int, int, int] | None = None  # only-masked crop box in the original
    width: int = 512
    height: int = 512


def resize_image(img: Image.Image, width: int, height: int, mode: int) -> Image.Image:
    """A1111 resize modes: 0 just resize, 1 crop and resize, 2 resize and fill."""
    if img.size == (width, height):
        return img
    if mode == 0:
        return img.resize((width, height), Image.LANCZOS)
    src_ratio, dst_ratio = img.width / img.height, width / height
    if mode == 1:  # cover, then centre-crop
        scale = max(width / img.width, height / img.height)
        w, h = max(width, round(img.width * scale)), max(height, round(img.height * scale))
        r = img.resize((w, h), Image.LANCZOS)
        left, top = (w - width) // 2, (h - height) // 2
        return r.crop((left, top, left + width, top + height))
    # mode 2: fit inside, then stretch the edge pixels into the empty bands
    scale = min(width / img.width, height / img.height)
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    r = img.resize((w, h), Image.LANCZOS)
    out = Image.new(img.mode, (width, height))
    left, top = (width - w) // 2, (height - h) // 2
    out.paste(r, (left, top))
    if src_ratio < dst_ratio:  # bands left and right
        if left > 0:
            out.paste(r.crop((0, 0, 1, h)).resize((left, h)), (0, top))
        if width - left - w > 0:
            out.paste(r.crop((w - 1, 0, w, h)).resize((width - left - w, h)), (left + w, top))
    elif src_ratio > dst_ratio:  # bands top and bottom
        if top > 0:
            out.paste(r.crop((0, 0, w, 1)).resize((w, top)), (left, 0))
        if height - top - h > 0:
            out.paste(r.crop((0, h - 1, w, h)).resize((w, height - top - h)), (left, top + h))
    return out


def _blur(mask: Image.Image, radius: int) -> Image.Image:
    return mask.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else mask


def masked_region(mask: Image.Image, padding: int, width: int, height: int) -> tuple[int, int, int, int]:
    """Box around the painted area plus padding, grown to the target aspect ratio and clamped
    to the image -- the part "only masked" inpainting works on at the model's resolution."""
    x0, y0, x1, y1 = mask.point(lambda v: 255 if v > 0 else 0).getbbox()
    W, H = mask.size
    x0, y0, x1, y1 = max(0, x0 - padding), max(0, y0 - padding), min(W, x1 + padding), min(H, y1 + padding)
    want = width / height
    bw, bh = x1 - x0, y1 - y0
    if bw / bh < want:  # too tall: widen
        grow = round(bh * want) - bw
        x0, x1 = x0 - grow // 2, x1 + grow - grow // 2
    else:  # too wide: heighten
        grow = round(bw / want) - bh
        y0, y1 = y0 - grow // 2, y1 + grow - grow // 2
    # shift back inside, then clamp (the box may be larger than the image)
    if x0 < 0:
        x1, x0 = x1 - x0, 0
    if y0 < 0:
        y1, y0 = y1 - y0, 0
    if x1 > W:
        x0, x1 = max(0, x0 - (x1 - W)), W
    if y1 > H:
        y0, y1 = max(0, y0 - (y1 - H)), H
    return x0, y0, x1, y1


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
    rng = np.random.default_rng(seed)
    if name == "latent noise":
        noise = Image.fromarray(rng.integers(0, 256, (img.height, img.width, 3), dtype=np.uint8))
        return Image.composite(noise, img, mask.point(lambda v: 255 if v > 0 else 0))
    grey = Image.new("RGB", img.size, (127, 127, 127))  # "latent nothing": a neutral start
    return Image.composite(grey, img, mask.point(lambda v: 255 if v > 0 else 0))


def prepare(req: GenerationRequest, model) -> Prepared:
    inpaint_unet = model.is_inpaint
    task = req.task
    if task == "txt2img" and not inpaint_unet:
        return Prepared(task, _CLASSES[(task, model.is_sdxl, False)], width=req.width, height=req.height)
    if task == "txt2img":  # an inpainting checkpoint draws from scratch with everything masked
        grey = Image.new("RGB", (req.width, req.height), (127, 127, 127))
        white = Image.new("L", (req.width, req.height), 255)
        return Prepared(task, _CLASSES[("inpaint", model.is_sdxl, False)], grey, white,
                        width=req.width, height=req.height)
    init = req.init_image.convert("RGB")
    if task == "img2img":
        image = resize_image(init, req.width, req.height, req.resize_mode)
        if inpaint_unet:
            white = Image.new("L", image.size, 255)
            return Prepared(task, _CLASSES[("inpaint", model.is_sdxl, False)], image, white,
                            width=req.width, height=req.height)
        return Prepared(task, _CLASSES[(task, model.is_sdxl, False)], image, width=req.width, height=req.height)
    # inpaint
    mask = req.mask.convert("L")
    if req.inpainting_mask_invert:
        mask = mask.point(lambda v: 255 - v)
    cls_name = _CLASSES[("inpaint", model.is_sdxl, False)]
    if req.inpaint_full_res:
        region = masked_region(mask, req.inpaint_full_res_padding, req.width, req.height)
        paste_mask = _blur(mask, req.mask_blur)
        crop = init.crop(region).resize((req.width, req.height), Image.LANCZOS)
        crop_mask = paste_mask.crop(region).resize((req.width, req.height), Image.LANCZOS)
        crop = _fill_masked(crop, crop_mask, req.inpainting_fill, req.seed)
        return Prepared(task, cls_name, crop, crop_mask, init, paste_mask, region, req.width, req.height)
    image = resize_image(init, req.width, req.height, req.resize_mode)
    mask = resize_image(mask, req.width, req.height, req.resize_mode)
    blurred = _blur(mask, req.mask_blur)
    start = _fill_masked(image, blurred, req.inpainting_fill, req.seed)
    return Prepared(task, cls_name, start, blurred, image, blurred, None, req.width, req.height)


def task_pipeline(model, prepared: Prepared, scheduler, vae=None):
    """A new lightweight pipeline object over the shared weights, owning this request's
    scheduler and interrupt flag (and the request's VAE, when it chose one).
    (Not `from_pipe`: it recasts the shared modules' dtype.)"""
    cls = getattr(diffusers, prepared.cls_name)
    expected, optional = cls._get_signature_keys(cls)
    base = model.pipe
    kwargs = {k: v for k, v in base.components.items() if k in expected}
    kwargs.update({k: base.config[k] for k in optional if k in base.config})
    kwargs["scheduler"] = scheduler
    if vae is not None:
        kwargs["vae"] = vae
    for k in expected:
        kwargs.setdefault(k, None)  # e.g. image_encoder, feature_extractor, safety_checker
    if "requires_safety_checker" in optional:
        kwargs["requires_safety_checker"] = False
    pipe = cls(**kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_inputs(req: GenerationRequest, prepared: Prepared, model) -> dict:
    if prepared.image is None:
        return {"width": req.width, "height": req.height}
    args = {"image": prepared.image}
    if prepared.mask is not None:
        args.update(mask_image=prepared.mask, width=prepared.width, height=prepared.height)
    strength = 1.0 if prepared.task == "txt2img" else req.denoising_strength
    args["strength"] = strength
    return args


def skip_denoise(req: GenerationRequest) -> bool:
    """Denoising strength 0 (or too few steps left by it) returns the input unchanged."""
    return req.task != "txt2img" and int(req.steps * req.denoising_strength) < 1


def finish(img: Image.Image, prepared: Prepared) -> Image.Image:
    """Paste an inpainted result back: pixels where the (blurred) mask is 0 are exactly the
    original's; the blend follows the mask in between."""
    if prepared.task != "inpaint":
        return img
    if prepared.region is not None:
        x0, y0, x1, y1 = prepared.region
        out = prepared.original.copy()
        patch = img.resize((x1 - x0, y1 - y0), Image.LANCZOS)
        out.paste(patch, (x0, y0), prepared.paste_mask.crop(prepared.region))
        return out
    return Image.composite(img, prepared.original, prepared.paste_mask)


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
        })
        if req.inpainting_mask_invert:
            params["Mask mode"] = "Inpaint not masked"
    return params
