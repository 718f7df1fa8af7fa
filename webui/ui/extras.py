"""The Extras tab: upscale any image, or run the face detail pass on it. The work is in
webui/serving/extras.py; results are saved to outputs/extras-images/DATE/ with their infotext."""

from __future__ import annotations

import logging

import gradio as gr

from ..serving import extras
from ..errors import UserError
from ..imaging.images import open_upload
from ..request import MAX_SEED
from ..models.upscalers import list_upscalers
from ..i18n import t
from .common import GPU, PRIVATE, caller_of, face_detail_controls
from .fields import handler

log = logging.getLogger(__name__)


def _open(path, limits):
    if not path:
        raise UserError("upload an image first", field="image")
    return open_upload(path, limits, "image")  # the upload limits, as for img2img


def _show(result: extras.ExtrasResult):
    for w in result.warnings:
        gr.Warning(w)
    return (str(result.path) if result.path else result.image), result.infotext


def build(service, shared):
    models_dir = service.settings.models_dir
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(type="filepath", label=t("input_image"), sources=["upload", "clipboard"],
                             elem_id="extras_image", height=420)
            with gr.Tabs():
                with gr.Tab(t("extras_upscale"), id="extras_upscale_tab"):
                    mode = gr.Radio(["Scale by", "Scale to"], value="Scale by", label=t("resize_mode"),
                                    elem_id="extras_resize_mode")
                    scale = gr.Slider(1, 8, value=2, step=0.05, label=t("extras_resize_by"), elem_id="extras_upscaling_resize")
                    with gr.Row():
                        width = gr.Number(0, label=t("extras_width"), precision=0, minimum=0,
                                          elem_id="extras_upscaling_resize_w")
                        height = gr.Number(0, label=t("extras_height"), precision=0, minimum=0,
                                           elem_id="extras_upscaling_resize_h")
                    with gr.Row(equal_height=True):
                        upscaler = gr.Dropdown(list_upscalers(models_dir, include_latent=False), value="Lanczos",
                                               label=t("extras_upscaler_label"),
                                               elem_id="extras_upscaler_1", scale=6)
                        refresh = gr.Button("🔄", elem_id="extras_refresh_upscalers", scale=0, min_width=48)
                    run_upscale = gr.Button(t("extras_upscale"), variant="primary", elem_id="extras_upscale")
                with gr.Tab("Face detail", id="extras_face_tab"):
                    prompt = gr.Textbox(label=t("prompt"), lines=2, elem_id="extras_face_main_prompt",
                                        placeholder=t("extras_face_prompt_placeholder"))
                    negative = gr.Textbox(label=t("negative_prompt"), lines=1, elem_id="extras_face_main_neg_prompt")
                    fd = face_detail_controls("extras", service, standalone=True)
                    with gr.Row():
                        steps = gr.Slider(1, service.settings.limits.max_steps, value=20, step=1,
                                          label=t("steps"), elem_id="extras_face_steps")
                        seed = gr.Number(-1, label=t("seed"), precision=0, minimum=-1, maximum=MAX_SEED,
                                         elem_id="extras_face_seed")
                    run_face = gr.Button(t("extras_detail_faces"), variant="primary", elem_id="extras_face_run")
        with gr.Column(scale=1):
            result = gr.Image(label=t("extras_result"), type="filepath", format="png", interactive=False,
                              elem_id="extras_result", height=520, buttons=["download", "fullscreen"])
            info = gr.Textbox(label=t("png_info_parameters"), lines=4, interactive=False, elem_id="extras_infotext",
                              buttons=["copy"])

    def refresh_list(current):
        names = list_upscalers(models_dir, include_latent=False)
        return gr.Dropdown(choices=names, value=current if current in names else "Lanczos")

    refresh.click(refresh_list, upscaler, upscaler, **PRIVATE)

    def extras_upscale(image: str, resize_mode: str, upscaling_resize: float, upscaling_resize_w: int,
                       upscaling_resize_h: int, upscaler_1: str, request: gr.Request = None):
        """Upscale an image by a factor or to a size with Lanczos, Nearest or an ESRGAN model."""
        try:
            to_size = resize_mode == "Scale to"
            r = extras.upscale(service, _open(image, service.settings.limits), upscaler_1, upscaling_resize,
                               upscaling_resize_w if to_size else 0, upscaling_resize_h if to_size else 0,
                               owner=caller_of(service, request))
        except UserError as e:
            raise gr.Error(str(e)) from None
        except Exception as e:  # keep serving; the log has the trace
            log.exception("extras upscale failed")
            raise gr.Error(f"upscale failed: {type(e).__name__}: {e}") from None
        return _show(r)

    run_upscale.click(extras_upscale, [image, mode, scale, width, height, upscaler], [result, info],
                      api_name="extras_upscale", **GPU)

    face_fields = {"image": image, "prompt": prompt, "negative_prompt": negative, "steps": steps, "seed": seed, **fd}

    def extras_face_detail(request, progress, image, prompt, negative_prompt, **fields):
        """Run the face detail pass on an image. With no face found the image is returned unchanged."""
        try:
            img = _open(image, service.settings.limits)
            if not prompt:  # the image's own prompt, when it carries one
                info, _ = extras.read_infotext(img)
                parsed = extras.parse_infotext(info) if info else {}
                prompt = parsed.get("Prompt", "")
                negative_prompt = negative_prompt or parsed.get("Negative prompt", "")
            fields.update(prompt=prompt, negative_prompt=negative_prompt)
            r = extras.face_detail(service, img, fields, owner=caller_of(service, request))
        except UserError as e:
            raise gr.Error(str(e)) from None
        except Exception as e:  # keep serving; the log has the trace
            log.exception("extras face detail failed")
            raise gr.Error(f"face detail failed: {type(e).__name__}: {e}") from None
        return _show(r)

    run_face.click(handler(extras_face_detail, face_fields, required=["image", "prompt", "negative_prompt"]),
                   inputs_kwargs=face_fields, outputs=[result, info], api_name="extras_face_detail", **GPU)
    return None
