"""The txt2img tab. Its Generate event is also the named API endpoint `/txt2img`, whose
parameter names are the A1111 API field names."""

from __future__ import annotations

import gradio as gr

from .common import GPU, Controls, prompt_row, results_panel, run_generation, sampling_controls, wire_seed_buttons


def build(service, shared) -> Controls:
    checkpoint = shared.checkpoint
    limits = service.settings.limits
    prompt, negative, generate = prompt_row("txt2img")
    with gr.Row():
        with gr.Column(scale=1):
            s = sampling_controls("txt2img", limits)
        with gr.Column(scale=1):
            gallery, info, state = results_panel("txt2img")
    c = Controls(prompt, negative, generate, s["sampler_name"], s["scheduler"], s["steps"], s["cfg_scale"],
                 s["seed"], s["width"], s["height"], s["n_iter"], s["batch_size"], gallery, info, state)
    wire_seed_buttons(c, s["_dice"], s["_reuse"])

    def txt2img(prompt: str, negative_prompt: str, steps: int, cfg_scale: float, seed: int, width: int,
                height: int, sampler_name: str, scheduler: str, batch_size: int, n_iter: int,
                sd_model_checkpoint: str | None = None, request: gr.Request = None,
                progress=gr.Progress()):
        """Generate images from a prompt. Returns the images (PNG with A1111 metadata) and the
        infotext of the first one."""
        fields = dict(prompt=prompt, negative_prompt=negative_prompt, steps=steps, cfg_scale=cfg_scale, seed=seed,
                      width=width, height=height, sampler_name=sampler_name, scheduler=scheduler,
                      batch_size=batch_size, n_iter=n_iter, sd_model_checkpoint=sd_model_checkpoint or None)
        return run_generation(service, fields, "txt2img", request, progress)

    inputs = [prompt, negative, c.steps, c.cfg_scale, c.seed, c.width, c.height, c.sampler_name, c.scheduler,
              c.batch_size, c.n_iter, checkpoint]
    outputs = [gallery, info, state]
    generate.click(txt2img, inputs, outputs, api_name="txt2img", **GPU)
    prompt.submit(txt2img, inputs, outputs, api_visibility="private", **GPU)
    return c
