"""Hires fix for txt2img, with A1111's semantics.

The first pass draws at width x height. Its result is upscaled -- by ``hr_scale``, or to
``hr_resize_x`` x ``hr_resize_y`` (one of them 0 = keep the aspect ratio; both set = cover the
box, then centre-crop) -- and a second, img2img pass over the same shared weights repaints it
at ``hr_denoising_strength`` with ``hr_second_pass_steps`` (0 = the first pass's steps) and,
if given, its own prompt and sampler.

Upscalers: the ``Latent ...`` modes interpolate the latents (no decode/encode round trip);
every other name (Lanczos, Nearest, None, ESRGAN-family files in models/ESRGAN) decodes the
first pass, upscales the pixels through ``upscalers.get_upscaler`` and lets the img2img
pipeline encode them again.

Memory: large decodes and encodes run the VAE tiled (see :func:`denoise.vae_tiling`).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from PIL import Image

from ...errors import UserError
from ...request.hires import SAME_SAMPLER, SAME_SCHEDULER, check_request, target_size  # noqa: F401
from ...models.upscalers import LATENT_UPSCALE_MODES, get_upscaler, is_latent_upscaler
from ..denoise import decode, run_pass
from ..plan import PassSpec, Prompts


def wanted(req) -> bool:
    return req.enable_hr and req.task == "txt2img"


def infotext_params(req) -> dict:
    """The keys A1111 writes for a hires fix, in its names."""
    if not wanted(req):
        return {}
    resize = bool(req.hr_resize_x or req.hr_resize_y)
    params = {
        "Denoising strength": req.hr_denoising_strength,
        "Hires prompt": req.hr_prompt if req.hr_prompt and req.hr_prompt != req.prompt else None,
        "Hires negative prompt": (req.hr_negative_prompt if req.hr_negative_prompt
                                  and req.hr_negative_prompt != req.negative_prompt else None),
        "Hires upscale": None if resize else req.hr_scale,
        "Hires resize": f"{req.hr_resize_x}x{req.hr_resize_y}" if resize else None,
        "Hires steps": req.hr_second_pass_steps or None,
        "Hires upscaler": req.hr_upscaler,
        "Hires sampler": req.hr_sampler_name if req.hr_sampler_name != SAME_SAMPLER else None,
        "Hires schedule type": req.hr_scheduler if req.hr_scheduler != SAME_SCHEDULER else None,
    }
    return params


def _crop_latents(lat: torch.Tensor, w: int, h: int) -> torch.Tensor:
    _, _, lh, lw = lat.shape
    top, left = (lh - h) // 2, (lw - w) // 2
    return lat[:, :, top:top + h, left:left + w]


def _crop_center(img: Image.Image, w: int, h: int) -> Image.Image:
    left, top = (img.width - w) // 2, (img.height - h) // 2
    return img.crop((left, top, left + w, top + h))


def upscale_pixels(images: list[Image.Image], name: str, size: tuple[int, int], out: tuple[int, int],
                   models_dir, device: str) -> list[Image.Image]:
    """Upscale decoded images to ``size`` with a pixel upscaler, then centre-crop to ``out``."""
    try:
        upscaler = get_upscaler(name, models_dir, device=device)
    except ModuleNotFoundError as e:  # the optional model library is not installed
        raise UserError(f"the upscaler {name} needs the Python package {e.name or 'spandrel'}: install it with "
                        "`pip install --no-deps spandrel`, or choose Lanczos", field="hr_upscaler") from None
    result = []
    for img in images:
        if upscaler is None:  # "None": a plain resize, as A1111 does
            up = img.resize(size, Image.Resampling.LANCZOS)
        else:
            up = upscaler.upscale(img, max(size[0] / img.width, size[1] / img.height))
            if up.size != size:
                up = up.resize(size, Image.Resampling.LANCZOS)
        result.append(_crop_center(up.convert("RGB"), *out))
    return result


def run(ctx, latents: torch.Tensor, seeds: list[int]) -> list[Image.Image]:
    """Upscale one batch's first-pass latents and repaint them; returns the final images. The
    run's extensions that apply in sub-passes steer this pass too (ControlNet maps are made
    again at the hires size, reference images apply again)."""
    req, model = ctx.request, ctx.model
    up, out = target_size(req.width, req.height, req.hr_scale, req.hr_resize_x, req.hr_resize_y)
    steps = req.hr_second_pass_steps or req.steps
    strength = req.hr_denoising_strength
    latent_mode = is_latent_upscaler(req.hr_upscaler)
    vae_f = model.pipe.vae_scale_factor
    t = time.perf_counter()
    if latent_mode and not model.is_inpaint:
        mode, antialias = LATENT_UPSCALE_MODES[req.hr_upscaler]
        lat = F.interpolate(latents.float(), size=(up[1] // vae_f, up[0] // vae_f), mode=mode,
                            antialias=antialias if mode in ("bilinear", "bicubic") else False)
        image = _crop_latents(lat, out[0] // vae_f, out[1] // vae_f).to(latents.dtype)
        if strength < 0.5:
            ctx.note("latent upscaling with a denoising strength under 0.5 leaves the picture blurry; "
                     "use 0.5 or more, or a pixel upscaler such as Lanczos or an ESRGAN model")
    else:
        decoded = decode(ctx, latents)
        name = "Lanczos" if latent_mode else req.hr_upscaler  # an inpainting UNet needs pixels for its mask
        image = upscale_pixels(decoded, name, up, out, ctx.engine.settings.models_dir, str(ctx.engine.device))
    ctx.time("hires upscale", time.perf_counter() - t)

    if int(steps * strength) < 1 or ctx.job.stop_requested:  # nothing to repaint: the upscale is the result
        return decode(ctx, image) if isinstance(image, torch.Tensor) else image

    prompt = req.hr_prompt or req.prompt
    negative = req.hr_negative_prompt or req.negative_prompt
    spec = PassSpec(
        task="inpaint" if model.is_inpaint else "img2img", groups=(Prompts(prompt, negative, len(seeds)),),
        seeds=tuple(seeds), width=out[0], height=out[1], steps=steps, cfg_scale=req.cfg_scale,
        sampler=req.hr_sampler_name if req.hr_sampler_name != SAME_SAMPLER else req.sampler_name,
        schedule=req.hr_scheduler if req.hr_scheduler != SAME_SCHEDULER else req.scheduler,
        clip_skip=req.clip_skip, strength=strength, image=image,
        mask=Image.new("L", out, 255) if model.is_inpaint else None,  # a 9-channel UNet needs a mask
        label="hires ")
    try:
        result = run_pass(ctx, spec, ctx.for_subpass(prompt, negative))
    except torch.OutOfMemoryError:
        raise UserError(f"out of memory in the hires fix pass at {out[0]}x{out[1]}: lower the hires "
                        "upscale, the batch size, or the image size", field="hr_scale") from None
    ctx.note(*result.notes[0])
    return result.images
