"""The `infotext` field of a txt2img/img2img body (A1111 1.8+): the fields a pasted infotext
names fill the request, except those the body sets itself, which win (A1111 does the same).
"""

from __future__ import annotations

from ..errors import UserError
from ..metadata.infotext import infotext_to_fields

# Request fields an infotext may fill. The model and VAE are left out: like A1111 with its
# default "don't switch checkpoint when pasting", the infotext never changes the model.
INFOTEXT_FIELDS = frozenset({
    "prompt", "negative_prompt", "steps", "sampler_name", "scheduler", "cfg_scale", "seed", "width", "height",
    "denoising_strength", "clip_skip", "subseed", "subseed_strength", "enable_hr", "hr_scale", "hr_resize_x",
    "hr_resize_y", "hr_second_pass_steps", "hr_upscaler", "hr_sampler_name", "hr_scheduler", "hr_prompt",
    "hr_negative_prompt", "mask_blur", "inpaint_full_res", "inpaint_full_res_padding", "inpainting_fill",
    "inpainting_mask_invert", "regions",
})
MAX_INFOTEXT_CHARS = 100_000


def apply_infotext(fields: dict, explicit: set[str], text: object) -> dict:
    """`fields` (the body's, without None values) with the infotext's values for the fields
    the body did not set (`explicit`: the names the JSON gave, null ones included)."""
    if text is None or text == "":
        return fields
    if not isinstance(text, str) or len(text) > MAX_INFOTEXT_CHARS:
        raise UserError(f"infotext must be A1111 parameters text (at most {MAX_INFOTEXT_CHARS} characters)",
                        field="infotext")
    given = set(explicit)
    if "sampler_index" in given:  # the old name of sampler_name
        given.add("sampler_name")
    if "regional_prompter" in given:  # the other name of regions
        given.add("regions")
    if "clip_skip" not in given and "CLIP_stop_at_last_layers" in (fields.get("override_settings") or {}):
        given.add("clip_skip")
    out = dict(fields)
    for name, value in infotext_to_fields(text).items():
        if name in INFOTEXT_FIELDS and name not in given:
            out[name] = value
    return out
