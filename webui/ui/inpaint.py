"""The inpaint tab: paint a mask over a picture (or upload one) and repaint that part; extend
the canvas to outpaint. The browser editor is for people; the named API endpoint `/inpaint`
takes the picture and the mask as two images, with A1111's parameter names."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from ..engine import tasks
from ..errors import UserError
from ..imaging.images import combine_masks, editor_mask, load_mask, load_upload, to_rgb
from ..request import MASK_PRESETS, MASKED_CONTENT
from ..i18n import t
from .controlnet_panel import controlnet_accordion, unit_fields
from . import character_panel
from .common import (GPU, PRIVATE, api_file, Controls, image_upload, prompt_row, results_panel, run_generation,
                     sampling_controls, sampling_fields, send_row, tab_controls, wire_send_to)
from .fields import handler
from .img2img import denoising_slider, fit_size, resize_mode_radio

# A translucent brush so the face stays visible under the stroke; any painted pixel is masked.
BRUSH = gr.Brush(default_size=40, colors=[("#ff3db8", 0.6)], color_mode="fixed")
BRUSH_RGBA = (0xFF, 0x3D, 0xB8, 153)  # the brush's colour at its opacity: a one-click mask looks painted
OUTPAINT_SIDES = ("left", "right", "top", "bottom")


def mask_layer(service, value, preset: str) -> tuple[dict, str]:
    """The editor with the mask `preset` finds in its picture added as a brush layer: painted
    in the brush's colour, so the brush and the eraser edit it like any stroke. Also a line
    saying what was found."""
    value = value or {}
    background = value.get("background")
    if background is None:
        raise gr.Error("Upload or paste a picture into the editor first")
    try:
        mask = service.find_mask(to_rgb(background), preset)
    except UserError as e:
        raise gr.Error(str(e)) from None
    layer = Image.new("RGBA", mask.size, BRUSH_RGBA)
    layer.putalpha(mask.point(lambda v: BRUSH_RGBA[3] if v >= 128 else 0))
    base = background.convert("RGBA") if isinstance(background, Image.Image) else to_rgb(background).convert("RGBA")
    layers = [x for x in (value.get("layers") or []) if x is not None] + [layer]
    composite = base
    for x in layers:
        composite = Image.alpha_composite(composite, x.convert("RGBA").resize(composite.size))
    share = 100 * sum(mask.point(lambda v: 1 if v >= 128 else 0).getdata()) / (mask.width * mask.height)
    note = f"{preset}: {share:.1f}% of the picture masked"
    return {"background": background, "layers": layers, "composite": composite}, note


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
            gr.Markdown(t("auto_mask"), elem_id="inpaint_auto_mask")
            with gr.Row(equal_height=True):
                auto_buttons = {preset: gr.Button(t(f"auto_mask_{preset}"), size="sm", min_width=60,
                                                  elem_id=f"inpaint_mask_{preset}") for preset in MASK_PRESETS}
            auto_note = gr.Markdown(elem_id="inpaint_auto_mask_note")
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
                    sides = {side: gr.Slider(0, 1024, value=0, step=8, label=t(f"outpaint_{side}"),
                                             elem_id=f"inpaint_outpaint_{side}")
                             for side in OUTPAINT_SIDES}
            characters = character_panel.build(service, "inpaint")  # below the picture
            s = sampling_controls("inpaint", limits)
            cn = controlnet_accordion("inpaint", service, note="controlnet_inpaint_note")
        with gr.Column(scale=1):
            gallery, info, state = results_panel("inpaint")
            send, selected = send_row("inpaint", gallery)
    c = tab_controls(prompt, negative, generate, s, gallery, info, state, send=send, selected=selected,
                     image=editor, controlnet=cn)

    settings = {"prompt": prompt, "negative_prompt": negative, **sampling_fields(s), "denoising_strength": denoising,
                "mask_blur": mask_blur, "inpainting_fill": fill, "inpaint_full_res": area,
                "inpaint_full_res_padding": padding, "inpainting_mask_invert": mask_mode, "resize_mode": resize_mode,
                **{f"outpaint_{side}": slider for side, slider in sides.items()},
                "sd_model_checkpoint": shared.checkpoint, "characters": characters, **cn}
    outputs = [gallery, info, state]

    def run(init, mask, values, request, progress):
        left, right, top, bottom = (int(values[f"outpaint_{side}"] or 0) for side in OUTPAINT_SIDES)
        fields = {n: v for n, v in unit_fields(values).items() if not n.startswith("outpaint_")}
        fields["sd_model_checkpoint"] = values["sd_model_checkpoint"] or None
        if any((left, right, top, bottom)):
            init, mask = tasks.outpaint(init, mask, left, right, top, bottom)
            if not fields["inpaint_full_res"]:
                fields["width"], fields["height"] = tasks.outpaint_size(
                    init.size, int(fields["width"]), int(fields["height"]), limits)
        fields.update(init_image=init, mask=mask)
        yield from run_generation(service, fields, "inpaint", request, progress)

    def inpaint(request, progress, init_image, mask=None, **values):
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
        yield from run(init, mask_img, values, request, progress)

    def inpaint_editor(request, progress, editor, mask_upload=None, **values):
        background = (editor or {}).get("background")
        if background is None:
            raise gr.Error("Upload or paste a picture into the editor first")
        try:
            init = to_rgb(background)
            mask_img = combine_masks(editor_mask(editor.get("layers"), init.size),
                                     load_mask(mask_upload, "mask", service.settings.limits))
            if mask_img is None and not any(values[f"outpaint_{side}"] for side in OUTPAINT_SIDES):
                raise UserError("Paint over the part of the picture to change (or upload a mask, or extend "
                                "the canvas under Outpaint)", field="mask")
        except UserError as e:
            raise gr.Error(str(e)) from None
        yield from run(init, mask_img, values, request, progress)

    # The browser's editor holds the picture and the painted mask as layers (a browser detail).
    c.fields = {"editor": editor, "mask_upload": mask_upload, **settings}
    event = handler(inpaint_editor, c.fields, required=["editor"])
    generate.click(event, inputs_kwargs=c.fields, outputs=outputs, **PRIVATE, **GPU)
    prompt.submit(event, inputs_kwargs=c.fields, outputs=outputs, **PRIVATE, **GPU)

    # The API endpoint takes the picture and the mask as two files (a file that is not a
    # picture gets our loader's message).
    api_fields = {"init_image": api_file("init_image"), "mask": api_file("mask"), **settings}
    gr.Button(visible=False).click(handler(inpaint, api_fields, required=["init_image"]), inputs_kwargs=api_fields,
                                   outputs=outputs, api_name="inpaint", **GPU)

    def size_from_image(value):
        # The upload event can arrive before the editor has split the picture into its
        # background; the composite is the same picture until anything is painted.
        value = value or {}
        bg = value.get("background") if value.get("background") is not None else value.get("composite")
        return fit_size(*bg.size, limits) if bg is not None else (gr.update(), gr.update())

    editor.upload(size_from_image, editor, [c.width, c.height], **PRIVATE)
    for preset, button in auto_buttons.items():
        button.click(lambda value, p=preset: mask_layer(service, value, p), editor, [editor, auto_note], **PRIVATE)
    wire_send_to([*shared.controls.values(), c], "inpaint", c, shared.tabs,
                 lambda path: {"background": path, "layers": [], "composite": path}, service.settings.models_dir)
    return c

