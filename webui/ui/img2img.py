"""The img2img tab: a picture plus a prompt. Its Generate event is the named API endpoint
`/img2img`, whose parameter names are the A1111 API names (init_image, denoising_strength,
resize_mode, plus the txt2img ones)."""

from __future__ import annotations

import gradio as gr

from ..errors import UserError
from ..imaging.images import load_upload
from ..request import RESIZE_MODES
from ..i18n import t
from .controlnet_panel import controlnet_accordion, with_controlnet
from .common import (GPU, PRIVATE, api_file, Controls, image_upload, prompt_row, results_panel, run_generation,
                     sampling_controls, send_row, tab_controls, wire_send_to)


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
            s = sampling_controls("img2img", limits)
            cn = controlnet_accordion("img2img", service)
        with gr.Column(scale=1):
            gallery, info, state = results_panel("img2img")
            send, selected = send_row("img2img", gallery)
    c = tab_controls(prompt, negative, generate, s, gallery, info, state, send=send, selected=selected,
                     image=image, controlnet=cn)

    def img2img(init_image: str, prompt: str = "", negative_prompt: str = "", steps: int = 20, cfg_scale: float = 7.0,
                seed: int = -1, width: int = 512, height: int = 512, sampler_name: str = "DPM++ 2M",
                scheduler: str = "Automatic", batch_size: int = 1, n_iter: int = 1, denoising_strength: float = 0.75,
                resize_mode: int = 0, sd_model_checkpoint: str | None = None,
                controlnet_units: list | None = None, ip_adapters: list | None = None,
                request: gr.Request = None, progress=gr.Progress()):
        """Repaint a picture guided by a prompt, optionally with ControlNet units and an
        IP-Adapter reference (the `controlnet_<n>_<field>` and `ip_adapter_*` parameters).
        init_image: the picture (16-bit, CMYK and animated files are converted to 8-bit RGB
        from the first frame; transparency is flattened onto white). Returns the images (PNG
        with A1111 metadata) and the first infotext."""
        try:
            init = load_upload(init_image, "init_images", service.settings.limits)
        except UserError as e:
            raise gr.Error(str(e)) from None
        fields = dict(init_image=init, prompt=prompt, negative_prompt=negative_prompt, steps=steps,
                      cfg_scale=cfg_scale, seed=seed, width=width, height=height, sampler_name=sampler_name,
                      scheduler=scheduler, batch_size=batch_size, n_iter=n_iter,
                      denoising_strength=denoising_strength, resize_mode=resize_mode,
                      sd_model_checkpoint=sd_model_checkpoint or None, controlnet_units=controlnet_units or [],
                      ip_adapters=ip_adapters or [])
        yield from run_generation(service, fields, "img2img", request, progress)

    settings = [prompt, negative, c.steps, c.cfg_scale, c.seed, c.width, c.height, c.sampler_name, c.scheduler,
                c.batch_size, c.n_iter, denoising, resize_mode, shared.checkpoint, *cn.values()]
    img2img = with_controlnet(img2img, list(cn))
    outputs = [gallery, info, state]
    # The API endpoint takes the picture as a file, so a non-picture gets our message. It is
    # registered first: Gradio names the private events after the same function too.
    api_image = api_file("init_image")
    gr.Button(visible=False).click(img2img, [api_image, *settings], outputs, api_name="img2img", **GPU)
    generate.click(img2img, [image, *settings], outputs, **PRIVATE, **GPU)
    prompt.submit(img2img, [image, *settings], outputs, **PRIVATE, **GPU)

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
