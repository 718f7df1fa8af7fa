"""The txt2img tab. Its Generate event is also the named API endpoint `/txt2img`, whose
parameter names are the A1111 API field names: the keys of the tab's field table (ui/fields.py)."""

from __future__ import annotations

import gradio as gr
from ..i18n import t

from . import character_panel, lora_browser, presets_panel, regions_panel, xyz_panel
from .controlnet_panel import controlnet_accordion, unit_fields
from .common import (GPU, Controls, face_detail_controls, hires_controls, prompt_row, results_panel,
                     sampling_controls, sampling_fields, send_row, tab_controls)
from .fields import handler


def build(service, shared) -> Controls:
    checkpoint = shared.checkpoint
    limits = service.settings.limits
    prompt, negative, generate = prompt_row("txt2img", service)
    extras = presets_panel.build(service, "txt2img")
    characters = character_panel.build(service, "txt2img")
    lora_browser.build(service, prompt, negative, "txt2img")
    with gr.Row():
        with gr.Column(scale=1):
            s = sampling_controls("txt2img", limits)
            clip_skip = gr.Slider(1, 12, value=1, step=1, label=t("clip_skip"), elem_id="txt2img_clip_skip",
                                  info=t("clip_skip_info"))
            hr = hires_controls("txt2img", service)
            fd = face_detail_controls("txt2img", service)
            cn = controlnet_accordion("txt2img", service)
            regions = regions_panel.build("txt2img")
            xyz = xyz_panel.xyz_controls("txt2img")
        with gr.Column(scale=1):
            gallery, info, state = results_panel("txt2img")
            send, selected = send_row("txt2img", gallery)
    c = tab_controls(prompt, negative, generate, s, gallery, info, state, send=send, selected=selected,
                     controlnet=cn)
    presets_panel.wire(service, "txt2img", extras, prompt, negative,
                       {**{k: v for k, v in s.items() if not k.startswith("_")}, **hr, **fd})

    c.fields = {"prompt": prompt, "negative_prompt": negative, **sampling_fields(s),
                "sd_model_checkpoint": checkpoint, **hr, **fd, "styles": extras.styles, "preset": extras.preset,
                "characters": characters,
                "translated_prompt": extras.translated_prompt,
                "translated_negative_prompt": extras.translated_negative_prompt,
                "translated_from": extras.translated_from, "clip_skip": clip_skip, "sd_vae": shared.sd_vae, **cn, **regions, **xyz}

    def txt2img(request, progress, translated_prompt=None, translated_negative_prompt=None, translated_from=None,
                **values):
        """Generate images from a prompt, optionally with hires fix, a face detail pass and
        ControlNet units (the `controlnet_<n>_<field>` parameters).
        Returns the images (PNG with A1111 metadata) and the infotext of the first one.
        `styles` are applied in order; `preset` (a preset name) wraps the prompt in its template;
        Chinese in the prompts is translated to English, or `translated_prompt` is used as the English."""
        fields = {**regions_panel.request_fields(unit_fields(values)), "sd_model_checkpoint": values["sd_model_checkpoint"] or None,
                  "sd_vae": values["sd_vae"] or "Automatic", "styles": list(values["styles"] or [])}
        prompt, negative_prompt = values["prompt"], values["negative_prompt"]
        if translated_from is None:  # an API caller: their English is for this prompt
            translated_from = {"prompt": prompt or "", "negative": negative_prompt or ""}
        fields.update(presets_panel.translation_fields(prompt, negative_prompt, translated_prompt,
                                                       translated_negative_prompt, translated_from))
        yield from xyz_panel.run(service, fields, "txt2img", request, progress)

    outputs = [gallery, info, state]
    event = handler(txt2img, c.fields)
    generate.click(event, inputs_kwargs=c.fields, outputs=outputs, api_name="txt2img", **GPU)
    prompt.submit(event, inputs_kwargs=c.fields, outputs=outputs, api_visibility="private", **GPU)
    return c
