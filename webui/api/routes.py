"""The A1111-compatible REST API under /sdapi/v1.

Requests become the same GenerationRequest the UI builds (Service.request) and run through
the same Service.generate, so the same request gives the same pixels and infotext either way.
Routes are plain `def`: FastAPI runs them in its thread pool, so a long generation never
blocks the event loop that serves the UI, progress polls and interrupts.

Jobs are scoped (A1111 lets anyone interrupt anyone; we do not):
- txt2img/img2img may carry `force_task_id` (A1111's name): the job gets that id.
- progress/interrupt/skip take an optional `id_task` (a job id) or `session_hash` (the UI
  browser session whose job to address). Knowing such a random id is what entitles a caller
  to it. Without either, they address the caller's own latest API job: the caller is the
  --auth user name, or the client address when the API is open.
- A job started through the API by another --auth user is never reachable, even by id.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
from contextlib import asynccontextmanager
from typing import Any, Callable

from fastapi import APIRouter, Body, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from .. import __version__
from .access import StatusError, caller_dependency, until_disconnect, user_errors
from .edge import CheckedRoute
from ..errors import UserError
from ..metadata.image_meta import png_bytes_with_infotext
from ..imaging.images import decode_base64_bytes, decode_base64_image, to_mask, to_rgb
from ..serving.identity import Caller
from ..metadata.infotext_syntax import parse_infotext
from ..engine.jobs import Job
from ..metadata.pnginfo import png_info
from ..engine.samplers import AVAILABLE_SAMPLERS, SCHEDULE_TYPES
from ..samplers_names import A1111_SCHEDULE_TYPES

log = logging.getLogger(__name__)

API_PREFIX = "/sdapi/v1"
_TASK_ID = re.compile(r"^[\w().:\-]{1,100}$")


# ---- request and response shapes (A1111 names; unknown fields are accepted and ignored) ----

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
        None, description="sd_model_checkpoint, sd_vae and CLIP_stop_at_last_layers are honoured")
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


class Img2ImgBody(Txt2ImgBody):
    init_images: list[str] | None = Field(None, description="base64 images (raw or data: URL); the first is used")
    mask: str | None = Field(None, description="base64 mask, white = repaint; given -> inpainting")
    mask_blur: int | None = None
    inpainting_fill: int | None = Field(None, description="0 fill, 1 original, 2 latent noise, 3 latent nothing")
    inpaint_full_res: bool | None = Field(None, description="true: inpaint only the masked area")
    inpaint_full_res_padding: int | None = None
    inpainting_mask_invert: int | None = Field(None, description="1: repaint what is NOT masked")
    resize_mode: int | None = Field(None, description="0 just resize, 1 crop and resize, 2 resize and fill")
    include_init_images: bool | None = None


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


# ---- helpers ----

def _b64_png(image, infotext: str | None = None) -> str:
    return base64.b64encode(png_bytes_with_infotext(image, infotext)).decode("ascii")


_Status = StatusError
_user_errors = user_errors


def _has_path(name: str) -> bool:
    return ".." in name or name.startswith(("/", "\\", "~")) or "\\" in name or bool(re.match(r"^[A-Za-z]:", name))


def _echo(body: BaseModel, req) -> dict:
    """A1111 echoes the request; images are left out as it does."""
    out = body.model_dump()
    out.update(req.api_parameters())
    for k in ("init_images", "mask", "init_image"):
        if k in out:
            out[k] = None
    return out


def _fields(body: BaseModel) -> dict:
    # Images only come in decoded (init_images, mask); internal fields are not for clients.
    internal = {"init_image", "init_images", "mask", "task", "extra_params"}
    fields = {k: v for k, v in body.model_dump().items() if v is not None and k not in internal}
    if "sampler_name" not in fields and fields.get("sampler_index"):
        fields["sampler_name"] = fields["sampler_index"]
    over = fields.get("override_settings") or {}
    if not isinstance(over, dict):
        raise UserError("override_settings must be an object", field="override_settings")
    if over.get("CLIP_stop_at_last_layers") is not None and "clip_skip" not in fields:
        fields["clip_skip"] = over["CLIP_stop_at_last_layers"]
    if over.get("sd_vae") is not None and "sd_vae" not in fields:
        fields["sd_vae"] = over["sd_vae"]
    return fields


def _info(result, req) -> str:
    r = result.request
    n = len(result.images)
    first = parse_infotext(result.infotexts[0]) if result.infotexts else {}
    standard = {"Prompt", "Negative prompt", "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size",
                "Model hash", "Model", "Version", "Denoising strength", "Clip skip"}
    info = {
        "prompt": r.prompt,
        "all_prompts": [r.prompt] * n,
        "negative_prompt": r.negative_prompt,
        "all_negative_prompts": [r.negative_prompt] * n,
        "seed": result.seeds[0] if result.seeds else r.seed,
        "all_seeds": list(result.seeds),
        "subseed": r.subseed,
        "all_subseeds": [(r.subseed + i) % 2**32 for i in range(n)],
        "subseed_strength": r.subseed_strength,
        "width": r.width,
        "height": r.height,
        "sampler_name": r.sampler_name,
        "scheduler": r.scheduler,
        "cfg_scale": r.cfg_scale,
        "steps": r.steps,
        "batch_size": r.batch_size,
        "n_iter": r.n_iter,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": result.model_name,
        "sd_model_hash": result.model_hash,
        "sd_vae_name": None if r.sd_vae == "Automatic" else r.sd_vae,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": r.denoising_strength if (r.task != "txt2img" or r.enable_hr) else None,
        "extra_generation_params": {k: v for k, v in first.items() if k not in standard},
        "index_of_first_image": 0,
        "infotexts": list(result.infotexts),
        "styles": list(r.styles),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "clip_skip": r.clip_skip,
        "is_using_inpainting_conditioning": r.task == "inpaint",
        "version": __version__,
        "task": r.task,
        "interrupted": result.interrupted,
        "warnings": list(result.warnings),
    }
    return json.dumps(info, ensure_ascii=False)


# ---- the router ----

def build_router(service) -> APIRouter:
    settings = service.settings
    caller = caller_dependency(settings)

    router = APIRouter(prefix=API_PREFIX, tags=["sdapi"], dependencies=[Depends(caller)], route_class=CheckedRoute)

    def check_checkpoint(name: str | None) -> None:
        if name is None:
            return
        if _has_path(name):
            raise _Status(400, f"sd_model_checkpoint {name!r} contains a path; give a title, name or hash from "
                               "/sdapi/v1/sd-models", field="sd_model_checkpoint")
        try:
            service.checkpoint_title(name)  # UserError when no checkpoint is called that
        except UserError as e:
            raise _Status(404, str(e), field="sd_model_checkpoint") from None

    def find_job(who: Caller, ref: JobRef) -> Job | None:
        return service.find_job(who, ref.id_task, ref.session_hash)

    async def run(request: Request, body: Txt2ImgBody, parse: Callable, who: Caller) -> dict:
        """Parse (in a worker thread: images are decoded there), then generate while watching
        the connection: a client that hangs up stops its job."""
        req = await run_in_threadpool(parse)
        check_checkpoint(req.sd_model_checkpoint)
        task_id = body.force_task_id
        if task_id is not None and not _TASK_ID.match(task_id):
            raise UserError("force_task_id may hold letters, digits and _().:- (at most 100)", field="force_task_id")
        job = service.new_job(who, task_id)
        result = await until_disconnect(request, job, lambda: service.generate(req, owner=who, job=job))
        images = [_b64_png(img, info) for img, info in zip(result.images, result.infotexts)] if body.send_images else []
        return {"images": images, "parameters": _echo(body, req), "info": _info(result, req)}

    @router.post("/txt2img", response_model=ImageResponse, summary="Generate images from a prompt")
    @_user_errors
    async def txt2img(body: Txt2ImgBody, request: Request, who: Caller = Depends(caller)):
        return await run(request, body, lambda: service.request(_fields(body), "txt2img"), who)

    @router.post("/img2img", response_model=ImageResponse,
                 summary="Repaint an image (img2img), or the masked part of it (inpaint) when `mask` is given")
    @_user_errors
    async def img2img(body: Img2ImgBody, request: Request, who: Caller = Depends(caller)):
        def parse():
            fields = _fields(body)
            inits = body.init_images
            if not inits:
                raise UserError("init_images must hold at least one base64 image", field="init_images")
            fields["init_image"] = to_rgb(decode_base64_image(inits[0], "init_images", service.settings.limits))
            task = "img2img"
            if body.mask:
                fields["mask"] = to_mask(decode_base64_image(body.mask, "mask", service.settings.limits))
                task = "inpaint"
            return service.request(fields, task)
        return await run(request, body, parse, who)

    @router.get("/options", summary="Current settings (the active checkpoint, ...)")
    def get_options() -> dict:
        return {
            "sd_model_checkpoint": service.active_title(),
            "sd_checkpoint_hash": service.active_hash(),
            "sd_vae": "Automatic",
            "CLIP_stop_at_last_layers": 1,
            "samples_save": True,
            "samples_format": "png",
            "outdir_samples": "",
            "outdir_txt2img_samples": str(settings.outputs_dir / "txt2img-images"),
            "outdir_img2img_samples": str(settings.outputs_dir / "img2img-images"),
            "sd_checkpoint_cache": settings.cpu_cache,
        }

    @router.post("/options", summary="Change settings; `sd_model_checkpoint` (title, name or hash) switches the "
                                     "model. Other keys are accepted and ignored.")
    @_user_errors
    def set_options(body: dict[str, Any] = Body(..., examples=[{"sd_model_checkpoint": "model.safetensors"}]),
                    who: Caller = Depends(caller)):
        if "sd_model_checkpoint" in body:
            name = body["sd_model_checkpoint"]
            if not isinstance(name, str) or not name.strip():
                raise UserError("sd_model_checkpoint must be a checkpoint title, name or hash",
                                field="sd_model_checkpoint")
            check_checkpoint(name)
            service.select_model(name, who)
        ignored = sorted(k for k in body if k != "sd_model_checkpoint")
        if ignored:
            log.info("options not supported (ignored): %s", ", ".join(ignored))
        return None

    @router.get("/sd-models", response_model=list[SDModel], summary="Checkpoints in the models folder")
    def sd_models():
        return [SDModel(title=title, model_name=c.name, hash=sha[:10] if sha else None, sha256=sha,
                        filename=c.filename) for c, title, sha in service.checkpoints()]

    @router.post("/refresh-checkpoints", summary="Rescan the checkpoints folder")
    def refresh_checkpoints():
        service.refresh_checkpoints()
        return None

    @router.get("/samplers", summary="Sampling methods")
    def samplers() -> list[dict]:
        return [{"name": s, "aliases": [], "options": {}} for s in AVAILABLE_SAMPLERS]

    @router.get("/schedulers", summary="Schedule types")
    def schedulers() -> list[dict]:
        return [{"name": A1111_SCHEDULE_TYPES.get(s, s.lower()), "label": s, "aliases": None, "default_rho": -1,
                 "need_inner_model": False} for s in SCHEDULE_TYPES]

    @router.get("/sd-vae", summary="VAE files in models/VAE")
    def sd_vae() -> list[dict]:  # the listing the loader uses: nothing that links out of models/VAE
        return [{"model_name": v.name, "filename": str(v.path)} for v in service.vae_files()]

    @router.get("/loras", summary="LoRA files in models/Lora")
    def loras() -> list[dict]:
        return [{"name": f.name, "alias": f.name, "path": str(f.path), "metadata": {}}
                for f in service.lora_files()]

    @router.get("/embeddings", summary="Textual-inversion embeddings (loaded = usable with the active model)")
    def embeddings() -> dict:
        loaded, skipped = {}, {}
        for name, emb, fits in service.embeddings():
            vec = next(iter(emb.vectors.values()))
            item = {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                    "shape": int(vec.shape[-1]), "vectors": emb.num_vectors}
            (loaded if fits else skipped)[name] = item
        return {"loaded": loaded, "skipped": skipped}

    @router.get("/prompt-styles", summary="Prompt styles (built in and styles.csv)")
    def prompt_styles() -> list[dict]:
        from ..prompts.styles import load_style_library
        return load_style_library([settings.models_dir.parent, settings.models_dir]).to_api()

    @router.get("/upscalers", summary="Upscalers for hires fix and extras")
    def upscalers() -> list[dict]:
        from ..models.upscalers import BUILTIN_UPSCALERS, list_upscalers, resolve_model_file
        out = []
        for name in list_upscalers(settings.models_dir, include_latent=False):
            p = None if name in BUILTIN_UPSCALERS else resolve_model_file(name, settings.models_dir)
            out.append({"name": name, "model_name": name if p else None, "model_path": str(p) if p else None,
                        "model_url": None, "scale": 4 if p else None})
        return out

    @router.get("/latent-upscale-modes", summary="Latent upscalers for hires fix")
    def latent_upscale_modes() -> list[dict]:
        from ..models.upscalers import LATENT_UPSCALE_MODES
        return [{"name": n} for n in LATENT_UPSCALE_MODES]

    @router.get("/progress", response_model=ProgressResponse,
                summary="Progress of a job: `id_task`, else `session_hash`'s, else the caller's latest")
    def progress(id_task: str | None = None, session_hash: str | None = None, skip_current_image: bool = False,
                 who: Caller = Depends(caller)):
        job = find_job(who, JobRef(id_task=id_task, session_hash=session_hash))
        running = job is not None and job.state != "done"
        state = {
            "skipped": bool(job and job.skipped), "interrupted": bool(job and job.interrupted),
            "stopping_generation": False,
            "job": job.id if running else "", "job_count": 1 if running else 0,
            "job_timestamp": "0", "job_no": job.image_index if running else 0,
            "job_state": job.state if job else None,
            "queue_position": job.queue_position if running else None,
            "sampling_step": job.step if running else 0, "sampling_steps": job.total_steps if running else 0,
        }
        image = None
        if running and not skip_current_image and job.preview is not None:
            image = _b64_png(job.preview)
        eta = job.eta() if running else None
        return ProgressResponse(progress=job.progress() if running else 0.0, eta_relative=eta or 0.0, state=state,
                                current_image=image, current_task=job.id if running else None)

    def stop(who: Caller, ref: JobRef | None, id_task: str | None, session_hash: str | None, what: str) -> dict:
        ref = ref or JobRef()
        ref = JobRef(id_task=ref.id_task or id_task, session_hash=ref.session_hash or session_hash)
        job = find_job(who, ref)
        if job is None or job.state == "done":
            return {"job": None}
        getattr(job, what)()
        return {"job": job.id}

    @router.post("/interrupt", summary="Stop a job now, keeping finished images (scoped as /progress)")
    def interrupt(ref: JobRef | None = Body(None), id_task: str | None = None, session_hash: str | None = None,
                  who: Caller = Depends(caller)):
        return stop(who, ref, id_task, session_hash, "interrupt")

    @router.post("/skip", summary="Skip to the next image batch of a job (scoped as /progress)")
    def skip(ref: JobRef | None = Body(None), id_task: str | None = None, session_hash: str | None = None,
             who: Caller = Depends(caller)):
        return stop(who, ref, id_task, session_hash, "skip")

    @router.post("/png-info", response_model=PngInfoResponse,
                 summary="Generation parameters stored in an image (A1111, Forge, SD.Next, ComfyUI...)")
    @_user_errors
    def png_info_route(body: PngInfoBody):
        try:
            return png_info(io.BytesIO(decode_base64_bytes(body.image, "image", service.settings.limits)))
        except UserError as e:
            if e.field:
                raise
            raise UserError(f"image: {e}", field="image") from None

    # Listings some A1111 clients read at start-up; this app has no scripts or extensions.
    @router.get("/scripts", summary="Scripts (none here)")
    def scripts() -> dict:
        return {"txt2img": [], "img2img": []}

    @router.get("/script-info", summary="Script arguments (none here)")
    def script_info() -> list:
        return []

    @router.get("/face-restorers", summary="Face restorers (none here; see the face detailer)")
    def face_restorers() -> list:
        return []

    @router.get("/hypernetworks", summary="Hypernetworks (not supported)")
    def hypernetworks() -> list:
        return []

    @router.get("/extensions", summary="Extensions (none)")
    def extensions() -> list:
        return []

    @router.get("/cmd-flags", summary="Start-up flags")
    def cmd_flags() -> dict:
        return {"api": settings.api, "share": settings.share, "listen": settings.host != "127.0.0.1",
                "port": settings.port, "ckpt_dir": str(settings.checkpoints_dir),
                "lora_dir": str(settings.models_dir / "Lora"), "vae_dir": str(settings.models_dir / "VAE"),
                "data_dir": str(settings.models_dir.parent), "device": settings.device, "demo": settings.demo}

    @router.post("/refresh-loras", summary="Rescan models/Lora (listings always read the folder)")
    def refresh_loras():
        return None

    @router.post("/refresh-vae", summary="Rescan models/VAE (listings always read the folder)")
    def refresh_vae():
        return None

    @router.post("/refresh-embeddings", summary="Rescan embeddings (listings always read the folder)")
    def refresh_embeddings():
        return None

    @router.get("/memory", summary="RAM and GPU memory use")
    def memory() -> dict:
        return _memory()

    return router


def _memory() -> dict:
    import psutil
    import torch
    vm = psutil.virtual_memory()
    out: dict = {"ram": {"free": vm.available, "used": vm.total - vm.available, "total": vm.total}}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        stats = torch.cuda.memory_stats()
        out["cuda"] = {
            "system": {"free": free, "used": total - free, "total": total},
            "active": {"current": stats.get("active_bytes.all.current", 0), "peak": stats.get("active_bytes.all.peak", 0)},
            "allocated": {"current": stats.get("allocated_bytes.all.current", 0),
                          "peak": stats.get("allocated_bytes.all.peak", 0)},
            "reserved": {"current": stats.get("reserved_bytes.all.current", 0),
                         "peak": stats.get("reserved_bytes.all.peak", 0)},
            "inactive": {"current": stats.get("inactive_split_bytes.all.current", 0),
                         "peak": stats.get("inactive_split_bytes.all.peak", 0)},
            "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
        }
    else:
        out["cuda"] = {"error": "no CUDA device"}
    return out


# ---- mounting on Gradio's own app ----

def attach_api(app: FastAPI, service) -> None:
    """Add the routes to Gradio's FastAPI app, and /openapi.json and /docs describing them,
    behind the same --auth check as every route."""
    router = build_router(service)
    app.include_router(router)

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title="Portrait Studio API", version=__version__, routes=router.routes,
                description="A1111-compatible routes under /sdapi/v1. The Gradio endpoints (/txt2img, /img2img, "
                            "/inpaint, /png_info) are described on the UI's 'Use via API' page.")
        return app.openapi_schema

    app.openapi_schema = None
    app.openapi = openapi
    docs = APIRouter(dependencies=[Depends(caller_dependency(service.settings))], include_in_schema=False)
    docs.add_api_route("/openapi.json", lambda: openapi(), methods=["GET"])
    docs.add_api_route("/docs", lambda: get_swagger_ui_html(openapi_url="/openapi.json",
                                                             title="Portrait Studio API"), methods=["GET"])
    app.include_router(docs)


def api_lifespan(service):
    """A FastAPI lifespan that attaches the routes before the server accepts its first request.

    Gradio builds its app inside launch(); its `app_kwargs` lifespan is the public hook that
    runs on that app before serving, so --share (which needs Gradio's launch) keeps working.
    """
    @asynccontextmanager
    async def lifespan(app):
        attach_api(app, service)
        log.info("REST API at %s/ (docs at /docs)", API_PREFIX)
        yield

    return lifespan


__all__ = ["API_PREFIX", "api_lifespan", "attach_api", "build_router"]
