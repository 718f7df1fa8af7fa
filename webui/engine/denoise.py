"""One pass: a diffusers pipeline call described by a `PassSpec`, written the way a diffusers
pipeline's `__call__` is -- numbered steps, each a short function.

This module knows no feature by name. Whatever a request adds (its VAE, adapters, guidance
maps, reference images, progress and interrupt) comes in through the run's extensions and
their hooks: `pipeline_class`, `components`, `around_call`, `call_kwargs`, `on_step`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import ExitStack, contextmanager

import diffusers
import torch
from PIL import Image

from ..prompts.prompt_encoder import encode_prompts
from . import tasks
from .plan import PassResult, PassSpec, RunContext

# The VAE decodes/encodes in tiles when one call handles more than this many pixels (all
# images of the batch together): 1.5 megapixels, e.g. one 1216x1216 image or two 864x864.
# Below it the VAE runs whole (exact, and faster); above it, an untiled SD1.5 fp16 decode
# needs several GiB of activations (it grows with the pixel count), which is where large
# second passes ran out of memory on 8-12 GiB cards while the base pass still fit.
TILED_VAE_PIXELS = 1536 * 1024
_EMBED_KEYS = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")


def run_pass(ctx: RunContext, spec: PassSpec, extensions: list | None = None) -> PassResult:
    """Run one pass with `extensions` (default: the run's) and return its latents, and its
    images when `spec.decode`."""
    exts = ctx.extensions if extensions is None else extensions
    pipe = build_pipeline(ctx, spec, exts)                                 # 1. pipeline and scheduler
    with ExitStack() as stack, vae_tiling(pipe.vae, spec.width * spec.height * spec.rows):
        for ext in exts:                                                   # 2. extensions patch, then restore
            stack.enter_context(ext.around_call(ctx, spec, pipe))
        embeds, result = prompt_embeddings(ctx, spec, pipe)                # 3. prompt embeddings
        kwargs = call_arguments(ctx, spec, pipe, exts)                     # 4. inputs and extension kwargs
        latents = denoise(ctx, spec, pipe, exts, {**kwargs, **embeds})   # 5. the denoising loop
    if spec.decode:                                                        # 6. latents -> pictures
        t = time.perf_counter()
        # Padding rows are decoded too: a compiled VAE then also sees bucketed shapes only.
        result.images = decode(ctx, latents, exts)[:spec.rows]
        ctx.engine.sync()
        ctx.time(f"{spec.label}decode", time.perf_counter() - t)
    result.latents = latents[:spec.rows]
    return result


# ---- 1. pipeline ------------------------------------------------------------------------------

def build_pipeline(ctx: RunContext, spec: PassSpec, exts: list):
    """A new lightweight pipeline object over the shared weights, owning this pass's scheduler
    and interrupt flag; extensions choose its class and swap in parts (a VAE, guidance models).
    (Not `from_pipe`: it recasts the shared modules' dtype.)"""
    model = ctx.model
    cls_name = tasks.pipeline_class(spec.task, model.is_sdxl)
    for ext in exts:
        cls_name = ext.pipeline_class(cls_name)
    scheduler, notes = ctx.engine.schedulers.build(model.pipe.scheduler.config, spec.sampler, spec.schedule)
    ctx.note(*notes)
    cls = getattr(diffusers, cls_name)
    expected, optional = cls._get_signature_keys(cls)
    base = model.pipe
    kwargs = {k: v for k, v in base.components.items() if k in expected}
    kwargs.update({k: base.config[k] for k in optional if k in base.config})
    kwargs["scheduler"] = scheduler
    kwargs.update(components(ctx, exts))
    for k in expected:
        kwargs.setdefault(k, None)  # e.g. image_encoder, feature_extractor, safety_checker
    if "requires_safety_checker" in optional:
        kwargs["requires_safety_checker"] = False
    pipe = cls(**kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def components(ctx: RunContext, exts: list) -> dict:
    out: dict = {}
    for ext in exts:
        out.update(ext.components(ctx))
    return out


# ---- 3. prompt embeddings ---------------------------------------------------------------------

class PromptCache:
    """Prompt embeddings, remembered for the last few prompts: artists re-run one prompt with
    new seeds, and the text encoders then cost nothing (the tensors are never modified). The
    key holds everything that changes them: the texts (their extra-network tags name the
    text-encoder adapters active now) and the textual-inversion files in use."""

    def __init__(self, size: int = 8):
        self.size = size
        self._items: OrderedDict[tuple, object] = OrderedDict()

    def clear(self) -> None:
        self._items.clear()

    def encode(self, model, clip_skip: int, prompts: list[str], negatives: list[str], embeddings: dict):
        pipe = model.pipe
        used = tuple(sorted((n, getattr(e, "sha256_12", None)) for n, e in embeddings.items()))
        key = (id(pipe), tuple(prompts), tuple(negatives), clip_skip, used)
        enc = self._items.get(key)
        if enc is None:
            enc = encode_prompts(
                [pipe.tokenizer] + ([pipe.tokenizer_2] if model.is_sdxl else []),
                [pipe.text_encoder] + ([pipe.text_encoder_2] if model.is_sdxl else []),
                prompts, negatives, clip_skip=clip_skip, sdxl=model.is_sdxl, embeddings=embeddings,
            )
            self._items[key] = enc
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return enc


def encode_group(ctx: RunContext, group, clip_skip: int):
    """(encoded prompts, warnings) of one prompt group, with the embeddings its texts use."""
    found, notes = ctx.engine.embeddings.for_texts([group.prompt, group.negative])
    enc = ctx.engine.prompts.encode(ctx.model, clip_skip, [group.prompt] * group.count,
                                    [group.negative] * group.count, found)
    return enc, notes + [w for w in enc.warnings if w not in notes]


def prompt_embeddings(ctx: RunContext, spec: PassSpec, pipe) -> tuple[dict, PassResult]:
    """Each group encoded on its own (a shared padding length would change its picture), then
    the rows stacked; rows up to `spec.pad_to` repeat the last one."""
    t = time.perf_counter()
    result = PassResult(latents=None)
    parts = []
    for i, group in enumerate(spec.groups):
        enc, notes = encode_group(ctx, group, spec.clip_skip)
        parts.append(enc)
        result.notes.append(notes)
        if enc.used_embeddings:
            ctx.embeddings_used.setdefault(i, {}).update(enc.used_embeddings)
    dev, dt = ctx.engine.device, ctx.model.pipe.unet.dtype
    embeds = {}
    for key in _EMBED_KEYS[:4 if ctx.model.is_sdxl else 2]:
        rows = torch.cat([getattr(e, key) for e in parts])
        if spec.pad_to > len(rows):
            rows = torch.cat([rows, rows[-1:].expand(spec.pad_to - len(rows), *rows.shape[1:])])
        embeds[key] = rows.to(dev, dt)
    ctx.time("encode", time.perf_counter() - t)
    return embeds, result


# ---- 4. call arguments ------------------------------------------------------------------------

def call_arguments(ctx: RunContext, spec: PassSpec, pipe, exts: list) -> dict:
    if spec.image is None:
        args = {"width": spec.width, "height": spec.height}
    else:
        args = {"image": spec.image, "strength": spec.strength}
        if spec.mask is not None:
            args.update(mask_image=spec.mask, width=spec.width, height=spec.height)
    for ext in exts:
        args.update(ext.call_kwargs(ctx, spec, pipe))
    return args


# ---- 5. the denoising loop --------------------------------------------------------------------

def denoise(ctx: RunContext, spec: PassSpec, pipe, exts: list, kwargs: dict) -> torch.Tensor:
    # Noise comes from a CPU generator per image, so a picture never depends on its batch.
    seeds = list(spec.seeds) + [0] * max(0, spec.pad_to - len(spec.seeds))
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    t = time.perf_counter()
    latents = pipe(
        **kwargs,
        num_inference_steps=spec.steps,
        guidance_scale=spec.cfg_scale,
        generator=generators if len(generators) > 1 else generators[0],
        output_type="latent",
        callback_on_step_end=step_callback(ctx, exts),
    ).images
    ctx.engine.sync()
    ctx.time(f"{spec.label}denoise", time.perf_counter() - t)
    return latents


def step_callback(ctx: RunContext, exts: list):
    """The extensions' `on_step` hooks as one `callback_on_step_end` (what diffusers'
    MultiPipelineCallbacks does): each may return tensors to replace, e.g. "latents"."""
    def on_step(pipe, i, t, kwargs):
        out = {}
        for ext in exts:
            changed = ext.on_step(ctx, pipe, i, {**kwargs, **out})
            if changed:
                out.update(changed)
        return out
    return on_step


# ---- 6. decode --------------------------------------------------------------------------------

@contextmanager
def vae_tiling(vae, pixels: int):
    """Tiled (and one-image-at-a-time) VAE while handling more than TILED_VAE_PIXELS.

    Switched on the VAE for one call only; the caller holds the GPU lock, and the previous
    state is restored even when the call fails.
    """
    big = pixels > TILED_VAE_PIXELS
    before = (getattr(vae, "use_tiling", False), getattr(vae, "use_slicing", False))
    if big:
        vae.enable_tiling()
        vae.enable_slicing()
    try:
        yield big
    finally:
        if big:
            vae.use_tiling, vae.use_slicing = before


def to_pil(decoded: torch.Tensor, processor) -> list[Image.Image]:
    """VAE output -> PIL images with diffusers' postprocess arithmetic (float32 x 255, rounded),
    done on the device: a quarter of the bytes cross to the CPU, and no per-pixel numpy work
    (8 images of 512x512: 64 ms -> 20 ms on an H200 machine)."""
    images = decoded.float()
    if processor.config.do_normalize:
        images = processor.denormalize(images)
    pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(p) for p in pixels]


@torch.no_grad()
def decode(ctx: RunContext, latents: torch.Tensor, exts: list | None = None) -> list[Image.Image]:
    """Latents -> pictures with the VAE this run's extensions chose (else the checkpoint's)."""
    model = ctx.model
    vae = components(ctx, ctx.extensions if exts is None else exts).get("vae") or model.pipe.vae
    cfg = vae.config
    lat = latents / cfg.scaling_factor
    if getattr(cfg, "shift_factor", None):
        lat = lat + cfg.shift_factor
    pixels = lat.shape[0] * lat.shape[2] * lat.shape[3] * model.pipe.vae_scale_factor ** 2
    with vae_tiling(vae, pixels):  # large decodes go tile by tile (memory)
        out = vae.decode(lat.to(vae.dtype), return_dict=False)[0]
        if vae.dtype != torch.float32 and ctx.engine.offload == "none" and not torch.isfinite(out).all():
            # The fp16 VAE overflowed (the "black image" bug): decode again in fp32.
            vae.to(torch.float32)
            try:
                out = vae.decode(lat.float(), return_dict=False)[0]
            finally:
                vae.to(ctx.engine.dtype)
            ctx.note("the VAE produced NaNs in half precision; decoded in fp32 instead")
    return to_pil(out, model.pipe.image_processor)
