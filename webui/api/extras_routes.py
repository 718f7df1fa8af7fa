"""A1111's tool routes under /sdapi/v1: extras (upscale one image or a batch), the ESRGAN model
listing, interrogate (a BLIP caption) and freeing / reloading the checkpoint. Each calls Service
methods; the GPU work takes the caller's turn on the GPU queue.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from .access import user_errors
from ..errors import UserError
from ..imaging.images import decode_base64_image
from ..metadata.image_meta import png_bytes_with_infotext
from ..models.upscalers import BUILTIN_UPSCALERS, list_upscalers, resolve_model_file
from ..serving.identity import Caller
from ..serving.postprocess import check_options, html_info, postprocess

MAX_BATCH_IMAGES = 16


class ExtrasBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    resize_mode: int = Field(0, description="0: scale by upscaling_resize; 1: to upscaling_resize_w x _h")
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(0, description="accepted; no GFPGAN here (a warning in html_info)")
    codeformer_visibility: float = Field(0, description="accepted; no CodeFormer here (a warning in html_info)")
    codeformer_weight: float = 0
    upscaling_resize: float = 2
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str | None = Field("None", description="an /sdapi/v1/upscalers name; None: no upscale")
    upscaler_2: str | None = "None"
    extras_upscaler_2_visibility: float = 0
    upscale_first: bool = False


class ExtraSingleBody(ExtrasBody):
    image: str = Field("", description="base64 image (raw or data: URL)")


class FileData(BaseModel):
    model_config = ConfigDict(extra="allow")
    data: str = Field(description="base64 image (raw or data: URL)")
    name: str = ""


class ExtraBatchBody(ExtrasBody):
    imageList: list[FileData] = Field(default_factory=list)  # noqa: N815 - A1111's name


class InterrogateBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    image: str = Field("", description="base64 image (raw or data: URL)")
    model: str = Field("clip", description="clip (a BLIP model in models/BLIP); deepdanbooru is not available")


def _b64(image, infotext: str) -> str:
    return base64.b64encode(png_bytes_with_infotext(image, infotext or None)).decode("ascii")


def _opts(body: ExtrasBody) -> dict[str, Any]:
    return body.model_dump(exclude={"image", "imageList"})


def _scale(name: str) -> int:
    m = re.search(r"(\d)x|x(\d)", name, re.IGNORECASE)
    return int(m.group(1) or m.group(2)) if m else 4


def add_extras_routes(router: APIRouter, service, caller) -> None:
    limits = service.settings.limits

    @router.post("/extra-single-image", summary="Upscale one image (A1111 extras); html_info says what was done")
    @user_errors
    def extra_single_image(body: ExtraSingleBody, who: Caller = Depends(caller)) -> dict:
        if not body.image:
            raise UserError("image must hold a base64 image", field="image")
        opts = check_options(service, _opts(body))
        image = decode_base64_image(body.image, "image", limits)
        result = postprocess(service, image, opts, who)
        return {"html_info": html_info([result]), "image": _b64(result.image, result.infotext)}

    @router.post("/extra-batch-images", summary="Upscale several images (A1111 extras)")
    @user_errors
    def extra_batch_images(body: ExtraBatchBody, who: Caller = Depends(caller)) -> dict:
        if not body.imageList:
            raise UserError("imageList must hold at least one {data, name} image", field="imageList")
        if len(body.imageList) > MAX_BATCH_IMAGES:
            raise UserError(f"imageList holds at most {MAX_BATCH_IMAGES} images", field="imageList")
        opts = check_options(service, _opts(body))
        images = [decode_base64_image(f.data, f"imageList[{i}].data", limits) for i, f in enumerate(body.imageList)]
        results = [postprocess(service, img, opts, who) for img in images]
        return {"html_info": html_info(results), "images": [_b64(r.image, r.infotext) for r in results]}

    @router.get("/realesrgan-models", summary="ESRGAN-family upscaler files in models/ESRGAN")
    def realesrgan_models() -> list[dict]:
        names = [n for n in list_upscalers(service.settings.models_dir, include_latent=False)
                 if n not in BUILTIN_UPSCALERS]
        return [{"name": n, "path": str(resolve_model_file(n, service.settings.models_dir)), "scale": _scale(n)}
                for n in names]

    @router.post("/interrogate", summary="A caption of an image (model 'clip': a BLIP model in models/BLIP)")
    @user_errors
    def interrogate(body: InterrogateBody, who: Caller = Depends(caller)) -> dict:
        if not body.image:
            raise UserError("image must hold a base64 image", field="image")
        image = decode_base64_image(body.image, "image", limits)
        return {"caption": service.caption(image, body.model, who)}

    @router.post("/unload-checkpoint", summary="Free the loaded checkpoint; the next request loads it again")
    @user_errors
    def unload_checkpoint(who: Caller = Depends(caller)):
        service.unload_checkpoint(who)
        return None

    @router.post("/reload-checkpoint", summary="Load the selected checkpoint (after unload-checkpoint)")
    @user_errors
    def reload_checkpoint(who: Caller = Depends(caller)):
        service.reload_checkpoint(who)
        return None


__all__ = ["add_extras_routes"]
