"""The A1111 scripts this server honours, under the names A1111 lists them by (lower case, matched
case-insensitively as A1111 matches them): the always-on scripts ``controlnet`` and ``adetailer``
(``alwayson_scripts``) and the selectable script ``x/y/z plot`` (``script_name`` +
``script_args``). ``/sdapi/v1/scripts`` and ``/script-info`` are built from these tables, and an
unknown name in a request is refused here, never silently ignored.

``controlnet m2m`` is listed too, as A1111 lists it when the ControlNet extension is installed:
clients (webuiapi) look for it to know that ControlNet is there and that they must send an empty
unit list to switch it off. Selecting it (ControlNet's video script) is refused with a reason.
"""

from __future__ import annotations

from ..errors import UserError

XYZ_PLOT = "x/y/z plot"
ALWAYSON = ("controlnet", "adetailer")
SELECTABLE = (XYZ_PLOT, "controlnet m2m")
_NOT_HONOURED = {"controlnet m2m": "ControlNet's video script (controlnet m2m) is not supported here; send "
                                   "ControlNet units in alwayson_scripts.controlnet.args instead"}


def scripts_list() -> dict:
    """/sdapi/v1/scripts: every script's name per tab, as A1111 lists them."""
    names = [XYZ_PLOT, *ALWAYSON, "controlnet m2m"]
    return {"txt2img": list(names), "img2img": list(names)}


def check_alwayson(scripts) -> None:
    """Refuse an ``alwayson_scripts`` that is not an object or names a script not honoured here."""
    if scripts is None:
        return
    if not isinstance(scripts, dict):
        raise UserError("alwayson_scripts must be an object: script name -> {\"args\": [...]}",
                        field="alwayson_scripts")
    for name in scripts:
        if not isinstance(name, str) or name.strip().lower() not in ALWAYSON:
            raise UserError(f"alwayson_scripts: no always-on script called {str(name)[:100]!r} here; "
                            f"this server has {', '.join(ALWAYSON)} (see /sdapi/v1/scripts)",
                            field="alwayson_scripts")


def selected_script(name) -> str | None:
    """The honoured script ``script_name`` selects (lower case), None for none; unknown: UserError."""
    if name is None or (isinstance(name, str) and name.strip() in ("", "None", "none")):
        return None
    if not isinstance(name, str):
        raise UserError("script_name must be a script's name (see /sdapi/v1/scripts)", field="script_name")
    key = name.strip().lower()
    if key in _NOT_HONOURED:
        raise UserError(_NOT_HONOURED[key], field="script_name")
    if key not in SELECTABLE:
        raise UserError(f"script_name: no script called {name[:100]!r} here; this server has "
                        f"{XYZ_PLOT!r} (see /sdapi/v1/scripts)", field="script_name")
    return key


def _arg(label: str, value, **more) -> dict:
    return {"label": label, "value": value, "minimum": more.get("minimum"), "maximum": more.get("maximum"),
            "step": more.get("step"), "choices": more.get("choices")}


def _controlnet_args() -> list[dict]:
    unit = {"enabled": False, "module": "none", "model": "None", "weight": 1.0, "image": None,
            "resize_mode": "Crop and Resize", "processor_res": 512, "threshold_a": 100.0, "threshold_b": 200.0,
            "guidance_start": 0.0, "guidance_end": 1.0, "control_mode": "Balanced", "pixel_perfect": False}
    return [_arg(f"ControlNet Unit {i}", dict(unit)) for i in range(3)]


def _adetailer_args() -> list[dict]:
    unit = {"ad_model": "face_yolov8n.pt", "ad_prompt": "", "ad_negative_prompt": "", "ad_confidence": 0.3,
            "ad_mask_k_largest": 0, "ad_denoising_strength": 0.4, "ad_inpaint_only_masked_padding": 32,
            "ad_mask_blur": 4, "ad_use_inpaint_width_height": False, "ad_inpaint_width": 512,
            "ad_inpaint_height": 512, "ad_use_steps": False, "ad_steps": 28}
    return [_arg("Enable ADetailer", False), _arg("Skip img2img", False), _arg("1st", unit)]


def script_info(axis_names) -> list[dict]:
    """/sdapi/v1/script-info: each script with its arguments, once per tab, in A1111's shape.
    `axis_names(is_img2img)` gives the X/Y/Z plot's axis types in A1111's order."""
    out = []
    for img2img in (False, True):
        axes = axis_names(img2img)
        axis_args = []
        for a in "xyz":
            axis_args += [_arg(f"{a.upper()} type", axes[1 if a == "x" else 0], choices=axes),
                          _arg(f"{a.upper()} values", ""), _arg(f"{a.upper()} values (dropdown)", [])]
        xyz = axis_args + [_arg("Draw legend", True), _arg("Include Sub Images", False),
                           _arg("Include Sub Grids", False), _arg("Keep -1 for seeds", False),
                           _arg("Vary seeds for X", False), _arg("Vary seeds for Y", False),
                           _arg("Vary seeds for Z", False),
                           _arg("Grid margins (px)", 0, minimum=0, maximum=500, step=2),
                           _arg("Use text inputs instead of dropdowns", False)]
        out += [{"name": XYZ_PLOT, "is_alwayson": False, "is_img2img": img2img, "args": xyz},
                {"name": "controlnet m2m", "is_alwayson": False, "is_img2img": img2img, "args": []},
                {"name": "controlnet", "is_alwayson": True, "is_img2img": img2img, "args": _controlnet_args()},
                {"name": "adetailer", "is_alwayson": True, "is_img2img": img2img, "args": _adetailer_args()}]
    return out


__all__ = ["ALWAYSON", "SELECTABLE", "XYZ_PLOT", "check_alwayson", "script_info", "scripts_list",
           "selected_script"]
