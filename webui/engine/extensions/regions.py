"""Regions (request/regions.py) in the engine: each region's noise prediction with its own prompt
and its own LoRA set, put together with hard masks at latent resolution.

While a pass runs, the shared UNet's `forward` is replaced (an instance attribute, removed again
when the pass ends, also when it fails): one UNet call becomes one call per region, each with
that region's prompt embeddings in the conditional rows (the negative is shared) and, when the
regions' `<lora:...>` sets differ, with that region's set active for the whole call (both CFG
halves), so a LoRA acts only inside its own region. The outputs are combined column by column
(or row by row) of the latent. The hires pass uses the same regions at its size; a pass over a
part of the picture (a face crop, inpaint "only masked") uses the one region holding that
part's centre. Not batchable: its UNet calls are its own.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import torch

from ...request.regions import RegionSpec, bounds, region_prompts, split_prompt
from ..denoise import prompt_embeddings
from ..plan import Prompts
from .base import Extension
from .lora import prompt_tags

_MISSING = object()


class Regions(Extension):
    batchable = False
    in_subpasses = True

    def __init__(self, spec: RegionSpec):
        self.spec = spec

    def batch_key(self) -> tuple:
        return (self.spec,)

    def infotext(self, ctx) -> dict:
        return self.spec.infotext()

    def for_subpass(self, ctx, prompt: str, negative: str) -> "Regions | None":
        # A later pass whose prompt has one part per region keeps the regions; another prompt
        # (a face prompt of its own) runs without them.
        return self if len(split_prompt(prompt)[1]) == len(self.spec.ratios) else None

    def _wanted(self, ctx, prompt: str) -> list:
        library = ctx.engine.loras
        out = []
        for name, weight in prompt_tags(prompt):
            f = library.find(name)
            if f is not None:
                out.append((f, weight))
        return out

    def _chosen(self, spec) -> list[int]:
        """The regions this pass uses: all, or the one holding the centre of its part."""
        if spec.region is None or spec.source_size is None:
            return list(range(len(self.spec.ratios)))
        x0, y0, x1, y1 = spec.region
        w, h = spec.source_size
        along, size = ((x0 + x1) / 2, w) if self.spec.mode == "Columns" else ((y0 + y1) / 2, h)
        spans = bounds(self.spec.ratios, 10_000)
        cell = min(int(along / max(size, 1) * 10_000), 9_999)
        return [next(i for i, (a, b) in enumerate(spans) if a <= cell < b)]

    @contextmanager
    def around_call(self, ctx, spec, pipe):
        per_group = [region_prompts(g.prompt) for g in spec.groups]
        if any(len(p) != len(self.spec.ratios) for p in per_group):
            ctx.note(f"{spec.label or 'the '}pass ran without regions: its prompt does not have one BREAK part per "
                     "region ratio")
            yield
            return
        chosen = self._chosen(spec)
        adapters = ctx.model.adapters
        outer = list(adapters.wanted) if adapters is not None else []
        regions = []
        try:
            for r in chosen:
                groups = tuple(Prompts(p[r], g.negative, g.count) for p, g in zip(per_group, spec.groups))
                wanted = self._wanted(ctx, groups[0].prompt)
                if adapters is not None:
                    ctx.note(*adapters.activate(wanted))  # text-encoder LoRAs change the embeddings
                embeds, _ = prompt_embeddings(ctx, dataclasses.replace(spec, groups=groups), pipe)
                regions.append((r, wanted, embeds))
        finally:
            if adapters is not None:
                adapters.activate(outer)
        switch = adapters is not None and len({tuple((str(f.path), w) for f, w in x[1]) for x in regions}) > 1
        unet = pipe.unet
        before = unet.__dict__.get("forward", _MISSING)
        original = unet.forward
        unet.forward = self._forward(original, regions, adapters if switch else None, outer)
        try:
            yield
        finally:
            if before is _MISSING:
                unet.__dict__.pop("forward", None)
            else:
                unet.forward = before
            if switch:
                adapters.activate(outer)

    def _forward(self, original, regions, adapters, outer):
        mode, ratios = self.spec.mode, self.spec.ratios

        def forward(sample, timestep, encoder_hidden_states=None, *args, **kwargs):
            combined = None
            added = kwargs.get("added_cond_kwargs")
            for r, wanted, embeds in regions:
                if adapters is not None:
                    adapters.activate(wanted)
                n = embeds["prompt_embeds"].shape[0]
                cfg = encoder_hidden_states.shape[0] == 2 * n
                ehs = torch.cat([embeds["negative_prompt_embeds"], embeds["prompt_embeds"]]) if cfg \
                    else embeds["prompt_embeds"]
                kw = dict(kwargs)
                if added is not None and "pooled_prompt_embeds" in embeds and "text_embeds" in added:
                    pooled = embeds["pooled_prompt_embeds"]
                    kw["added_cond_kwargs"] = {**added, "text_embeds": torch.cat(
                        [embeds["negative_pooled_prompt_embeds"], pooled]) if cfg else pooled}
                out = original(sample, timestep, ehs.to(encoder_hidden_states.dtype), *args, **kw)
                pred = out[0] if isinstance(out, tuple) else out.sample
                if len(regions) == 1:
                    combined = pred
                    break
                axis = 3 if mode == "Columns" else 2
                a, b = bounds(ratios, pred.shape[axis])[r]
                if combined is None:
                    combined = torch.zeros_like(pred)
                if axis == 3:
                    combined[:, :, :, a:b] = pred[:, :, :, a:b]
                else:
                    combined[:, :, a:b, :] = pred[:, :, a:b, :]
            if adapters is not None:
                adapters.activate(outer)
            if isinstance(out, tuple):
                return (combined,) + tuple(out[1:])
            out.sample = combined
            return out

        return forward
