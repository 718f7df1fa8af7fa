"""Face detail options of a request (the ``face_detail*`` fields; the pass is detailer.py): the
face orders, the per-face prompt tokens, ADetailer API compatibility, and the prompt-length
check on the prompts the model reads.
"""

from __future__ import annotations

from ..errors import UserError
from .fields import as_str, size_field

# How detected faces are ranked before max_faces keeps the first ones (faces.select_faces).
ORDERS = ("largest", "left-to-right", "right-to-left", "top-to-bottom", "confidence")
SEP = "[SEP]"               # separates one face prompt per face (the last one repeats)
PROMPT_TOKEN = "[PROMPT]"   # stands for the main prompt inside a face prompt


def face_order(fields: dict) -> str:
    order = as_str(fields, "face_detail_order", "largest", 50) or "largest"
    if order not in ORDERS:
        raise UserError(f"face_detail_order must be one of {', '.join(ORDERS)}; got {order!r}",
                        field="face_detail_order")
    return order


def face_size(fields: dict, name: str, hi: int) -> int:
    if not fields.get(name):
        return 0
    return size_field(fields, name, 0, hi)


# ---- ADetailer API compatibility -------------------------------------------------------------

_AD_KEYS = {
    "ad_prompt": "face_detail_prompt",
    "ad_negative_prompt": "face_detail_negative_prompt",
    "ad_confidence": "face_detail_confidence",
    "ad_mask_k_largest": "face_detail_max_faces",
    "ad_mask_blur": "face_detail_blur",
    "ad_denoising_strength": "face_detail_denoising_strength",
    "ad_inpaint_only_masked_padding": "face_detail_padding",
}


def face_fields_from_alwayson(alwayson) -> dict:
    """Our face_detail fields from an A1111 ``alwayson_scripts`` dict carrying ADetailer args
    (``{"ADetailer": {"args": [true, false, {"ad_model": ..., "ad_prompt": ...}]}}``; the
    leading booleans are optional). Only the first ADetailer unit is used."""
    if not isinstance(alwayson, dict):
        return {}
    script = next((v for k, v in alwayson.items() if isinstance(k, str) and k.lower() == "adetailer"), None)
    args = script.get("args") if isinstance(script, dict) else None
    if not isinstance(args, list) or not args:
        return {}
    if args[0] is False:
        return {}
    unit = next((a for a in args if isinstance(a, dict)), None)
    if unit is None or str(unit.get("ad_model", "")).lower() == "none":
        return {}
    out = {"face_detail": True}
    for key, name in _AD_KEYS.items():
        if key in unit:
            out[name] = unit[key]
    if unit.get("ad_use_steps") and "ad_steps" in unit:
        out["face_detail_steps"] = unit["ad_steps"]
    if unit.get("ad_use_inpaint_width_height"):
        out["face_detail_width"] = unit.get("ad_inpaint_width", 0)
        out["face_detail_height"] = unit.get("ad_inpaint_height", 0)
    return out


# ---- the prompts the model reads -------------------------------------------------------------

def _longest_face_prompt(template: str, main: str) -> int:
    """Length of the longest per-face prompt detailer.face_prompts makes from ``template``."""
    parts = [p.strip() for p in (template or "").split(SEP)]
    return max(len(p) + p.count(PROMPT_TOKEN) * (len(main) - len(PROMPT_TOKEN)) if p else len(main)
               for p in parts)


def check_prompt_lengths(req, limit: int) -> None:
    """--max-prompt-chars on every text the model encodes, as it will be encoded: the prompts
    after translation, the preset template and styles; the hires prompts; each face prompt with
    [PROMPT] replaced by the prompt. (build_request checks what was typed; this checks what it
    became.)"""
    texts = {
        "prompt": len(req.prompt),
        "negative_prompt": len(req.negative_prompt),
        "hr_prompt": len(req.hr_prompt),
        "hr_negative_prompt": len(req.hr_negative_prompt),
        "face_detail_prompt": _longest_face_prompt(req.face_detail_prompt, req.prompt) if req.face_detail else 0,
        "face_detail_negative_prompt": (_longest_face_prompt(req.face_detail_negative_prompt, req.negative_prompt)
                                        if req.face_detail else 0),
    }
    for name, length in texts.items():
        if length <= limit:
            continue
        if name.startswith("face_detail"):
            how = "once [PROMPT] is replaced by the prompt, a face prompt"
            fix = "use [PROMPT] fewer times, or shorten the prompt"
        elif name.startswith("hr_"):
            how, fix = name, "shorten it"
        else:
            how = f"{name}, with the translation, preset template and styles applied,"
            fix = "choose fewer or shorter styles, or shorten the prompt"
        raise UserError(f"{how} is {length:,} characters long; the limit is {limit:,}: {fix}", field=name)
