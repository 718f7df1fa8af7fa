"""The ADetailer extension's routes (/adetailer/v1/...), for clients that check for it before
sending `alwayson_scripts.ADetailer`: its version, the schema of the unit fields this server
honours (request.face.face_fields_from_alwayson maps them onto the face detail pass) and the
detector names it accepts. Every face model name runs our face detail pass with its face
detector; hand and person models are not offered.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

ADETAILER_VERSION = "24.11.1"  # the ADetailer release whose API fields these are
AD_MODELS = ("face_yolov8n.pt", "face_yolov8s.pt", "mediapipe_face_full", "mediapipe_face_short",
             "mediapipe_face_mesh")


class ADetailerArgs(BaseModel):
    """One ADetailer unit as `alwayson_scripts.ADetailer.args` carries it (the fields honoured)."""
    model_config = ConfigDict(title="ADetailerArgs")
    ad_model: str = Field("face_yolov8n.pt", description="a face model name (/adetailer/v1/ad_model); "
                                                         "'None' turns the unit off")
    ad_prompt: str = Field("", description="face prompt; [SEP] separates one per face, [PROMPT] is the main one")
    ad_negative_prompt: str = ""
    ad_confidence: float = Field(0.3, ge=0, le=1)
    ad_mask_k_largest: int = Field(0, ge=0, description="at most this many faces, largest first; 0: all")
    ad_mask_blur: int = Field(4, ge=0)
    ad_denoising_strength: float = Field(0.4, ge=0, le=1)
    ad_inpaint_only_masked_padding: int = Field(32, ge=0)
    ad_use_inpaint_width_height: bool = False
    ad_inpaint_width: int = Field(512, ge=64)
    ad_inpaint_height: int = Field(512, ge=64)
    ad_use_steps: bool = False
    ad_steps: int = Field(28, ge=1)


def add_adetailer_routes(router: APIRouter) -> None:
    @router.get("/adetailer/v1/version", tags=["adetailer"], summary="The ADetailer API version served")
    def version() -> dict:
        return {"version": ADETAILER_VERSION}

    @router.get("/adetailer/v1/schema", tags=["adetailer"], summary="JSON schema of the ADetailer unit fields "
                                                                    "honoured (the face detail pass)")
    def schema() -> dict:
        return ADetailerArgs.model_json_schema()

    @router.get("/adetailer/v1/ad_model", tags=["adetailer"], summary="Detector names an ADetailer unit may use")
    def ad_model() -> dict:
        return {"ad_model": list(AD_MODELS)}


__all__ = ["ADETAILER_VERSION", "AD_MODELS", "ADetailerArgs", "add_adetailer_routes"]
