"""The A1111 "parameters" text (infotext): build it, parse it, map it to request fields.

Layout (what A1111, Civitai and image browsers read)::

    <prompt, may span lines>
    Negative prompt: <negative prompt, may span lines>      (omitted when empty)
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x768

The last line holds `Key: value` pairs joined by ", ". A value containing ",", ":" or a
newline is written as a JSON string. Reading goes by key, never by position, so the variants
other UIs write (pre-1.9 combined sampler names, Forge keys after Version, SD.Next order and
its `Scheduler` key) all parse.

Building and parsing the text live in `infotext_syntax.py`; this module maps the parsed keys
to request fields and re-exports `build_infotext` and `parse_infotext` for its many callers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

from webui.metadata.infotext_entries import adapters_from_infotext, units_from_infotext
# build_infotext is re-exported: the engine, the UI and the tests build and parse infotexts here.
from webui.metadata.infotext_syntax import build_infotext, parse_infotext  # noqa: F401
from webui.samplers_names import a1111_schedule_label, a1111_sampler_name, split_legacy_sampler

_CONTROLNET_KEY = re.compile(r"ControlNet \d+")

_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


# ---------------------------------------------------------------------------------------------
# Mapping to request fields


def _to_int(text: str) -> int | None:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    if math.isfinite(number) and number.is_integer():
        return int(number)
    return None


def _to_float(text: str) -> float | None:
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _to_size(text: str) -> tuple[int, int] | None:
    match = _SIZE_RE.match(text)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2))


def _to_bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    return None


def parse_hash_list(text: str) -> dict[str, str]:
    """"a: 0123abcd4567, b: 89abcdef0123" -> {"a": "0123abcd4567", "b": "89abcdef0123"}."""
    result: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.rpartition(":")
        if sep and name.strip() and value.strip():
            result[name.strip()] = value.strip()
    return result


def _to_names(text: str) -> list[str]:
    """"Alice, Bob" (the "Character" key: names never hold commas) -> ["Alice", "Bob"]."""
    return [n.strip() for n in text.split(",") if n.strip()]


def _to_list(text: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, list):
            return [str(v) for v in value]
    return [part.strip() for part in stripped.split(",") if part.strip()]


# infotext key -> (field name, converter); conversion failures keep the raw text in `extra`.
_SIMPLE_FIELDS: dict[str, tuple[str, object]] = {
    "Steps": ("steps", _to_int),
    "CFG scale": ("cfg_scale", _to_float),
    "Image CFG scale": ("image_cfg_scale", _to_float),
    "Seed": ("seed", _to_int),
    "Denoising strength": ("denoising_strength", _to_float),
    "Clip skip": ("clip_skip", _to_int),
    "Variation seed": ("subseed", _to_int),
    "Variation seed strength": ("subseed_strength", _to_float),
    "Model": ("sd_model_name", str),
    "Model hash": ("sd_model_hash", str),
    "VAE": ("sd_vae", str),
    "VAE hash": ("sd_vae_hash", str),
    "Tiling": ("tiling", _to_bool),
    "Hires upscale": ("hr_scale", _to_float),
    "Hires steps": ("hr_second_pass_steps", _to_int),
    "Hires upscaler": ("hr_upscaler", str),
    "Hires checkpoint": ("hr_checkpoint_name", str),
    "Hires prompt": ("hr_prompt", str),
    "Hires negative prompt": ("hr_negative_prompt", str),
    "Hires CFG Scale": ("hr_cfg", _to_float),
    "Mask blur": ("mask_blur", _to_int),
    "Masked area padding": ("inpaint_full_res_padding", _to_int),
    "Mask preset": ("mask_preset", str),
    "Lora hashes": ("lora_hashes", parse_hash_list),
    "TI hashes": ("ti_hashes", parse_hash_list),
    "Styles array": ("styles", _to_list),
    "Style": ("styles", _to_list),
    "Styles": ("styles", _to_list),
    "Preset": ("preset", str),
    "Character": ("characters", _to_names),
    "Version": ("version", str),
    "Eta": ("eta", _to_float),
}

_MASKED_CONTENT = {"fill": 0, "original": 1, "latent noise": 2, "latent nothing": 3}
_INPAINT_AREA = {"only masked": True, "whole picture": False}
_MASK_MODE = {"inpaint masked": 0, "inpaint not masked": 1}

_HANDLED_SPECIALLY = frozenset(
    {
        "Prompt",
        "Negative prompt",
        "Sampler",
        "Schedule type",
        "Scheduler",
        "Size",
        "Size-1",
        "Size-2",
        "Hires resize",
        "Hires sampler",
        "Hires schedule type",
        "Seed resize from",
        "Inpaint area",
        "Masked content",
        "Mask mode",
        "Face restoration",
    }
)


def _sampler_fields(sampler: str | None, schedule: str | None) -> tuple[str | None, str | None]:
    """(A1111 sampler name, A1111 schedule label) with the pre-1.9 combined form split.

    Known names come back in A1111 spelling; unknown ones as written. A schedule suffix in
    the sampler name wins over an explicit schedule (A1111 does the same).
    """
    sampler_name = None
    schedule_label = None
    if schedule:
        schedule_label = a1111_schedule_label(schedule) or schedule
    if sampler:
        sampler_name, legacy = split_legacy_sampler(sampler)
        if legacy != "Automatic" or schedule_label is None:
            schedule_label = legacy
        sampler_name = a1111_sampler_name(sampler_name) or sampler_name
    return sampler_name, schedule_label


def infotext_to_fields(parsed: Mapping[str, str] | str) -> dict[str, object]:
    """Typed A1111 API fields from `parse_infotext`'s result (or from raw infotext text).

    Only fields present in the text appear (no defaults are filled in). Field names follow
    the A1111 txt2img/img2img API: prompt, negative_prompt, steps, sampler_name, scheduler,
    cfg_scale, seed, width, height, denoising_strength, clip_skip, subseed,
    subseed_strength, seed_resize_from_w/h, enable_hr, hr_scale, hr_resize_x/y,
    hr_second_pass_steps, hr_upscaler, hr_sampler_name, hr_scheduler, hr_checkpoint_name,
    hr_prompt, hr_negative_prompt, hr_cfg, mask_blur, inpaint_full_res,
    inpaint_full_res_padding, inpainting_fill, inpainting_mask_invert, tiling,
    restore_faces, plus hints: sd_model_checkpoint / sd_model_name (the "Model" name),
    sd_model_hash, sd_vae, sd_vae_hash, lora_hashes / ti_hashes ({name: hash}), styles
    (list), preset, characters (list), version, eta, regions ({mode, ratios}). Keys that are unknown, or whose value does not convert,
    are kept as strings in `extra` under their infotext names.
    """
    if isinstance(parsed, str):
        parsed = parse_infotext(parsed)
    fields: dict[str, object] = {}
    extra: dict[str, str] = {}

    def get(key: str) -> str | None:
        value = parsed.get(key)
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    if "Prompt" in parsed:
        fields["prompt"] = str(parsed.get("Prompt") or "")
    if "Negative prompt" in parsed:
        fields["negative_prompt"] = str(parsed.get("Negative prompt") or "")

    # Sampler and schedule; SD.Next writes "Scheduler" where A1111 writes "Schedule type".
    schedule = get("Schedule type")
    scheduler_key = get("Scheduler")
    if schedule is None and scheduler_key is not None and a1111_schedule_label(scheduler_key):
        schedule = scheduler_key
    elif scheduler_key is not None:
        extra["Scheduler"] = scheduler_key
    sampler_name, schedule_label = _sampler_fields(get("Sampler"), schedule)
    if sampler_name:
        fields["sampler_name"] = sampler_name
    if schedule_label and (sampler_name or schedule is not None):
        fields["scheduler"] = schedule_label

    hr_sampler = get("Hires sampler")
    hr_schedule = get("Hires schedule type")
    if hr_sampler and hr_sampler.lower() != "use same sampler":
        name, label = _sampler_fields(hr_sampler, hr_schedule)
        fields["hr_sampler_name"] = name
        if label and (hr_schedule or label != "Automatic"):
            fields["hr_scheduler"] = label
    elif hr_schedule and hr_schedule.lower() != "use same scheduler":
        fields["hr_scheduler"] = a1111_schedule_label(hr_schedule) or hr_schedule

    for key, attr_names in (
        ("Size", ("width", "height")),
        ("Hires resize", ("hr_resize_x", "hr_resize_y")),
        ("Seed resize from", ("seed_resize_from_w", "seed_resize_from_h")),
    ):
        raw = get(key)
        if raw is None:
            continue
        size = _to_size(raw)
        if size is None:
            extra[key] = raw
        else:
            fields[attr_names[0]], fields[attr_names[1]] = size

    if "width" not in fields and get("Size-1") and get("Size-2"):
        # Some writers (and A1111's own parsed form) split Size into Size-1 / Size-2.
        width, height = _to_int(get("Size-1") or ""), _to_int(get("Size-2") or "")
        if width and height:
            fields["width"], fields["height"] = width, height
        else:
            extra["Size-1"], extra["Size-2"] = get("Size-1") or "", get("Size-2") or ""

    for key, table, field in (
        ("Inpaint area", _INPAINT_AREA, "inpaint_full_res"),
        ("Masked content", _MASKED_CONTENT, "inpainting_fill"),
        ("Mask mode", _MASK_MODE, "inpainting_mask_invert"),
    ):
        raw = get(key)
        if raw is None:
            continue
        if raw.lower() in table:
            fields[field] = table[raw.lower()]
        else:
            extra[key] = raw

    face = get("Face restoration")
    if face is not None:
        fields["restore_faces"] = True
        extra["Face restoration"] = face

    for key, raw in parsed.items():
        if key in _HANDLED_SPECIALLY:
            continue
        value = get(key)
        if value is None:
            continue
        spec = _SIMPLE_FIELDS.get(key)
        if spec is None:
            extra[key] = value
            continue
        field, convert = spec
        converted = convert(value)  # type: ignore[operator]
        if converted is None or converted == {} or converted == []:
            extra[key] = value
        else:
            fields[field] = converted

    if "sd_model_name" in fields:
        fields["sd_model_checkpoint"] = fields["sd_model_name"]
    if "hr_scale" in fields or "hr_resize_x" in fields or "hr_second_pass_steps" in fields or (
        "hr_upscaler" in fields
    ):
        fields["enable_hr"] = True
    units = units_from_infotext(extra)
    if units:
        fields["controlnet_units"] = units
        extra = {k: v for k, v in extra.items() if not _CONTROLNET_KEY.fullmatch(k)}
    adapters = adapters_from_infotext(extra)
    if adapters:
        fields["ip_adapters"] = adapters
        extra = {k: v for k, v in extra.items() if not k.startswith("IP-Adapter ")}
    if "Regions ratios" in extra:  # regions (request/regions.py): the prompt holds the BREAK parts
        fields["regions"] = {"mode": extra.pop("Regions mode", "Columns"), "ratios": extra.pop("Regions ratios")}
    fields["extra"] = extra
    return fields
