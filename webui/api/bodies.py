"""The REST API's request and response bodies (pydantic models) under A1111's field names.
Request bodies accept and ignore fields they do not know, as A1111 does, so clients written
for it keep working; the routes turn a body into Service fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Txt2ImgBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: str | None = None
    negative_prompt: str | None = None
    styles: list[str] | None = None
    seed: int | None = Field(None, description="-1 for random")
    subseed: int | None = None
    subseed_strength: float | None = None
    sampler_name: str | None = Field(None, description="e.g. 'DPM++ 2M'; old combined names ('DPM++ 2M Karras') work")
    sampler_index: str | None = Field(None, description="old name of sampler_name")
    scheduler: str | None = Field(None, description="schedule type: Automatic, Karras, Exponential, ...")
    batch_size: int | None = None
    n_iter: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    restore_faces: bool | None = None
    tiling: bool | None = None
    denoising_strength: float | None = None
    override_settings: dict[str, Any] | None = Field(
        None, description="options (as /sdapi/v1/options) for this request only: the checkpoint, VAE, "
                          "clip skip, saving format and folders; ignored keys are listed in info's warnings")
    override_settings_restore_afterwards: bool = Field(
        True, description="false: the override_settings stay set after this request (and are saved)")
    enable_hr: bool | None = None
    hr_scale: float | None = None
    hr_upscaler: str | None = None
    hr_second_pass_steps: int | None = None
    hr_resize_x: int | None = None
    hr_resize_y: int | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str | None = None
    hr_negative_prompt: str | None = None
    face_detail: bool | None = Field(None, description="face detail pass (also from ADetailer alwayson_scripts args)")
    clip_skip: int | None = None
    force_task_id: str | None = Field(None, description="job id to poll /progress with")
    send_images: bool = True
    save_images: bool = Field(False, description="also save into the outputs folder (A1111 API default: no)")
    alwayson_scripts: dict[str, Any] | None = Field(
        None, description="ADetailer args; controlnet.args as the A1111 ControlNet extension takes them")
    ip_adapters: list[dict[str, Any]] | None = Field(
        None, description="IP-Adapter reference images: [{model, image (base64), weight}]")
    regions: dict[str, Any] | None = Field(
        None, description="split into columns or rows: {mode: Columns|Rows, ratios: \"1,1\"}; the region prompts are "
                          "the prompt's parts separated by BREAK, the text before ADDCOMM goes into every region")
    regional_prompter: dict[str, Any] | None = Field(None, description="the same as regions")
    infotext: str | None = Field(None, description="A1111 parameters text: fills the fields it names that the "
                                 "body does not set (never the model)")
    characters: list[str] | None = Field(
        None, description="saved character names: their trigger words, LoRAs and reference images are added")


class Img2ImgBody(Txt2ImgBody):
    init_images: list[str] | None = Field(None, description="base64 images (raw or data: URL); the first is used")
    mask: str | None = Field(None, description="base64 mask, white = repaint; given -> inpainting")
    mask_blur: int | None = None
    inpainting_fill: int | None = Field(None, description="0 fill, 1 original, 2 latent noise, 3 latent nothing")
    inpaint_full_res: bool | None = Field(None, description="true: inpaint only the masked area")
    inpaint_full_res_padding: int | None = None
    inpainting_mask_invert: int | None = Field(None, description="1: repaint what is NOT masked")
    mask_preset: str | None = Field(None, description="face, person, background or hands: the mask is found in "
                                    "the picture (united with `mask` when given); given -> inpainting")
    resize_mode: int | None = Field(None, description="0 just resize, 1 crop and resize, 2 resize and fill")
    include_init_images: bool | None = Field(None, description="true: `parameters` echoes init_images and mask")


class ImageResponse(BaseModel):
    images: list[str] = Field(description="base64 PNGs carrying the A1111 `parameters` text chunk")
    parameters: dict[str, Any] = Field(description="the request, echoed")
    info: str = Field(description="JSON string: seeds, infotexts and the rest A1111 returns")


class PngInfoBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    image: str = Field(description="base64 image (raw or data: URL): PNG, JPEG or WebP")


class PngInfoResponse(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]
    fields: dict[str, Any] = Field(default_factory=dict, description="the parameters as txt2img request fields")


class JobRef(BaseModel):
    model_config = ConfigDict(extra="allow")
    id_task: str | None = None
    session_hash: str | None = None


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: dict[str, Any]
    current_image: str | None = None
    textinfo: str | None = None
    current_task: str | None = None


class SDModel(BaseModel):
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None
