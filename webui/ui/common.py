"""Controls shared by the txt2img, img2img and inpaint tabs, and the glue that turns a
generation into gallery output. Callbacks stay thin: widgets -> request -> Service."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import gradio as gr

from ..engine.manager import GenerationResult
from ..errors import UserError
from ..models.faces import list_detectors
from ..i18n import t
from ..serving.identity import Caller, client_address, session_id
from ..metadata.infotext import infotext_to_fields
from ..request import MAX_SEED, SAME_SAMPLER, SAME_SCHEDULER
from ..request.face import ORDERS
from ..engine.samplers import AVAILABLE_SAMPLERS, SCHEDULE_TYPES
from ..models.upscalers import list_upscalers
from .controlnet_panel import restore_updates
from .events import GPU, PRIVATE  # noqa: F401 - the tabs take them from here too

log = logging.getLogger(__name__)


@dataclass
class Controls:
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    generate: gr.Button
    sampler_name: gr.Dropdown
    scheduler: gr.Dropdown
    steps: gr.Slider
    cfg_scale: gr.Slider
    seed: gr.Number
    width: gr.Slider
    height: gr.Slider
    n_iter: gr.Slider
    batch_size: gr.Slider
    gallery: gr.Gallery
    infotext: gr.Textbox
    info_state: gr.State
    # "Send to" buttons under the gallery (target tab id -> button) and the picked image's index
    send: dict = field(default_factory=dict)
    selected: gr.State | None = None
    # The tab's input picture, for tabs that take one (what "Send to" fills)
    image: gr.components.Component | None = None
    # The ControlNet / IP-Adapter accordion's widgets by parameter name (controlnet_panel)
    controlnet: dict = field(default_factory=dict)
    # The tab's field table (ui/fields.py): request field name -> component, the Generate
    # event's inputs
    fields: dict = field(default_factory=dict)


def tab_controls(prompt, negative, generate, sampling: dict, gallery, info, state, **extra) -> Controls:
    """A generation tab's Controls from its prompt row, sampling_controls() and results panel,
    with the seed buttons wired."""
    s = sampling
    c = Controls(prompt, negative, generate, s["sampler_name"], s["scheduler"], s["steps"], s["cfg_scale"],
                 s["seed"], s["width"], s["height"], s["n_iter"], s["batch_size"], gallery, info, state, **extra)
    wire_seed_buttons(c, s["_dice"], s["_reuse"])
    return c


def prompt_row(tab: str, service=None) -> tuple[gr.Textbox, gr.Textbox, gr.Button]:
    """Prompt boxes and the Generate button; with `service`, also Interrupt and Skip under it."""
    with gr.Row(equal_height=True):
        with gr.Column(scale=6):
            prompt = gr.Textbox("", label=t("prompt"), lines=3, max_lines=12, elem_id=f"{tab}_prompt",
                                placeholder=t("prompt_placeholder"))
            negative = gr.Textbox("", label=t("negative_prompt"), lines=2, max_lines=8, elem_id=f"{tab}_neg_prompt",
                                  placeholder=t("negative_prompt_placeholder"))
        with gr.Column(scale=1, min_width=140):
            generate = gr.Button(t("generate"), variant="primary", elem_id=f"{tab}_generate", size="lg")
            if service is not None:
                job_buttons(service, tab)
    return prompt, negative, generate


# Interrupt/Skip must never wait behind the generation they stop: no GPU group, no limit.
CONTROL = {"concurrency_limit": None}


def caller_of(service, request: gr.Request | None) -> Caller | None:
    """Who pressed the button: the logged-in user (verified by Gradio), the connection's address
    and the server-issued session cookie, plus the page's session_hash (see identity.py)."""
    if request is None:
        return None
    client = getattr(request, "client", None)
    headers = getattr(request, "headers", None) or {}
    return Caller("ui", user=getattr(request, "username", None) or None,
                  address=client_address(getattr(client, "host", None), service.settings),
                  sid=session_id(headers.get("cookie")), session_hash=getattr(request, "session_hash", None) or "")


def owner_of(service, request: gr.Request | None) -> str | None:
    """The key of this page's jobs and History."""
    caller = caller_of(service, request)
    return caller.owner if caller is not None else None


def job_buttons(service, tab: str) -> tuple[gr.Button, gr.Button]:
    """Interrupt and Skip, acting only on the jobs of the browser session that presses them.
    The txt2img pair is also the API endpoints /interrupt and /skip (scoped to the client's
    session the same way)."""
    with gr.Row():
        interrupt = gr.Button(t("interrupt"), elem_id=f"{tab}_interrupt", size="sm", min_width=60)
        skip = gr.Button(t("skip"), elem_id=f"{tab}_skip", size="sm", min_width=60)

    def do_interrupt(request: gr.Request):
        """Stop this session's generation now; finished images are kept."""
        n = service.interrupt_jobs(owner_of(service, request))
        gr.Info("Stopping after this step; finished images are kept" if n else "Nothing of yours is running")
        return None

    def do_skip(request: gr.Request):
        """Drop the image being made in this session's generation and go on with the next one."""
        n = service.skip_jobs(owner_of(service, request))
        gr.Info("Skipping to the next image" if n else "Nothing of yours is running")
        return None

    names = tab == "txt2img"
    interrupt.click(do_interrupt, None, None, api_name="interrupt" if names else None,
                    **({} if names else PRIVATE), **CONTROL)
    skip.click(do_skip, None, None, api_name="skip" if names else None, **({} if names else PRIVATE), **CONTROL)
    return interrupt, skip


def sampling_controls(tab: str, limits) -> dict:
    with gr.Row():
        sampler = gr.Dropdown(AVAILABLE_SAMPLERS, value="DPM++ 2M", label=t("sampler"),
                              elem_id=f"{tab}_sampler")
        scheduler = gr.Dropdown(list(SCHEDULE_TYPES), value="Automatic", label=t("scheduler"),
                                elem_id=f"{tab}_scheduler")
    steps = gr.Slider(1, limits.max_steps, value=20, step=1, label=t("steps"), elem_id=f"{tab}_steps")
    with gr.Row():
        width = gr.Slider(64, limits.max_width, value=512, step=8, label=t("width"), elem_id=f"{tab}_width")
        height = gr.Slider(64, limits.max_height, value=512, step=8, label=t("height"), elem_id=f"{tab}_height")
    with gr.Row():
        n_iter = gr.Slider(1, limits.max_n_iter, value=1, step=1, label=t("batch_count"), elem_id=f"{tab}_batch_count")
        batch_size = gr.Slider(1, limits.max_batch_size, value=1, step=1, label=t("batch_size"),
                               elem_id=f"{tab}_batch_size")
    cfg = gr.Slider(1, 30, value=7, step=0.5, label=t("cfg_scale"), elem_id=f"{tab}_cfg_scale")
    with gr.Row(equal_height=True):
        seed = gr.Number(value=-1, label=t("seed"), precision=0, minimum=-1, maximum=MAX_SEED, elem_id=f"{tab}_seed",
                         scale=4)
        dice = gr.Button("🎲", elem_id=f"{tab}_random_seed", scale=0, min_width=48)
        reuse = gr.Button("♻️", elem_id=f"{tab}_reuse_seed", scale=0, min_width=48)
    return dict(sampler_name=sampler, scheduler=scheduler, steps=steps, width=width, height=height, n_iter=n_iter,
                batch_size=batch_size, cfg_scale=cfg, seed=seed, _dice=dice, _reuse=reuse)


# The sampling fields in the order the endpoints have always listed them (A1111's order), for
# callers that pass them by position.
SAMPLING_FIELDS = ("steps", "cfg_scale", "seed", "width", "height", "sampler_name", "scheduler", "batch_size",
                   "n_iter")


def sampling_fields(sampling: dict) -> dict:
    """sampling_controls()' fields for a tab's table, without its seed buttons."""
    return {name: sampling[name] for name in SAMPLING_FIELDS}


def hires_controls(tab: str, service) -> dict:
    """The hires fix accordion (txt2img). Keys are request field names."""
    limits = service.settings.limits
    with gr.Accordion(t("hires_fix_title"), open=False, elem_id=f"{tab}_hires"):
        enable = gr.Checkbox(False, label=t("hires_fix_enable"), elem_id=f"{tab}_enable_hr")
        with gr.Row():
            upscaler = gr.Dropdown(list_upscalers(service.settings.models_dir), value="Latent", label=t("hr_upscaler"),
                                   elem_id=f"{tab}_hr_upscaler")
            steps = gr.Slider(0, limits.max_steps, value=0, step=1, label=t("hires_steps_label"),
                              elem_id=f"{tab}_hires_steps")
            denoise = gr.Slider(0, 1, value=0.7, step=0.01, label=t("denoising_strength"), elem_id=f"{tab}_denoising")
        with gr.Row():
            scale = gr.Slider(1, 4, value=2, step=0.05, label=t("hr_scale"), elem_id=f"{tab}_hr_scale")
            resize_x = gr.Slider(0, limits.max_width, value=0, step=8, label=t("hires_resize_x_label"),
                                 elem_id=f"{tab}_hr_resize_x")
            resize_y = gr.Slider(0, limits.max_height, value=0, step=8, label=t("hires_resize_y_label"),
                                 elem_id=f"{tab}_hr_resize_y")
        with gr.Row():
            sampler = gr.Dropdown([SAME_SAMPLER] + AVAILABLE_SAMPLERS, value=SAME_SAMPLER, label=t("hires_sampler"),
                                  elem_id=f"{tab}_hr_sampler")
            schedule = gr.Dropdown([SAME_SCHEDULER] + list(SCHEDULE_TYPES), value=SAME_SCHEDULER,
                                   label=t("hires_scheduler"), elem_id=f"{tab}_hr_scheduler")
        hr_prompt = gr.Textbox("", label=t("hires_prompt"), lines=1, elem_id=f"{tab}_hr_prompt")
        hr_negative = gr.Textbox("", label=t("hires_negative_prompt"), lines=1, elem_id=f"{tab}_hr_neg_prompt")
    return dict(enable_hr=enable, hr_upscaler=upscaler, hr_second_pass_steps=steps, denoising_strength=denoise,
                hr_scale=scale, hr_resize_x=resize_x, hr_resize_y=resize_y, hr_sampler_name=sampler,
                hr_scheduler=schedule, hr_prompt=hr_prompt, hr_negative_prompt=hr_negative)


def face_detail_controls(tab: str, service, standalone: bool = False) -> dict:
    """The face detail accordion (txt2img, img2img, inpaint, Extras). Keys are request field
    names; defaults suit portraits (denoising 0.4 keeps the likeness)."""
    def body():
        enable = None
        if not standalone:
            enable = gr.Checkbox(False, label=t("face_detail_after"), elem_id=f"{tab}_face_detail")
        prompt = gr.Textbox("", label=t("face_detail_prompt_label"),
                            lines=2, elem_id=f"{tab}_face_prompt")
        negative = gr.Textbox("", label=t("face_detail_negative_label"), lines=1, elem_id=f"{tab}_face_neg_prompt")
        with gr.Row():
            denoise = gr.Slider(0, 1, value=0.4, step=0.01, label=t("face_detail_denoising_strength"),
                                elem_id=f"{tab}_face_denoising")
            max_faces = gr.Slider(0, 16, value=4, step=1, label=t("face_detail_max_faces"), elem_id=f"{tab}_face_max")
            confidence = gr.Slider(0, 1, value=0.3, step=0.01, label=t("face_detail_confidence"),
                                   elem_id=f"{tab}_face_confidence")
        with gr.Row():
            padding = gr.Slider(0, 256, value=32, step=4, label=t("face_detail_crop_padding"), elem_id=f"{tab}_face_padding")
            blur = gr.Slider(0, 64, value=4, step=1, label=t("face_detail_mask_blur_px"), elem_id=f"{tab}_face_blur")
            detectors = list_detectors(service.settings.models_dir)
            detector = gr.Dropdown(detectors, value=detectors[0], label=t("face_detail_detector"),
                                   elem_id=f"{tab}_face_detector")
            order = gr.Dropdown(list(ORDERS), value="largest", label=t("face_detail_order"), elem_id=f"{tab}_face_order")
        out = dict(face_detail_prompt=prompt, face_detail_negative_prompt=negative,
                   face_detail_denoising_strength=denoise, face_detail_max_faces=max_faces,
                   face_detail_confidence=confidence, face_detail_padding=padding, face_detail_blur=blur,
                   face_detail_detector=detector, face_detail_order=order)
        return ({"face_detail": enable} if enable is not None else {}) | out

    if standalone:
        return body()
    with gr.Accordion(t("face_detail"), open=False, elem_id=f"{tab}_face_detail_accordion"):
        return body()


def results_panel(tab: str) -> tuple[gr.Gallery, gr.Textbox, gr.State]:
    gallery = gr.Gallery(label=t("output_gallery"), format="png", columns=2, height=520, object_fit="contain",
                         elem_id=f"{tab}_gallery", buttons=["download", "fullscreen"], interactive=False)
    info = gr.Textbox(label=t("generation_info"), lines=4, interactive=False, elem_id=f"{tab}_infotext",
                      buttons=["copy"])
    state = gr.State({"seeds": [], "infotexts": []})
    return gallery, info, state


def image_upload(label: str, **kwargs) -> gr.Image:
    """An image input that hands our loader (webui.imaging.images) the raw uploaded file, so 16-bit,
    CMYK, animated and transparent pictures get its documented conversions."""
    kwargs.setdefault("sources", ["upload", "clipboard"])
    return gr.Image(label=label, type="filepath", image_mode=None, format="png", **kwargs)


def api_file(name: str) -> gr.File:
    """A hidden file input for an API endpoint: any upload reaches our loader, which answers
    a file that is not a picture with a readable message (gr.Image would fail before it)."""
    return gr.File(label=name, type="filepath", visible=False)


def send_row(tab: str, gallery: gr.Gallery, targets=("img2img", "inpaint")) -> tuple[dict, gr.State]:
    """Buttons under a gallery that carry the picked image and its settings to another tab;
    the State follows which gallery image is picked."""
    with gr.Row():
        buttons = {t: gr.Button(f"Send to {t}", size="sm", elem_id=f"{tab}_send_to_{t}") for t in targets}
    selected = gr.State(0)

    def picked(evt: gr.SelectData) -> int:
        return evt.index

    gallery.select(picked, None, selected, **PRIVATE)
    return buttons, selected


def warn_left_unchanged(skipped: list[str]) -> None:
    """One warning for the settings a "send to" could not put into this UI."""
    if skipped:
        gr.Warning("Not available here, left unchanged: " + "; ".join(skipped))


def wire_send_to(sources, target: str, dest: Controls, tabs: gr.Tabs, fill_image, models_dir=None) -> None:
    """Called by the target tab once its controls exist: every source tab's "Send to <target>"
    button puts the picked gallery image into the target's input (`fill_image(path)` gives the
    component value), fills its prompt, settings and ControlNet units from the image's
    infotext, and opens it. Nothing here touches the model."""
    for src in sources:
        if src is None or target not in src.send:
            continue

        def send(gallery, index, state):
            items = gallery or []
            if not items:
                raise gr.Error("Generate an image first, then pick it in the gallery")
            index = index if isinstance(index, int) and 0 <= index < len(items) else 0
            item = items[index]
            path = item[0] if isinstance(item, (list, tuple)) else item
            path = getattr(path, "path", None) or (path.get("path") if isinstance(path, dict) else path)
            infos = (state or {}).get("infotexts") or []
            f = infotext_to_fields(infos[index]) if index < len(infos) else {}
            units, skipped = restore_updates(f, dest.controlnet, models_dir)
            warn_left_unchanged(skipped)
            keep = gr.update()
            chosen = [f.get("characters", [] if "steps" in f else keep)] if characters else []
            return (fill_image(path), f.get("prompt", keep), f.get("negative_prompt", keep),
                    f.get("sampler_name", keep), f.get("scheduler", keep), f.get("steps", keep),
                    f.get("cfg_scale", keep), f.get("seed", keep), f.get("width", keep), f.get("height", keep),
                    *units, *chosen, gr.Tabs(selected=target))

        characters = [dest.fields["characters"]] if "characters" in dest.fields else []  # character_panel
        src.send[target].click(
            send, [src.gallery, src.selected, src.info_state],
            [dest.image, dest.prompt, dest.negative_prompt, dest.sampler_name, dest.scheduler, dest.steps,
             dest.cfg_scale, dest.seed, dest.width, dest.height, *dest.controlnet.values(), *characters, tabs],
            **PRIVATE)


def wire_seed_buttons(c: Controls, dice: gr.Button, reuse: gr.Button) -> None:
    dice.click(lambda: -1, None, c.seed, **PRIVATE)

    def last_seed(state, evt: gr.SelectData | None = None):
        seeds = (state or {}).get("seeds") or []
        return seeds[0] if seeds else -1

    reuse.click(last_seed, c.info_state, c.seed, **PRIVATE)

    def show_info(state, evt: gr.SelectData):
        infos = (state or {}).get("infotexts") or []
        return infos[evt.index] if 0 <= evt.index < len(infos) else ""

    c.gallery.select(show_info, c.info_state, c.infotext, **PRIVATE)


def gallery_output(result) -> tuple[list, str, dict]:
    """Saved files go to the gallery as paths, so downloads are the PNGs with metadata."""
    # A save that failed part-way leaves later images without a path: show those from memory.
    items = [(str(result.paths[i]) if i < len(result.paths) else img, f"seed {s}")
             for i, (img, s) in enumerate(zip(result.images, result.seeds))]
    for w in result.warnings:
        gr.Warning(w)
    if result.interrupted:
        gr.Info(f"Interrupted: kept {len(result.images)} finished image(s)")
    info = result.infotexts[0] if result.infotexts else ""
    return items, info, {"seeds": result.seeds, "infotexts": result.infotexts}


def run_generation(service, fields: dict, task: str, request: gr.Request | None, progress):
    """Shared body of the tabs' Generate handlers, a generator: while the job runs it yields
    the live preview into the gallery and "step i/N, ETA" into the infotext box (and the
    progress bar), then the saved images, the first infotext and the state."""
    owner = caller_of(service, request)
    try:
        req, notes = service.prepare(fields, task)
    except UserError as e:
        raise gr.Error(str(e)) from None
    for note in notes:
        gr.Warning(note)
    result = None
    try:
        for item in service.gpu_stream(req, owner):
            if isinstance(item, GenerationResult):
                result = item
                break
            if progress is not None:
                progress(item.fraction, desc=item.text)
            preview = [(item.preview, f"preview ({item.preview_kind})")] if item.preview is not None else gr.skip()
            yield preview, item.text, gr.skip()
    except UserError as e:
        raise gr.Error(str(e)) from None
    except Exception as e:  # keep serving; the log has the trace
        log.exception("generation failed")
        raise gr.Error(f"generation failed: {type(e).__name__}: {e}") from None
    if result is None:
        raise gr.Error("generation ended without a result")
    yield gallery_output(result)


def random_seed() -> int:
    return random.randrange(MAX_SEED)
