"""The sd-webui-controlnet extension's routes (/controlnet/...), as its API documents them, so
clients that read ControlNet models and preprocessors from it work here: version, model_list,
module_list, control_types, settings, detect (a preprocessor's map of images, through
Service.preprocess on the GPU queue) and render_openpose_json (OpenPose JSON -> maps).
"""

from __future__ import annotations

import base64
import io
from typing import Any

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field

from .access import user_errors
from ..errors import UserError
from ..imaging.images import decode_base64_image
from ..imaging.openpose_json import render_openpose_json
from ..request.controlnet import MAX_UNITS, MODULES
from ..serving.identity import Caller
from ..validate import number

CONTROLNET_API_VERSION = 2
MAX_DETECT_IMAGES = 8
_RES = {"name": "Resolution", "value": 512, "min": 64, "max": 2048, "step": 8}
_SLIDERS = {
    "none": [],
    "canny": [_RES, {"name": "Low Threshold", "value": 100, "min": 1, "max": 255, "step": 1},
              {"name": "High Threshold", "value": 200, "min": 1, "max": 255, "step": 1}],
}
# Control type -> (its preprocessors, the word its models' names hold, the default preprocessor).
CONTROL_TYPES = {
    "Canny": (("canny",), "canny", "canny"),
    "OpenPose": (("openpose", "openpose_hand", "openpose_face", "openpose_full"), "openpose", "openpose_full"),
    "Lineart": (("lineart", "lineart_coarse"), "lineart", "lineart"),
    "Depth": (("depth",), "depth", "depth"),
}


class DetectBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    controlnet_module: str = Field("none", description="a preprocessor from /controlnet/module_list")
    controlnet_input_images: list[str] = Field(default_factory=list, description="base64 images")
    controlnet_images: list[str] | None = Field(None, description="older name of controlnet_input_images")
    controlnet_processor_res: float = 512
    controlnet_threshold_a: float = -1
    controlnet_threshold_b: float = -1


def _b64(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _threshold(value: float, default: float, key: str) -> float:
    return default if value in (-1, None) else number(value, key, key, 0, 1024)


def add_controlnet_routes(router: APIRouter, service, caller) -> None:
    limits = service.settings.limits

    @router.get("/controlnet/version", tags=["controlnet"], summary="The ControlNet API version")
    def version() -> dict:
        return {"version": CONTROLNET_API_VERSION}

    @router.get("/controlnet/model_list", tags=["controlnet"], summary="ControlNet models in models/ControlNet")
    def model_list(update: bool = True) -> dict:  # the folder is read on every call anyway
        return {"model_list": service.controlnet_models()}

    @router.get("/controlnet/module_list", tags=["controlnet"], summary="Preprocessors and their sliders")
    def module_list(alias_names: bool = False) -> dict:  # our names are the extension's own names
        detail = {m: {"model_free": False, "sliders": _SLIDERS.get(m, [_RES])} for m in MODULES}
        return {"module_list": list(MODULES), "module_detail": detail}

    @router.get("/controlnet/control_types", tags=["controlnet"], summary="Control types: their preprocessors "
                                                                        "and models")
    def control_types() -> dict:
        models = service.controlnet_models()
        out: dict[str, Any] = {"All": {"module_list": list(MODULES), "model_list": ["None", *models],
                                       "default_option": "none", "default_model": "None"}}
        for name, (modules, word, default) in CONTROL_TYPES.items():
            mine = [m for m in models if word in m.lower()]
            out[name] = {"module_list": ["none", *modules], "model_list": ["None", *mine],
                         "default_option": default, "default_model": mine[0] if mine else "None"}
        return {"control_types": out}

    @router.get("/controlnet/settings", tags=["controlnet"], summary="ControlNet settings clients read")
    def settings() -> dict:
        return {"control_net_unit_count": MAX_UNITS, "control_net_max_models_num": MAX_UNITS}

    @router.post("/controlnet/detect", tags=["controlnet"], summary="Run a preprocessor on images")
    @user_errors
    def detect(body: DetectBody, who: Caller = Depends(caller)) -> dict:
        sources = body.controlnet_input_images or body.controlnet_images or []
        if not sources:
            raise UserError("controlnet_input_images must hold at least one base64 image",
                            field="controlnet_input_images")
        if len(sources) > MAX_DETECT_IMAGES:
            raise UserError(f"controlnet_input_images holds at most {MAX_DETECT_IMAGES} images",
                            field="controlnet_input_images")
        res = number(body.controlnet_processor_res, "controlnet_processor_res", "controlnet_processor_res", 64, 2048,
                     integer=True) if body.controlnet_processor_res != -1 else 512
        a = _threshold(body.controlnet_threshold_a, 100, "controlnet_threshold_a")
        b = _threshold(body.controlnet_threshold_b, 200, "controlnet_threshold_b")
        images = [decode_base64_image(s, f"controlnet_input_images[{i}]", limits).convert("RGB")
                  for i, s in enumerate(sources)]
        maps = [service.preprocess(img, body.controlnet_module, res, a, b, who) for img in images]
        return {"images": [_b64(m) for m in maps], "info": "Success"}

    @router.post("/controlnet/render_openpose_json", tags=["controlnet"],
                 summary="Draw OpenPose JSON poses as OpenPose maps")
    @user_errors
    def render_openpose(poses: list[dict[str, Any]] = Body(...)) -> dict:
        if len(poses) > MAX_DETECT_IMAGES:
            raise UserError(f"at most {MAX_DETECT_IMAGES} poses at a time", field="body")
        return {"images": [_b64(render_openpose_json(p, i)) for i, p in enumerate(poses)], "info": "Success"}


__all__ = ["CONTROL_TYPES", "CONTROLNET_API_VERSION", "add_controlnet_routes"]
