"""The one request type. UI widgets, REST JSON and gradio_client calls all become a
GenerationRequest here, validated once; everything inward trusts it.

Field names are the A1111 API names so a request can be echoed back as `parameters`.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..errors import UserError
from ..metadata.uploads import upload_too_many_pixels
from ..imaging.images import upload_label
from ..samplers_names import SCHEDULE_TYPES, normalize_schedule_type, resolve_sampler
from ..settings import Limits
from ..validate import check_fields
from .controlnet import ControlUnit, parse_units, units_from_alwayson
from .face import face_fields_from_alwayson, face_order, face_size
from .fields import as_bool, as_float, as_int, as_str, choice, size_field
from .hires import check_request as check_hires, hr_sampler, hr_scheduler
from .ipadapter import IPAdapterRef, parse_adapters
from .regions import RegionSpec, parse_regions
from .scripts import check_alwayson

TASKS = ("txt2img", "img2img", "inpaint")
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill")
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")
# Masks found in the picture (models/mediapipe_masks.py): "" = none, only the drawn mask.
MASK_PRESETS = ("face", "person", "background", "hands")
MAX_SEED = 2**32 - 1  # random seeds and the UI's seed box stay 32-bit, as A1111's
MAX_SEED_64 = 2**64 - 1  # the largest seed a request may give (ComfyUI's seeds are 64-bit)


@dataclass(frozen=True)
class GenerationRequest:
    task: str = "txt2img"
    prompt: str = ""
    negative_prompt: str = ""
    styles: tuple[str, ...] = ()
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    sampler_name: str = "DPM++ 2M"
    scheduler: str = "Automatic"
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    batch_size: int = 1
    n_iter: int = 1
    clip_skip: int = 1
    sd_model_checkpoint: str | None = None  # None: the active model
    sd_vae: str = "Automatic"
    # img2img / inpaint
    init_image: Image.Image | None = field(default=None, repr=False)
    mask: Image.Image | None = field(default=None, repr=False)
    denoising_strength: float = 0.75
    resize_mode: int = 0
    mask_blur: int = 4
    inpainting_fill: int = 1
    inpaint_full_res: bool = False
    inpaint_full_res_padding: int = 32
    inpainting_mask_invert: bool = False
    mask_preset: str = ""  # one of MASK_PRESETS: its mask (united with `mask`) is what is repainted
    # hires fix (txt2img)
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str = "Latent"
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_denoising_strength: float = 0.7
    hr_prompt: str = ""            # "" = the main prompt
    hr_negative_prompt: str = ""
    hr_sampler_name: str = "Use same sampler"
    hr_scheduler: str = "Use same scheduler"
    # face detail pass after txt2img / img2img / inpaint (detailer.py)
    face_detail: bool = False
    face_detail_prompt: str = ""   # "" = the main prompt; "[SEP]" separates per-face prompts
    face_detail_negative_prompt: str = ""
    face_detail_denoising_strength: float = 0.4
    face_detail_steps: int = 0     # 0 = same as steps
    face_detail_max_faces: int = 4  # 0 = all
    face_detail_confidence: float = 0.3
    face_detail_padding: int = 32
    face_detail_blur: int = 4
    face_detail_detector: str = "mediapipe"  # falls back to "haar" without the mediapipe wheel
    face_detail_order: str = "largest"
    face_detail_width: int = 0     # 0 = the model's native size (512 SD1, 1024 SDXL)
    face_detail_height: int = 0
    # ControlNet units that are on (controlnet.py); images are left out of repr and equality.
    controlnet_units: tuple[ControlUnit, ...] = ()
    ip_adapters: tuple[IPAdapterRef, ...] = ()  # reference images (ipadapter.py)
    regions: RegionSpec | None = None  # columns/rows with their own prompts (regions.py)
    save_images: bool = True
    # Extra infotext keys from outside the engine (preset name, translated prompt...).
    extra_params: tuple[tuple[str, str], ...] = ()

    @property
    def image_count(self) -> int:
        return self.batch_size * self.n_iter

    def replace(self, **changes) -> "GenerationRequest":
        return dataclasses.replace(self, **changes)

    def resolved_seed(self) -> "GenerationRequest":
        """A copy with -1 seeds replaced by random ones, so the result can be reproduced."""
        seed = self.seed if self.seed >= 0 else random.randrange(MAX_SEED)
        subseed = self.subseed if self.subseed >= 0 else random.randrange(MAX_SEED)
        return self.replace(seed=seed, subseed=subseed)

    def seeds(self) -> list[int]:
        """A1111 convention: image i of the job uses seed + i. A 32-bit seed wraps at 2**32 as
        before; a larger one wraps at 2**64 (torch's generator takes seeds below 2**64)."""
        wrap = MAX_SEED + 1 if self.seed <= MAX_SEED else MAX_SEED_64 + 1
        return [(self.seed + i) % wrap for i in range(self.image_count)]

    def api_parameters(self) -> dict[str, Any]:
        """The request echoed back as the A1111 API does (images left out)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Image.Image) or f.name == "extra_params":
                continue
            if f.name == "ip_adapters":
                out[f.name] = [{"model": a.model, "weight": a.weight} for a in v]
                continue
            if f.name == "regions":
                out[f.name] = {"mode": v.mode, "ratios": v.ratios_text()} if v else None
                continue
            if f.name == "controlnet_units":
                out[f.name] = [{k: x for k, x in dataclasses.asdict(u).items() if k != "image"} for u in v]
                continue
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


def check_upload(img, limits: Limits, field: str) -> None:
    """An image given to a request (already decoded, e.g. by Gradio) must be within the upload
    pixel limit; the message is the one upload decoding uses."""
    if not isinstance(img, Image.Image):
        raise UserError(f"{upload_label(field)} is not an image", field=field)
    if img.width * img.height > limits.max_upload_pixels:
        raise UserError(upload_too_many_pixels(upload_label(field), img.width, img.height,
                                               limits.max_upload_pixels), field=field)


def _mask_preset(fields: dict[str, Any], task: str) -> str:
    preset = (as_str(fields, "mask_preset", "", 50) or "").strip().lower()
    if preset in ("", "none"):
        return ""
    if preset not in MASK_PRESETS:
        raise UserError(f"mask_preset must be one of {', '.join(MASK_PRESETS)} (or empty for none); got {preset!r}",
                        field="mask_preset")
    if task == "txt2img":
        raise UserError("mask_preset needs an input image: use it with img2img or inpaint", field="mask_preset")
    return preset


def build_request(fields: dict[str, Any], limits: Limits, task: str = "txt2img") -> GenerationRequest:
    """Parse loosely typed fields (UI widgets or A1111 JSON) into a validated request.

    Unknown keys are ignored, as A1111 does; every problem raises UserError naming the field.
    """
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; use one of {', '.join(TASKS)}", field="task")
    check_fields(fields)  # text, finite numbers, list bounds: for every field, known or not
    sampler, schedule_from_name = resolve_sampler(as_str(fields, "sampler_name", "DPM++ 2M", 100) or "DPM++ 2M")
    # A schedule suffix in the sampler name ("DPM++ 2M Karras") wins over `scheduler`, as in A1111.
    scheduler = as_str(fields, "scheduler", "", 100) or "Automatic"
    if schedule_from_name != "Automatic":
        scheduler = schedule_from_name
    schedule = normalize_schedule_type(scheduler)
    if schedule is None:
        raise UserError(f"unknown scheduler (schedule type) {scheduler!r}; available: {', '.join(SCHEDULE_TYPES)}",
                        field="scheduler")
    styles = fields.get("styles") or ()
    if isinstance(styles, str):
        styles = (styles,)
    if not isinstance(styles, (list, tuple)) or not all(isinstance(s, str) and len(s) <= 300 for s in styles):
        raise UserError("styles must be a list of style names", field="styles")
    styles = tuple(dict.fromkeys(styles))  # a style chosen twice would only repeat its text
    lim = limits
    width = size_field(fields, "width", 512, lim.max_width)
    height = size_field(fields, "height", 512, lim.max_height)
    if width * height > lim.max_pixels:
        raise UserError(f"{width}x{height} is {width * height} pixels; the limit is {lim.max_pixels}. "
                        "Lower width or height (use hires fix to go larger).", field="width")
    batch_size = as_int(fields, "batch_size", 1, 1, lim.max_batch_size)
    over = fields.get("override_settings") or {}
    if not isinstance(over, dict):
        raise UserError("override_settings must be an object of setting names and values", field="override_settings")
    ckpt = fields.get("sd_model_checkpoint") or over.get("sd_model_checkpoint")
    if ckpt is not None and (not isinstance(ckpt, str) or len(ckpt) > 300):
        raise UserError("sd_model_checkpoint must be a checkpoint title or name", field="sd_model_checkpoint")
    check_alwayson(fields.get("alwayson_scripts"))
    fields = {**face_fields_from_alwayson(fields.get("alwayson_scripts")), **fields}
    units = fields.get("controlnet_units")
    if units is None:
        units = units_from_alwayson(fields.get("alwayson_scripts"))
    extra = fields.get("extra_params") or ()
    if isinstance(extra, dict):
        extra = tuple(extra.items())
    if not isinstance(extra, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in extra):
        raise UserError("extra_params must be infotext keys and values", field="extra_params")
    mask_preset = _mask_preset(fields, task)
    if mask_preset and task == "img2img":  # a found mask makes it inpainting, as a drawn one does
        task = "inpaint"
    req = GenerationRequest(
        task=task,
        prompt=as_str(fields, "prompt", "", lim.max_prompt_chars),
        negative_prompt=as_str(fields, "negative_prompt", "", lim.max_prompt_chars),
        styles=tuple(styles),
        seed=as_int(fields, "seed", -1, -1, MAX_SEED_64),
        subseed=as_int(fields, "subseed", -1, -1, MAX_SEED_64),
        subseed_strength=as_float(fields, "subseed_strength", 0.0, 0.0, 1.0),
        sampler_name=sampler,
        scheduler=schedule,
        steps=as_int(fields, "steps", 20, 1, lim.max_steps),
        cfg_scale=as_float(fields, "cfg_scale", 7.0, 1.0, 30.0),
        width=width,
        height=height,
        batch_size=batch_size,
        n_iter=as_int(fields, "n_iter", 1, 1, lim.max_n_iter),
        clip_skip=as_int(fields, "clip_skip", 1, 1, 12),
        sd_model_checkpoint=ckpt or None,
        sd_vae=as_str(fields, "sd_vae", "Automatic", 300) or "Automatic",
        init_image=fields.get("init_image"),
        mask=fields.get("mask"),
        denoising_strength=as_float(fields, "denoising_strength", 0.75, 0.0, 1.0),
        resize_mode=choice(fields, "resize_mode", 0, RESIZE_MODES),
        mask_blur=as_int(fields, "mask_blur", 4, 0, 64),
        inpainting_fill=choice(fields, "inpainting_fill", 1, MASKED_CONTENT),
        inpaint_full_res=as_bool(fields, "inpaint_full_res", False),
        inpaint_full_res_padding=as_int(fields, "inpaint_full_res_padding", 32, 0, 256),
        inpainting_mask_invert=as_bool(fields, "inpainting_mask_invert", False),
        mask_preset=mask_preset,
        enable_hr=as_bool(fields, "enable_hr", False),
        hr_scale=as_float(fields, "hr_scale", 2.0, 1.0, 4.0),
        hr_upscaler=as_str(fields, "hr_upscaler", "Latent", 300) or "Latent",
        hr_second_pass_steps=as_int(fields, "hr_second_pass_steps", 0, 0, lim.max_steps),
        hr_resize_x=as_int(fields, "hr_resize_x", 0, 0, lim.max_width),
        hr_resize_y=as_int(fields, "hr_resize_y", 0, 0, lim.max_height),
        hr_denoising_strength=as_float(fields, "hr_denoising_strength",
                                        as_float(fields, "denoising_strength", 0.7, 0.0, 1.0), 0.0, 1.0),
        hr_prompt=as_str(fields, "hr_prompt", "", lim.max_prompt_chars),
        hr_negative_prompt=as_str(fields, "hr_negative_prompt", "", lim.max_prompt_chars),
        hr_sampler_name=hr_sampler(fields),
        hr_scheduler=hr_scheduler(fields),
        face_detail=as_bool(fields, "face_detail", False),
        face_detail_prompt=as_str(fields, "face_detail_prompt", "", lim.max_prompt_chars),
        face_detail_negative_prompt=as_str(fields, "face_detail_negative_prompt", "", lim.max_prompt_chars),
        face_detail_denoising_strength=as_float(fields, "face_detail_denoising_strength", 0.4, 0.0, 1.0),
        face_detail_steps=as_int(fields, "face_detail_steps", 0, 0, lim.max_steps),
        face_detail_max_faces=as_int(fields, "face_detail_max_faces", 4, 0, 64),
        face_detail_confidence=as_float(fields, "face_detail_confidence", 0.3, 0.0, 1.0),
        face_detail_padding=as_int(fields, "face_detail_padding", 32, 0, 512),
        face_detail_blur=as_int(fields, "face_detail_blur", 4, 0, 128),
        face_detail_detector=as_str(fields, "face_detail_detector", "mediapipe", 200) or "mediapipe",
        face_detail_order=face_order(fields),
        face_detail_width=face_size(fields, "face_detail_width", lim.max_width),
        face_detail_height=face_size(fields, "face_detail_height", lim.max_height),
        controlnet_units=parse_units(units, lim),
        ip_adapters=parse_adapters(fields.get("ip_adapters"), lim),
        regions=parse_regions(fields.get("regions") or fields.get("regional_prompter"), str(fields.get("prompt") or "")),
        save_images=as_bool(fields, "save_images", True),
        extra_params=tuple((str(k), str(v)) for k, v in extra),
    )
    check_hires(req, lim.max_pixels)
    if task != "txt2img" and req.init_image is None:
        raise UserError(f"{task} needs an input image", field="init_images")
    if req.init_image is not None:  # txt2img ignores one, but it is held (and budgeted) all the same
        check_upload(req.init_image, lim, "init_images")
    if req.mask is not None:
        check_upload(req.mask, lim, "mask")
    if task == "inpaint":
        if req.mask is None and not req.mask_preset:
            raise UserError("inpaint needs a mask: paint over the area to change, upload a mask image, or "
                            f"choose a mask preset ({', '.join(MASK_PRESETS)})", field="mask")
        if req.mask is not None and req.mask.size != req.init_image.size:
            raise UserError(f"the mask is {req.mask.width}x{req.mask.height} but the image is "
                            f"{req.init_image.width}x{req.init_image.height}; they must be the same size",
                            field="mask")
    return req
