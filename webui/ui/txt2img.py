"""The txt2img tab. Its Generate event is also the named API endpoint `/txt2img`, whose
parameter names are the A1111 API field names."""

from __future__ import annotations

import gradio as gr
from ..i18n import t

from . import lora_browser, presets_panel
from .controlnet_panel import controlnet_accordion, with_controlnet
from .common import (GPU, Controls, face_detail_controls, hires_controls, prompt_row, results_panel, run_generation,
                     sampling_controls, send_row, tab_controls)


def build(service, shared) -> Controls:
    checkpoint = shared.checkpoint
    limits = service.settings.limits
    prompt, negative, generate = prompt_row("txt2img", service)
    extras = presets_panel.build(service, "txt2img")
    lora_browser.build(service, prompt, negative, "txt2img")
    with gr.Row():
        with gr.Column(scale=1):
            s = sampling_controls("txt2img", limits)
            clip_skip = gr.Slider(1, 12, value=1, step=1, label=t("clip_skip"), elem_id="txt2img_clip_skip",
                                  info=t("clip_skip_info"))
            hr = hires_controls("txt2img", service)
            fd = face_detail_controls("txt2img", service)
            cn = controlnet_accordion("txt2img", service)
        with gr.Column(scale=1):
            gallery, info, state = results_panel("txt2img")
            send, selected = send_row("txt2img", gallery)
    c = tab_controls(prompt, negative, generate, s, gallery, info, state, send=send, selected=selected,
                     controlnet=cn)
    presets_panel.wire(service, "txt2img", extras, prompt, negative,
                       {**{k: v for k, v in s.items() if not k.startswith("_")}, **hr, **fd})

    def txt2img(prompt: str, negative_prompt: str, steps: int, cfg_scale: float, seed: int, width: int,
                height: int, sampler_name: str, scheduler: str, batch_size: int, n_iter: int,
                sd_model_checkpoint: str | None = None,
                enable_hr: bool = False, hr_upscaler: str = "Latent", hr_second_pass_steps: int = 0,
                denoising_strength: float = 0.7, hr_scale: float = 2.0, hr_resize_x: int = 0, hr_resize_y: int = 0,
                hr_sampler_name: str = "Use same sampler", hr_scheduler: str = "Use same scheduler",
                hr_prompt: str | None = None, hr_negative_prompt: str | None = None,
                face_detail: bool = False, face_detail_prompt: str | None = None,
                face_detail_negative_prompt: str | None = None,
                face_detail_denoising_strength: float = 0.4, face_detail_max_faces: int = 4,
                face_detail_confidence: float = 0.3, face_detail_padding: int = 32, face_detail_blur: int = 4,
                face_detail_detector: str = "haar", face_detail_order: str = "largest",
                styles: list[str] | None = None, preset: str | None = None, translated_prompt: str | None = None,
                translated_negative_prompt: str | None = None, translated_from: dict | None = None,
                clip_skip: int = 1, sd_vae: str = "Automatic", controlnet_units: list | None = None,
                ip_adapters: list | None = None,
                request: gr.Request = None, progress=gr.Progress()):
        """Generate images from a prompt, optionally with hires fix, a face detail pass and
        ControlNet units (the `controlnet_<n>_<field>` parameters).
        Returns the images (PNG with A1111 metadata) and the infotext of the first one.
        `styles` are applied in order; `preset` (a preset name) wraps the prompt in its template;
        Chinese in the prompts is translated to English, or `translated_prompt` is used as the English."""
        quality = {k: v for k, v in locals().items()
                   if k.startswith(("hr_", "face_detail")) or k in ("enable_hr", "denoising_strength")}
        fields = dict(prompt=prompt, negative_prompt=negative_prompt, steps=steps, cfg_scale=cfg_scale, seed=seed,
                      width=width, height=height, sampler_name=sampler_name, scheduler=scheduler,
                      batch_size=batch_size, n_iter=n_iter, sd_model_checkpoint=sd_model_checkpoint or None,
                      clip_skip=clip_skip, sd_vae=sd_vae or "Automatic",
                      styles=list(styles or []), preset=preset, controlnet_units=controlnet_units or [],
                      ip_adapters=ip_adapters or [], **quality)
        if translated_from is None:  # an API caller: their English is for this prompt
            translated_from = {"prompt": prompt or "", "negative": negative_prompt or ""}
        fields.update(presets_panel.translation_fields(prompt, negative_prompt, translated_prompt,
                                                       translated_negative_prompt, translated_from))
        yield from run_generation(service, fields, "txt2img", request, progress)

    inputs = [prompt, negative, c.steps, c.cfg_scale, c.seed, c.width, c.height, c.sampler_name, c.scheduler,
              c.batch_size, c.n_iter, checkpoint, *hr.values(), *fd.values(), extras.styles, extras.preset,
              extras.translated_prompt, extras.translated_negative_prompt, extras.translated_from,
              clip_skip, shared.sd_vae, *cn.values()]
    outputs = [gallery, info, state]
    txt2img = with_controlnet(txt2img, list(cn))
    generate.click(txt2img, inputs, outputs, api_name="txt2img", **GPU)
    prompt.submit(txt2img, inputs, outputs, api_visibility="private", **GPU)
    return c
