""""Pose from photo" in the ControlNet accordion: upload a photo, see the skeleton of the person
in it, save it to the pose library under a name; the units' pose lists then offer it."""

from __future__ import annotations

import gradio as gr

from ..errors import UserError
from ..i18n import t
from ..imaging import poses
from .events import PRIVATE


def pose_from_photo(tab: str, service, pose_lists: list) -> None:
    """The photo upload, preview and save button; `pose_lists`: the units' pose dropdowns."""
    with gr.Accordion(t("pose_photo_title"), open=False, elem_id=f"{tab}_pose_photo"):
        found = gr.State(None)
        with gr.Row():
            photo = gr.Image(type="pil", label=t("pose_photo_image"), sources=["upload", "clipboard"], height=200,
                             elem_id=f"{tab}_pose_photo_image")
            preview = gr.Image(label=t("controlnet_pose_preview"), interactive=False, height=200)
        with gr.Row():
            name = gr.Textbox(label=t("pose_photo_name"), max_lines=1, scale=3, elem_id=f"{tab}_pose_photo_name")
            save = gr.Button(t("pose_photo_save"), scale=1, elem_id=f"{tab}_pose_photo_save")
        status = gr.Markdown()

        def detect(img):
            if img is None:
                return None, None, ""
            try:
                pose, shown = service.pose_from_photo(img)
            except UserError as e:
                return None, None, str(e)
            return pose, shown, ""

        def keep(pose, label):
            if pose is None:
                raise gr.Error("Upload a photo of a person first")
            try:
                key = service.save_pose(label, pose)
            except UserError as e:
                raise gr.Error(str(e)) from None
            keys = [""] + list(poses.load_poses(service.poses_dir)[0])
            return (f"Saved as `{key}`.", *[gr.Dropdown(choices=keys) for _ in pose_lists])

        photo.change(detect, photo, [found, preview, status], **PRIVATE)
        save.click(keep, [found, name], [status, *pose_lists], **PRIVATE)
