"""The REST routes about models and settings: /options (reading it, and switching the
checkpoint through it) and the checkpoint, sampler, schedule, VAE, LoRA, embedding, style and
upscaler listings. Each is a small function calling Service methods; the listings are the ones
the loaders use.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from fastapi import APIRouter, Body, Depends

from .access import user_errors
from .bodies import SDModel
from ..errors import UserError
from ..serving.identity import Caller
from ..samplers_names import schedule_listing, sampler_listing

log = logging.getLogger(__name__)


def add_model_routes(router: APIRouter, service, caller, check_checkpoint: Callable[[str | None], None]) -> None:
    """Add the model and settings routes to `router` (`caller`: the Caller dependency)."""
    settings = service.settings

    @router.get("/options", summary="Current settings: every A1111 option that means something here")
    def get_options() -> dict:
        return service.option_values()

    @router.post("/options", summary="Change settings (kept in options.json beside the outputs); "
                                     "`sd_model_checkpoint` (title, name or hash) switches the model. Keys "
                                     "with no meaning here are accepted and listed in `warnings`; a wrong "
                                     "type is a 422 naming the key; output folders must stay inside the "
                                     "outputs folder.")
    @user_errors
    def set_options(body: dict[str, Any] = Body(..., examples=[{"sd_model_checkpoint": "model.safetensors",
                                                                  "samples_format": "webp"}]),
                    who: Caller = Depends(caller)):
        service.check_options(body)  # every value checked before anything changes
        if "sd_model_checkpoint" in body:
            name = body["sd_model_checkpoint"]
            if not isinstance(name, str) or not name.strip():
                raise UserError("sd_model_checkpoint must be a checkpoint title, name or hash",
                                field="sd_model_checkpoint")
            check_checkpoint(name)
            service.select_model(name, who)
        warnings = service.set_options(body)
        if warnings:
            log.info("options ignored: %s", "; ".join(warnings))
        return {"warnings": warnings}

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
        return sampler_listing()

    @router.get("/schedulers", summary="Schedule types")
    def schedulers() -> list[dict]:
        return schedule_listing()

    @router.get("/sd-vae", summary="VAE files in models/VAE")
    def sd_vae() -> list[dict]:  # the listing the loader uses: nothing that links out of models/VAE
        return [{"model_name": v.name, "filename": str(v.path)} for v in service.vae_files()]

    @router.get("/loras", summary="LoRA files in models/Lora")
    def loras() -> list[dict]:
        from ..models.safetensors_meta import read_metadata
        return [{"name": f.name, "alias": f.name, "path": str(f.path), "metadata": read_metadata(f.path)}
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
        return service.prompt_styles()  # the same library the UI and txt2img `styles` use

    @router.get("/upscalers", summary="Upscalers for hires fix and extras")
    def upscalers() -> list[dict]:
        from ..models.upscalers import BUILTIN_UPSCALERS, list_upscalers, resolve_model_file
        out = []
        for name in list_upscalers(settings.models_dir, include_latent=False):
            p = None if name in BUILTIN_UPSCALERS else resolve_model_file(name, settings.models_dir)
            out.append({"name": name, "model_name": name if p else None, "model_path": str(p) if p else None,
                        "model_url": None, "scale": 4})  # A1111 says 4 for Lanczos/Nearest/None too
        return out

    @router.get("/latent-upscale-modes", summary="Latent upscalers for hires fix")
    def latent_upscale_modes() -> list[dict]:
        from ..models.upscalers import LATENT_UPSCALE_MODES
        return [{"name": n} for n in LATENT_UPSCALE_MODES]
