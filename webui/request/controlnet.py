"""A ControlNet unit as a request carries it: its settings with their bounds, parsed from the UI
or the A1111 API (``controlnet_units`` or ``alwayson_scripts.controlnet.args``). Loading models
and making control images is the engine's part (webui/engine/extensions/controlnet.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..errors import UserError
from ..imaging.images import decode_base64_image
from ..settings import Limits
from ..validate import number, shown

MAX_UNITS = 3
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
# Same order as tasks.resize_image's modes; the names the A1111 ControlNet extension uses.
RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
RESIZE_ALIASES = {"inner fit (scale to fit)": 1, "outer fit (shrink to fit)": 2, "envelope (outer fit)": 2}
# Preprocessors offered in the UI; "openpose_full", "lineart_realistic" and other A1111 names are
# accepted too (ANNOTATOR_MODULES lists the ones with weights).
MODULES = ("none", "canny", "openpose", "openpose_hand", "openpose_face", "openpose_full", "lineart", "lineart_coarse",
           "depth")
FIELD = "controlnet_units"
# Preprocessors with weights (annotators.MODELS has a network for each).
ANNOTATOR_MODULES = ("openpose", "lineart", "lineart_realistic", "lineart_coarse", "depth", "depth_midas")
# The OpenPose family: (body, hands, face) each draws; other "openpose..." names draw the body.
OPENPOSE_PARTS = {"openpose": (True, False, False), "openpose_hand": (True, True, False),
                  "openpose_face": (True, False, True), "openpose_faceonly": (False, False, True),
                  "openpose_full": (True, True, True)}


@dataclass(frozen=True)
class ControlUnit:
    model: str
    module: str = "none"
    image: Image.Image | None = field(default=None, repr=False, compare=False)
    pose: str = ""  # a pose library key, rendered at the request's size when there is no image
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: int = 0
    resize_mode: int = 1
    processor_res: int = 512
    threshold_a: float = 100.0
    threshold_b: float = 200.0

    def infotext(self, model_label: str) -> str:
        """One unit as the A1111 ControlNet extension writes it (value of "ControlNet N")."""
        parts = [f"Module: {self.module}", f"Model: {model_label}", f"Weight: {self.weight:g}",
                 f"Resize Mode: {RESIZE_MODES[self.resize_mode]}", f"Processor Res: {self.processor_res}",
                 f"Threshold A: {self.threshold_a:g}", f"Threshold B: {self.threshold_b:g}",
                 f"Guidance Start: {self.guidance_start:g}", f"Guidance End: {self.guidance_end:g}",
                 "Pixel Perfect: False", f"Control Mode: {CONTROL_MODES[self.control_mode]}"]
        if self.pose:
            parts.append(f"Pose: {self.pose}")
        return ", ".join(parts)  # build_infotext quotes it


# ---- validation at the edge ------------------------------------------------------------------

def _num(d: dict, key: str, default, lo, hi, n: int, integer=False):
    v = d.get(key, default)
    if v is None or v == "":
        return default
    return number(v, f"ControlNet unit {n}: {key}", FIELD, lo, hi, integer)


def _unset(d: dict, key: str, default, lo, hi, n: int, integer=False):
    """A1111 clients send -1 for "the preprocessor's default"."""
    if d.get(key) in (-1, "-1", -1.0):
        return default
    return _num(d, key, default, lo, hi, n, integer)


def option_index(d: dict, key: str, default: int, options, n: int, aliases=None) -> int:
    v = d.get(key, default)
    if v is None or v == "":
        return default
    if isinstance(v, str) and not v.strip().isdigit():
        low = v.strip().lower()
        for i, o in enumerate(options):
            if low == o.lower():
                return i
        if aliases and low in aliases:
            return aliases[low]
        raise UserError(f"ControlNet unit {n}: {key} must be one of {', '.join(options)}; got {shown(v)}", field=FIELD)
    return int(_num({key: v}, key, default, 0, len(options) - 1, n, integer=True))


def annotator_module(module: str) -> str:
    """The canonical name of a preprocessor that needs weights ("openpose_full" -> "openpose"),
    or a UserError saying which ones are built in."""
    m = module.strip().lower()
    if m.startswith("openpose"):
        m = "openpose"
    if m in ANNOTATOR_MODULES:
        return m
    raise UserError(f"the {module} preprocessor is not built in; use openpose, lineart, lineart_coarse or depth "
                    "(MiDaS), or upload a ready map with preprocessor 'none'", field=FIELD)


def openpose_parts(module: str) -> tuple[bool, bool, bool]:
    """(body, hands, face) an OpenPose preprocessor draws."""
    return OPENPOSE_PARTS.get(module.strip().lower(), (True, False, False))


def module_kind(module: str) -> str:
    """'none', 'canny' or 'annotator' (a preprocessor with weights); a UserError for one not built in."""
    m = (module or "none").strip().lower()
    if m in ("none", "", "no preprocessor"):
        return "none"
    if m == "canny":
        return "canny"
    annotator_module(m)
    return "annotator"


def _image(v, n: int, limits: Limits | None) -> Image.Image | None:
    if isinstance(v, dict):  # A1111 UI sends {"image": ..., "mask": ...}
        v = v.get("image")
    if v is None or v == "":
        return None
    if isinstance(v, Image.Image):
        return v
    if isinstance(v, np.ndarray):
        return Image.fromarray(v.astype(np.uint8))
    if isinstance(v, str):
        try:
            return decode_base64_image(v, f"ControlNet unit {n} image", limits)
        except UserError as e:  # the message names the unit; the field is the request's
            raise UserError(str(e), field=FIELD) from None
    raise UserError(f"ControlNet unit {n}: image must be an image or base64 text", field=FIELD)


def parse_units(raw, limits: Limits | None = None) -> tuple[ControlUnit, ...]:
    """UI or A1111 API unit dicts -> validated units; disabled or empty units are dropped.
    Control images are held to the upload limits (bytes before decoding, then pixels)."""
    max_upload_pixels = limits.max_upload_pixels if limits else None
    if raw is None:
        return ()
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, (list, tuple)):
        raise UserError("ControlNet units must be a list of unit settings", field=FIELD)
    units = []
    for n, d in enumerate(raw):
        if isinstance(d, ControlUnit):
            units.append(d)
            continue
        if not isinstance(d, dict):
            raise UserError(f"ControlNet unit {n}: expected an object of unit settings", field=FIELD)
        if not d.get("enabled", True) or d.get("enabled") in ("false", "False", 0):
            continue
        image = _image(d.get("image", d.get("input_image")), n, limits)
        pose = d.get("pose") or ""
        if not isinstance(pose, str):
            raise UserError(f"ControlNet unit {n}: pose must be a pose name", field=FIELD)
        model = d.get("model") or ""
        if not isinstance(model, str) or model.strip().lower() in ("", "none"):
            if image is None and not pose:
                continue  # an untouched unit: nothing to do
            raise UserError(f"ControlNet unit {n}: choose a ControlNet model", field=FIELD)
        if image is None and not pose:
            raise UserError(f"ControlNet unit {n} is enabled but has no control image or pose", field=FIELD)
        if image is not None and max_upload_pixels and image.width * image.height > max_upload_pixels:
            raise UserError(f"ControlNet unit {n}: the control image is {image.width}x{image.height}; the limit is "
                            f"{max_upload_pixels} pixels", field=FIELD)
        module = str(d.get("module") or "none")
        module_kind(module)
        start = _num(d, "guidance_start", 0.0, 0.0, 1.0, n)
        end = _num(d, "guidance_end", 1.0, 0.0, 1.0, n)
        if end <= start:
            raise UserError(f"ControlNet unit {n}: guidance end ({end}) must be after guidance start ({start})",
                            field=FIELD)
        units.append(ControlUnit(
            model=model.strip(), module=module, image=image, pose=pose,
            weight=_num(d, "weight", 1.0, 0.0, 2.0, n),
            guidance_start=start, guidance_end=end,
            control_mode=option_index(d, "control_mode", 0, CONTROL_MODES, n),
            resize_mode=option_index(d, "resize_mode", 1, RESIZE_MODES, n, RESIZE_ALIASES),
            processor_res=int(_unset(d, "processor_res", 512, 64, 2048, n, integer=True)),
            threshold_a=_unset(d, "threshold_a", 100.0, 0.0, 255.0, n),
            threshold_b=_unset(d, "threshold_b", 200.0, 0.0, 255.0, n),
        ))
    if len(units) > MAX_UNITS:
        raise UserError(f"at most {MAX_UNITS} ControlNet units can be used at once; got {len(units)}", field=FIELD)
    return tuple(units)


def units_from_alwayson(scripts) -> list | None:
    """`alwayson_scripts.controlnet.args` of an A1111 API request, or None when absent."""
    if not isinstance(scripts, dict):
        return None
    for name, value in scripts.items():
        if isinstance(name, str) and name.lower() == "controlnet":
            args = value.get("args") if isinstance(value, dict) else value
            if args is not None and not isinstance(args, list):
                raise UserError("alwayson_scripts.controlnet.args must be a list of units", field=FIELD)
            return args
    return None
