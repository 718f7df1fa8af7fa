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

This module holds generation, jobs (progress, interrupt, skip) and png-info, and mounts the
API; the bodies are in `bodies.py`, the model and settings routes in `model_routes.py`, the
routes describing the server in `info_routes.py`, the pose library's in `pose_routes.py`, extras,
interrogate and checkpoint unload/reload in `extras_routes.py`, the ControlNet and ADetailer
extensions' routes in `controlnet_routes.py` / `adetailer_routes.py`.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import APIRouter, Body, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from .. import __version__
from .access import StatusError, caller_dependency, until_disconnect, user_errors
from .bodies import ImageResponse, Img2ImgBody, JobRef, PngInfoBody, PngInfoResponse, ProgressResponse, Txt2ImgBody
from .edge import CheckedRoute
from .extras_routes import add_extras_routes
from .controlnet_routes import add_controlnet_routes
from .adetailer_routes import add_adetailer_routes
from .info_routes import add_info_routes
from .model_routes import add_model_routes
from .pose_routes import add_pose_routes
from ..errors import UserError
from ..metadata.image_meta import png_bytes_with_infotext
from ..imaging.images import decode_base64_bytes, decode_base64_image, to_mask, to_rgb
from ..serving.identity import Caller
from ..metadata.infotext_syntax import parse_infotext
from ..engine.jobs import Job
from ..metadata.pnginfo import png_info
from .infotext_body import apply_infotext

log = logging.getLogger(__name__)

API_PREFIX = "/sdapi/v1"
_TASK_ID = re.compile(r"^[\w().:\-]{1,100}$")


# ---- helpers ----

def _b64_png(image, infotext: str | None = None) -> str:
    return base64.b64encode(png_bytes_with_infotext(image, infotext)).decode("ascii")


_Status = StatusError
_user_errors = user_errors


def _has_path(name: str) -> bool:
    return ".." in name or name.startswith(("/", "\\", "~")) or "\\" in name or bool(re.match(r"^[A-Za-z]:", name))


def _echo(body: BaseModel, req) -> dict:
    """A1111 echoes the request; images are left out as it does, unless an img2img body asks
    for them with `include_init_images`."""
    out = body.model_dump()
    out.update(req.api_parameters())
    keep = ("init_images", "mask") if getattr(body, "include_init_images", None) else ()
    for k in ("init_images", "mask", "init_image"):
        if k in out and k not in keep:
            out[k] = None
    return out


def _fields(body: BaseModel) -> dict:
    # Images only come in decoded (init_images, mask); internal fields are not for clients.
    internal = {"init_image", "init_images", "mask", "task", "extra_params", "infotext"}
    fields = {k: v for k, v in body.model_dump().items() if v is not None and k not in internal}
    fields = apply_infotext(fields, body.model_fields_set, body.infotext)
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
        "all_subseeds": [(r.subseed + i) % (2**32 if r.subseed < 2**32 else 2**64) for i in range(n)],
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

    def _prepare(fields: dict, task: str):
        """The request, and the X/Y/Z plot plan when `script_name` selects it (its first cell
        stands for the request in the echo)."""
        plan = service.plot(fields, task)
        return (plan.first if plan else service.request(fields, task)), plan

    async def run(request: Request, body: Txt2ImgBody, parse: Callable, who: Caller) -> dict:
        """Parse (in a worker thread: images are decoded there), then generate while watching
        the connection: a client that hangs up stops its job."""
        req, plan = await run_in_threadpool(parse)
        check_checkpoint(req.sd_model_checkpoint)
        task_id = body.force_task_id
        if task_id is not None and not _TASK_ID.match(task_id):
            raise UserError("force_task_id may hold letters, digits and _().:- (at most 100)", field="force_task_id")
        over = body.override_settings or {}
        if over and body.override_settings_restore_afterwards is False:  # A1111: they stay set
            check_checkpoint(over.get("sd_model_checkpoint"))
            service.set_options(over)
        job = service.new_job(who, task_id)
        result = await until_disconnect(request, job, lambda: service.run_plot(plan, who, job) if plan
                                        else service.generate(req, owner=who, job=job, override_settings=over))
        images = [_b64_png(img, info) for img, info in zip(result.images, result.infotexts)] if body.send_images else []
        return {"images": images, "parameters": _echo(body, req), "info": _info(result, req)}

    @router.post("/txt2img", response_model=ImageResponse, summary="Generate images from a prompt")
    @_user_errors
    async def txt2img(body: Txt2ImgBody, request: Request, who: Caller = Depends(caller)):
        return await run(request, body, lambda: _prepare(_fields(body), "txt2img"), who)

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
            return _prepare(fields, task)
        return await run(request, body, parse, who)

    add_model_routes(router, service, caller, check_checkpoint)

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

    add_info_routes(router, settings)
    add_pose_routes(router, service)
    add_extras_routes(router, service, caller)

    # The ControlNet and ADetailer extensions' routes sit outside /sdapi/v1, behind the same checks.
    top = APIRouter(dependencies=[Depends(caller)], route_class=CheckedRoute)
    top.include_router(router)
    add_controlnet_routes(top, service, caller)
    add_adetailer_routes(top)
    return top


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
