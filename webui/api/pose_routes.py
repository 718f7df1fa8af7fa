"""REST route for the pose library: a photo in, the pose of the person in it out (pose-library
JSON and a skeleton preview), saved to the library when a name is given. MediaPipe works on the
CPU, so this does not wait in the GPU queue.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from .access import user_errors
from ..imaging.images import decode_base64_image


class PoseFromPhotoBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(description="base64 photo (raw or data: URL) of one person")
    name: str = Field("", description="save the pose to the library under this name (letters, digits, "
                                      "spaces, '_' or '-'); empty: only detect")


class PoseFromPhotoResponse(BaseModel):
    pose: dict[str, Any]  # name, description, aspect, keypoints: 18 [x, y] in 0..1 or null
    key: str | None = None  # the saved pose's library key, for a ControlNet unit's "pose"
    preview: str  # base64 PNG of the skeleton


def add_pose_routes(router: APIRouter, service) -> None:
    @router.post("/pose-from-photo", response_model=PoseFromPhotoResponse,
                 summary="The OpenPose body keypoints of the person in a photo; saved to the pose library "
                         "when `name` is given")
    @user_errors
    def pose_from_photo(body: PoseFromPhotoBody):
        photo = decode_base64_image(body.image, "image", service.settings.limits)
        pose, preview = service.pose_from_photo(photo, body.name)
        key = service.save_pose(body.name, pose) if body.name.strip() else None
        buf = io.BytesIO()
        preview.save(buf, format="PNG")
        return PoseFromPhotoResponse(pose=pose, key=key, preview=base64.b64encode(buf.getvalue()).decode())
