"""A run: a request (or several merged into one UNet batch) from its prepared extensions to
its pictures and infotexts.

One request: for each of its batches (n_iter), the base pass, then the stages -- hires fix
on the batch's latents, face detail on each finished picture. Merged requests (txt2img only,
no stages: see `batch_key`) share one base pass; each keeps its own prompts, seeds, progress
and interrupt.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from .. import __version__
from ..metadata.infotext import build_infotext
from . import extensions, fast, tasks
from .denoise import decode, encode_group, run_pass
from .memory import stage_peak
from .plan import GenerationResult, PassSpec, Prompts, RunContext
from .stages import any_wanted, detailer, hires


def batch_key(req) -> tuple | None:
    """Requests with equal keys can share one UNet batch; None: this one always runs alone.

    Everything that changes the denoising loop for the whole batch is in the key (model, size,
    steps, sampler, schedule, CFG, clip skip, and what the extensions need equal); prompts and
    seeds may differ. Jobs with several batches (n_iter > 1), a stage after the base pass or an
    init image run alone (img2img can join later)."""
    if req.task != "txt2img" or req.n_iter != 1 or req.subseed_strength or any_wanted(req):
        return None
    features = extensions.batch_key(req)
    if features is None:
        return None
    return (req.sd_model_checkpoint, req.width, req.height, req.steps, req.sampler_name, req.scheduler,
            req.cfg_scale, req.clip_skip, features)


def new_context(engine, model, reqs: list, jobs: list) -> RunContext:
    """The run's context with its extensions prepared (models loaded, files resolved)."""
    ctx = RunContext(engine, model, list(reqs), list(jobs), extensions.for_request(reqs[0], list(jobs)))
    for ext in ctx.extensions:
        ext.prepare(ctx)
    return ctx


def base_spec(req, prepared, seeds: list[int], decode: bool = True) -> PassSpec:
    return PassSpec(task=prepared.kind, groups=(Prompts(req.prompt, req.negative_prompt, len(seeds)),),
                    seeds=tuple(seeds), width=prepared.width, height=prepared.height, steps=req.steps,
                    cfg_scale=req.cfg_scale, sampler=req.sampler_name, schedule=req.scheduler,
                    clip_skip=req.clip_skip, strength=tasks.strength(req, prepared), image=prepared.image,
                    mask=prepared.mask, region=prepared.region,
                    source_size=prepared.original.size if prepared.original else None, decode=decode)


def run_request(ctx: RunContext, memory: dict | None) -> GenerationResult:
    req, job, engine = ctx.request, ctx.job, ctx.engine
    prepared = tasks.prepare(req, ctx.model)  # resized init image, masks, crop region...
    seeds = req.seeds()
    images: list[Image.Image] = []
    infotexts: list[str] = []
    done_seeds: list[int] = []
    out_of_memory = False
    try:
        for b in range(req.n_iter):
            if job.interrupted:
                break
            batch_seeds = seeds[b * req.batch_size:(b + 1) * req.batch_size]
            job.start_batch(b, req.n_iter)
            if tasks.skip_denoise(req):
                decoded = [prepared.image] * len(batch_seeds)
            else:
                decoded = _base_and_hires(ctx, prepared, batch_seeds, memory)
            if job.cut_short and not job.interrupted:
                continue  # Skip: this batch's unfinished pictures are dropped, the next batch starts
            # Interrupt keeps the picture it stopped (the sampler's denoised estimate where it has one),
            # marked in its infotext, since the seed alone no longer reproduces it.
            stopped = {"Interrupted at step": f"{job.step}/{job.total_steps}"} if job.cut_short else {}
            for img, seed in zip(decoded, batch_seeds):
                img = tasks.finish(img, prepared)  # paste inpaint result back over the original
                face = {}
                if req.face_detail and not job.interrupted:
                    with stage_peak(engine.device, memory, "face detail"):
                        img, face = detailer.engine_pass(ctx, img, seed)
                images.append(img)
                done_seeds.append(seed)
                infotexts.append(infotext(ctx, req, seed, {**_used(ctx, 0), **face, **stopped}))
    except torch.OutOfMemoryError:
        if not images:
            raise  # nothing finished yet: the manager reports it
        out_of_memory = True  # handled below, once the traceback (and its tensors) is gone
    if out_of_memory:
        # Never lose finished pictures: keep them and say what to lower for the rest.
        engine.free_memory()
        ctx.note(engine.out_of_memory_message(req).replace("; memory has been freed, so try again.", "")
                 + f". Kept the {len(images)} image(s) finished before it.")
    ctx.timings["total"] = sum(ctx.timings.values())
    return GenerationResult(req, images, done_seeds, infotexts, ctx.model.ckpt.name, ctx.model.model_hash,
                            ctx.notes, ctx.timings, memory=memory or {}, interrupted=job.interrupted)


def _used(ctx: RunContext, group: int) -> dict:
    used = ctx.embeddings_used.get(group)
    return {"TI hashes": dict(used)} if used else {}


def _base_and_hires(ctx: RunContext, prepared, seeds: list[int], memory) -> list[Image.Image]:
    with_hires = hires.wanted(ctx.request)
    with stage_peak(ctx.engine.device, memory, "base"):
        out = run_pass(ctx, base_spec(ctx.request, prepared, seeds, decode=not with_hires))
        ctx.note(*out.notes[0])
        if not with_hires:
            return out.images
        if ctx.job.stop_requested:  # stopped: the first pass's picture is the result
            return decode(ctx, out.latents)
    with stage_peak(ctx.engine.device, memory, "hires"):
        return hires.run(ctx, out.latents, seeds)


def run_merged(ctx: RunContext, load: float) -> list[GenerationResult]:
    """One denoising loop and one VAE decode over several txt2img requests with equal batch
    keys and prompts of equal encoded length (see the manager's grouping)."""
    reqs, jobs, engine = ctx.requests, ctx.jobs, ctx.engine
    first = reqs[0]
    prepared = tasks.prepare(first, ctx.model)
    seeds = [s for r in reqs for s in r.seeds()[: r.batch_size]]
    # Compiled: pad to a batch bucket so merged batches hit a few compiled shapes; the padding
    # rows repeat the last request and are dropped (rows never mix in the UNet).
    pad = fast.batch_bucket(len(seeds)) if engine.compiling else 0
    spec = PassSpec(task="txt2img", groups=tuple(Prompts(r.prompt, r.negative_prompt, r.batch_size) for r in reqs),
                    seeds=tuple(seeds), width=first.width, height=first.height, steps=first.steps,
                    cfg_scale=first.cfg_scale, sampler=first.sampler_name, schedule=first.scheduler,
                    clip_skip=first.clip_skip, pad_to=pad)
    for j in jobs:
        j.start_batch(0, 1)
    memory: dict[str, float] = {}
    with stage_peak(engine.device, memory, "base"):
        out = run_pass(ctx, spec)
    results, start = [], 0
    for k, (req, job) in enumerate(zip(reqs, jobs)):
        req_seeds = seeds[start:start + req.batch_size]
        images = [tasks.finish(img, prepared) for img in out.images[start:start + req.batch_size]]
        start += req.batch_size
        timings = {"load": load, **ctx.timings}
        timings["total"] = sum(timings.values())
        timings["batched_with"] = float(len(reqs) - 1)
        notes = ctx.notes + [n for n in out.notes[k] if n not in ctx.notes]
        results.append(GenerationResult(req, images, req_seeds,
                                        [infotext(ctx, req, s, _used(ctx, k)) for s in req_seeds],
                                        ctx.model.ckpt.name, ctx.model.model_hash, notes, timings,
                                        interrupted=job.interrupted, memory=dict(memory)))
    return results


def prompt_length(ctx: RunContext, req) -> tuple:
    """The shape of a request's encoded prompt: merged requests must share it, since padding a
    prompt with empty chunks would change its picture."""
    enc, _ = encode_group(ctx, Prompts(req.prompt, req.negative_prompt, req.batch_size), req.clip_skip)
    return tuple(enc.prompt_embeds.shape[1:])


def infotext(ctx: RunContext, req, seed: int, extra: dict | None = None) -> str:
    model = ctx.model
    params: dict[str, object] = {
        "Steps": req.steps,
        "Sampler": req.sampler_name,
        "Schedule type": req.scheduler,
        "CFG scale": req.cfg_scale,
        "Seed": seed,
        "Size": f"{req.width}x{req.height}",
        "Model hash": model.model_hash,
        "Model": Path(model.ckpt.name).name,
        "Clip skip": req.clip_skip if req.clip_skip > 1 else None,
    }
    params.update(tasks.infotext_params(req))
    params.update(hires.infotext_params(req))
    for ext in ctx.extensions:
        params.update(ext.infotext(ctx))
    params.update(extra or {})
    params.update(dict(req.extra_params))
    params["Version"] = f"v{__version__}"
    return build_infotext(req.prompt, req.negative_prompt, params)
