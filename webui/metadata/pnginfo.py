"""What an image file says about how it was made: the logic behind the PNG Info tab and the
`/sdapi/v1/png-info` route (both return the same thing)."""

from __future__ import annotations

from ..samplers_names import split_legacy_sampler
from .image_meta import read_infotext
from .infotext import infotext_to_fields
from .infotext_syntax import parse_infotext


# Keys A1111 1.10's png-info fills in when an infotext lacks them (the values its older
# versions used), so a script reading `parameters["Clip skip"]` gets no KeyError.
A1111_DEFAULTS: dict[str, object] = {
    "Clip skip": "1",
    "Hires resize-1": 0,
    "Hires resize-2": 0,
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": 32,
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Schedule max sigma": 0,
    "Schedule min sigma": 0,
    "Schedule rho": 0,
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
    "FP8 weight": "Disable",
    "Cache FP16 weight for LoRA": False,
    "Emphasis": "Original",
    "Refiner switch by sampling steps": False,
}


def with_a1111_defaults(parameters: dict) -> dict:
    """`parameters` plus A1111's defaults for the keys it lacks; a pre-1.9 sampler name with
    a schedule ("DPM++ 2M Karras") is split into Sampler and Schedule type, as A1111 does."""
    out = dict(parameters)
    if "Schedule type" not in out and out.get("Sampler"):
        sampler, schedule = split_legacy_sampler(str(out["Sampler"]))
        if schedule != "Automatic":
            out["Sampler"], out["Schedule type"] = sampler, schedule
    for key, value in A1111_DEFAULTS.items():
        out.setdefault(key, value)
    return out


def png_info(source) -> dict:
    """Read an upload (path, bytes, file object or PIL image).

    Returns `info` (the A1111 infotext, "" when the file has none), `items` (every other
    text entry, e.g. ComfyUI's raw `prompt`/`workflow` JSON), `parameters` (the infotext by
    key, as A1111's png-info returns it, with `Size-1`/`Size-2` and `A1111_DEFAULTS` for the
    keys it lacks) and `fields` (the same as
    A1111 API request fields, ready to send to txt2img). Raises UserError for a file that is
    not a readable image.
    """
    info, items = read_infotext(source)
    info = info or ""
    parameters: dict = {}
    fields: dict = {}
    if info:
        parameters = parse_infotext(info)
        size = parameters.get("Size", "")
        w, sep, h = size.partition("x")
        if sep and w.strip().isdigit() and h.strip().isdigit():
            parameters["Size-1"], parameters["Size-2"] = w.strip(), h.strip()
        fields = infotext_to_fields(parameters)
        parameters = with_a1111_defaults(parameters)
    return {"info": info, "items": items, "parameters": parameters, "fields": fields}
