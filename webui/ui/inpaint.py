"""The inpaint tab: paint a mask over a picture (or upload one) and repaint that part; extend
the canvas to outpaint. The browser editor is for people; the named API endpoint `/inpaint`
takes the picture and the mask as two images, with A1111's parameter names."""

from __future__ import annotations

import gradio as gr

from ..engine import tasks
from ..errors import UserError
from ..imaging.images import combine_masks, editor_mask, load_mask, load_upload, to_rgb
from ..request import MASKED_CONTENT
from ..i18n import t
from .controlnet_panel import controlnet_accordion, with_controlnet
from .common import (GPU, PRIVATE, api_file, Controls, image_upload, prompt_row, results_panel, run_generation,
                     sampling_controls, send_row, tab_controls, wire_send_to)
from .img2img import denoising_slider, fit_size, resize_mode_radio

# A translucent brush so the face stays visible under the stroke; any painted pixel is masked.
BRUSH = gr.Brush(default_size=40, colors=[("#ff3db8", 0.6)], color_mode="fixed")


def build(service, shared) -> Controls:
    limits = service.settings.limits
    prompt, negative, generate = prompt_row("inpaint", service)
    with gr.Row():
        with gr.Column(scale=1):
            editor = gr.ImageEditor(
                label=t("inpaint_editor"), type="pil", image_mode="RGBA", format="png",
                sources=["upload", "clipboard"], brush=BRUSH, eraser=gr.Eraser(default_size=40), layers=False,
                transforms=(), canvas_size=(768, 768), height=600, elem_id="inpaint_editor",
                buttons=["fullscreen"])
            with gr.Accordion(t("inpaint_mask_upload"), open=False):
                mask_upload = image_upload(t("mask"), height=240, elem_id="inpaint_mask_upload")
            denoising = denoising_slider("inpaint")
            with gr.Row():
                mask_blur = gr.Slider(0, 64, value=4, step=1, label=t("mask_blur"), elem_id="inpaint_mask_blur")
                padding = gr.Slider(0, 256, value=32, step=4, label=t("only_masked_padding"),
                                    elem_id="inpaint_padding")
            mask_mode = gr.Radio([("Inpaint masked", 0), ("Inpaint not masked", 1)], value=0, label=t("mask_mode"),
                                 elem_id="inpaint_mask_mode")
            fill = gr.Radio([(name, i) for i, name in enumerate(MASKED_CONTENT)], value=1, label=t("masked_content"),
                            elem_id="inpaint_fill")
            area = gr.Radio([(name, i) for i, name in enumerate(tasks.INPAINT_AREAS)], value=0,
                            label=t("inpaint_area"), elem_id="inpaint_area",
                            info=t("inpaint_area_info"))
            resize_mode = resize_mode_radio("inpaint")
            with gr.Accordion(t("outpaint_title"), open=False, elem_id="inpaint_outpaint"):
                gr.Markdown(t("outpaint_help"))
                with gr.Row():
                    sides = [gr.Slider(0, 1024, value=0, step=8, label=t(f"outpaint_{side}"),
                                       elem_id=f"inpaint_outpaint_{side}")
                             for side in ("left", "right", "top", "bottom")]
            s = sampling_controls("inpaint", limits)
            cn = controlnet_accordion("inpaint", service, note="controlnet_inpaint_note")
        with gr.Column(scale=1):
            gallery, info, state = results_panel("inpaint")
            send, selected = send_row("inpaint", gallery)
    c = tab_controls(prompt, negative, generate, s, gallery, info, state, send=send, selected=selected,
                     image=editor, controlnet=cn)

    def run(init, mask, fields, outpaint, request, progress):
        left, right, top, bottom = (int(v or 0) for v in outpaint)
        if any((left, right, top, bottom)):
            init, mask = tasks.outpaint(init, mask, left, right, top, bottom)
            if not fields["inpaint_full_res"]:
                fields["width"], fields["height"] = tasks.outpaint_size(
                    init.size, int(fields["width"]), int(fields["height"]), limits)
        fields.update(init_image=init, mask=mask)
        yield from run_generation(service, fields, "inpaint", request, progress)

    def inpaint(init_image: str, mask: str | None = None, prompt: str = "", negative_prompt: str = "",
                steps: int = 20, cfg_scale: float = 7.0, seed: int = -1, width: int = 512, height: int = 512,
                sampler_name: str = "DPM++ 2M", scheduler: str = "Automatic", batch_size: int = 1, n_iter: int = 1,
                denoising_strength: float = 0.75, mask_blur: int = 4, inpainting_fill: int = 1,
                inpaint_full_res: int = 0, inpaint_full_res_padding: int = 32, inpainting_mask_invert: int = 0,
                resize_mode: int = 0, outpaint_left: int = 0, outpaint_right: int = 0, outpaint_top: int = 0,
                outpaint_bottom: int = 0, sd_model_checkpoint: str | None = None,
                controlnet_units: list | None = None, ip_adapters: list | None = None, request: gr.Request = None,
                progress=gr.Progress()):
        """Repaint the white part of `mask` (same size as init_image) guided by the prompt,
        optionally with ControlNet units and an IP-Adapter reference (the `controlnet_<n>_<field>`
        and `ip_adapter_*` parameters; with "only masked" the control map is cropped like the picture).
        inpainting_fill: 0 fill, 1 original, 2 latent noise, 3 latent nothing; inpaint_full_res:
        1 = only masked; inpainting_mask_invert: 1 = repaint the black part. outpaint_*: pixels
        to add on each side (the new area is repainted). The result has the input's size and
        the input's exact pixels outside the blurred mask."""
        try:
            init = load_upload(init_image, "init_images", service.settings.limits)
            mask_img = load_mask(mask, "mask", service.settings.limits)
        except UserError as e:
            raise gr.Error(str(e)) from None
        fields = _fields(prompt, negative_prompt, steps, cfg_scale, seed, width, height, sampler_name, scheduler,
                         batch_size, n_iter, denoising_strength, mask_blur, inpainting_fill, inpaint_full_res,
                         inpaint_full_res_padding, inpainting_mask_invert, resize_mode, sd_model_checkpoint,
                         controlnet_units, ip_adapters)
        yield from run(init, mask_img, fields, (outpaint_left, outpaint_right, outpaint_top, outpaint_bottom),
                   request, progress)

    def inpaint_editor(editor_value, mask_file, prompt, negative_prompt, steps, cfg_scale, seed, width, height,
                       sampler_name, scheduler, batch_size, n_iter, denoising_strength, mask_blur, inpainting_fill,
                       inpaint_full_res, inpaint_full_res_padding, inpainting_mask_invert, resize_mode,
                       left, right, top, bottom, sd_model_checkpoint=None, controlnet_units=None,
                       ip_adapters=None, request: gr.Request = None, progress=gr.Progress()):
        background = (editor_value or {}).get("background")
        if background is None:
            raise gr.Error("Upload or paste a picture into the editor first")
        try:
            init = to_rgb(background)
            mask_img = combine_masks(editor_mask(editor_value.get("layers"), init.size), load_mask(mask_file, "mask", service.settings.limits))
            if mask_img is None and not any((left, right, top, bottom)):
                raise UserError("Paint over the part of the picture to change (or upload a mask, or extend "
                                "the canvas under Outpaint)", field="mask")
        except UserError as e:
            raise gr.Error(str(e)) from None
        fields = _fields(prompt, negative_prompt, steps, cfg_scale, seed, width, height, sampler_name, scheduler,
                         batch_size, n_iter, denoising_strength, mask_blur, inpainting_fill, inpaint_full_res,
                         inpaint_full_res_padding, inpainting_mask_invert, resize_mode, sd_model_checkpoint,
                         controlnet_units, ip_adapters)
        yield from run(init, mask_img, fields, (left, right, top, bottom), request, progress)

    settings = [prompt, negative, c.steps, c.cfg_scale, c.seed, c.width, c.height, c.sampler_name, c.scheduler,
                c.batch_size, c.n_iter, denoising, mask_blur, fill, area, padding, mask_mode, resize_mode, *sides]
    outputs = [gallery, info, state]
    inpaint_editor = with_controlnet(inpaint_editor, list(cn))
    inpaint = with_controlnet(inpaint, list(cn))
    editor_inputs = [editor, mask_upload, *settings, shared.checkpoint, *cn.values()]
    generate.click(inpaint_editor, editor_inputs, outputs, **PRIVATE, **GPU)
    prompt.submit(inpaint_editor, editor_inputs, outputs, **PRIVATE, **GPU)

    # The API endpoint takes the picture and the mask as two files (the editor's layered value
    # is a browser detail; a file that is not a picture gets our loader's message).
    api_image = api_file("init_image")
    api_mask = api_file("mask")
    api_trigger = gr.Button(visible=False)
    api_trigger.click(inpaint, [api_image, api_mask, *settings, shared.checkpoint, *cn.values()], outputs,
                      api_name="inpaint", **GPU)

    def size_from_image(value):
        # The upload event can arrive before the editor has split the picture into its
        # background; the composite is the same picture until anything is painted.
        value = value or {}
        bg = value.get("background") if value.get("background") is not None else value.get("composite")
        return fit_size(*bg.size, limits) if bg is not None else (gr.update(), gr.update())

    editor.upload(size_from_image, editor, [c.width, c.height], **PRIVATE)
    wire_send_to([*shared.controls.values(), c], "inpaint", c, shared.tabs,
                 lambda path: {"background": path, "layers": [], "composite": path}, service.settings.models_dir)
    return c


def _fields(prompt, negative_prompt, steps, cfg_scale, seed, width, height, sampler_name, scheduler, batch_size,
            n_iter, denoising_strength, mask_blur, inpainting_fill, inpaint_full_res, inpaint_full_res_padding,
            inpainting_mask_invert, resize_mode, sd_model_checkpoint, controlnet_units=None,
            ip_adapters=None) -> dict:
    return dict(prompt=prompt, negative_prompt=negative_prompt, steps=steps, cfg_scale=cfg_scale, seed=seed,
                width=width, height=height, sampler_name=sampler_name, scheduler=scheduler, batch_size=batch_size,
                n_iter=n_iter, denoising_strength=denoising_strength, mask_blur=mask_blur,
                inpainting_fill=inpainting_fill, inpaint_full_res=inpaint_full_res,
                inpaint_full_res_padding=inpaint_full_res_padding, inpainting_mask_invert=inpainting_mask_invert,
                resize_mode=resize_mode, sd_model_checkpoint=sd_model_checkpoint or None,
                controlnet_units=controlnet_units or [], ip_adapters=ip_adapters or [])
