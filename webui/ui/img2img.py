"""The img2img tab: a picture plus a prompt. Its Generate event is the named API endpoint
`/img2img`, whose parameter names are the A1111 API names (init_image, denoising_strength,
resize_mode, plus the txt2img ones): the keys of the tab's field table (ui/fields.py)."""

from __future__ import annotations

import gradio as gr

from ..errors import UserError
from ..imaging.images import load_upload
from ..request import RESIZE_MODES
from ..i18n import t
from .controlnet_panel import controlnet_accordion, unit_fields
from . import character_panel
from .common import (GPU, PRIVATE, api_file, Controls, image_upload, prompt_row, results_panel,
                     sampling_controls, sampling_fields, send_row, tab_controls, wire_send_to)
from .fields import handler
from . import xyz_panel


def resize_mode_radio(tab: str) -> gr.Radio:
    # Values are the A1111 API's integers, labels its UI names.
    return gr.Radio([(name, i) for i, name in enumerate(RESIZE_MODES)], value=0, label=t("resize_mode"),
                    elem_id=f"{tab}_resize_mode")


def denoising_slider(tab: str, value: float = 0.75) -> gr.Slider:
    return gr.Slider(0.0, 1.0, value=value, step=0.01, label=t("denoising_strength"), elem_id=f"{tab}_denoising",
                     info=t("denoising_strength_info"))


def build(service, shared) -> Controls:
    limits = service.settings.limits
    prompt, negative, generate = prompt_row("img2img", service)
    with gr.Row():
        with gr.Column(scale=1):
            image = image_upload(t("img2img_image"), height=420, elem_id="img2img_image")
            resize_mode = resize_mode_radio("img2img")
            denoising = denoising_slider("img2img")
            characters = character_panel.build(service, "img2img")  # below the picture
            s = sampling_controls("img2img", limits)
            cn = controlnet_accordion("img2img", service)
            xyz = xyz_panel.xyz_controls("img2img")
        with gr.Column(scale=1):
            gallery, info, state = results_panel("img2img")
            send, selected = send_row("img2img", gallery)
    c = tab_controls(prompt, negative, generate, s, gallery, info, state, send=send, selected=selected,
                     image=image, controlnet=cn)

    settings = {"prompt": prompt, "negative_prompt": negative, **sampling_fields(s), "denoising_strength": denoising,
                "resize_mode": resize_mode, "sd_model_checkpoint": shared.checkpoint, "characters": characters, **cn, **xyz}
    c.fields = {"init_image": image, **settings}

    def img2img(request, progress, init_image, **values):
        """Repaint a picture guided by a prompt, optionally with ControlNet units and an
        IP-Adapter reference (the `controlnet_<n>_<field>` and `ip_adapter_*` parameters).
        init_image: the picture (16-bit, CMYK and animated files are converted to 8-bit RGB
        from the first frame; transparency is flattened onto white). Returns the images (PNG
        with A1111 metadata) and the first infotext."""
        try:
            init = load_upload(init_image, "init_images", service.settings.limits)
        except UserError as e:
            raise gr.Error(str(e)) from None
        fields = {"init_image": init, **unit_fields(values),
                  "sd_model_checkpoint": values["sd_model_checkpoint"] or None}
        yield from xyz_panel.run(service, fields, "img2img", request, progress)

    outputs = [gallery, info, state]
    # The API endpoint takes the picture as a file, so a non-picture gets our message. It is
    # registered first: Gradio names the private events after the same function too.
    api_fields = {"init_image": api_file("init_image"), **settings}
    gr.Button(visible=False).click(handler(img2img, api_fields, required=["init_image"]), inputs_kwargs=api_fields,
                                   outputs=outputs, api_name="img2img", **GPU)
    event = handler(img2img, c.fields, required=["init_image"])
    generate.click(event, inputs_kwargs=c.fields, outputs=outputs, **PRIVATE, **GPU)
    prompt.submit(event, inputs_kwargs=c.fields, outputs=outputs, **PRIVATE, **GPU)

    # A new picture sets the size to it (rounded to multiples of 8, within the limits).
    def size_from_image(path):
        if not path:
            return gr.update(), gr.update()
        try:
            w, h = load_upload(path, "init_images", service.settings.limits).size
        except UserError:
            return gr.update(), gr.update()
        return fit_size(w, h, limits)

    image.upload(size_from_image, image, [c.width, c.height], **PRIVATE)
    wire_send_to([*shared.controls.values(), c], "img2img", c, shared.tabs, lambda path: path,
                 service.settings.models_dir)
    return c


def fit_size(w: int, h: int, limits) -> tuple[int, int]:
    """A working size for a w x h picture: its shape, multiples of 8, within the limits."""
    scale = min(1.0, limits.max_width / w, limits.max_height / h, (limits.max_pixels / (w * h)) ** 0.5)
    return max(64, int(w * scale) // 8 * 8), max(64, int(h * scale) // 8 * 8)
