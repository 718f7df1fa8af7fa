"""What a feature is to the engine: one object with optional hooks.

The engine calls the hooks at named points of a run and of each pass (see denoise.run_pass);
it never asks which feature an extension is. Hooks receive the run's context (`plan.RunContext`)
and, per pass, its spec (`plan.PassSpec`) and pipeline object.

| hook | when |
|---|---|
| `prepare(ctx)` | once per run: load models, resolve files; bad input fails here, before any pass |
| `pipeline_class(name)` | choose the diffusers pipeline class (ControlNet's classes) |
| `components(ctx)` | pipeline parts to swap in (a VAE, ControlNet models) |
| `around_call(ctx, spec, pipe)` | context manager around one pass: patch shared modules, always restore |
| `call_kwargs(ctx, spec, pipe)` | extra pipeline arguments, sized to the pass |
| `on_step(ctx, pipe, step, tensors)` | after each step; may return tensors to replace ("latents") |
| `infotext(ctx)` | the infotext keys it writes |
| `batch_key()` | what must be equal for requests to share one UNet batch |
| `batchable`, `in_subpasses` | declared: may share a batch; applies in hires and face passes |
| `for_subpass(ctx, prompt, negative)` | the extension a later pass with this prompt uses |
"""

from __future__ import annotations

from contextlib import nullcontext


class Extension:
    batchable = True      # requests using it may share one UNet batch (when their batch keys match)
    in_subpasses = True   # it applies in the hires pass and the face pass too

    def batch_key(self) -> tuple:
        return ()

    def prepare(self, ctx) -> None:
        pass

    def pipeline_class(self, name: str) -> str:
        return name

    def components(self, ctx) -> dict:
        return {}

    def around_call(self, ctx, spec, pipe):
        return nullcontext()

    def call_kwargs(self, ctx, spec, pipe) -> dict:
        return {}

    def on_step(self, ctx, pipe, step: int, tensors: dict) -> dict | None:
        return None

    def infotext(self, ctx) -> dict:
        return {}

    def for_subpass(self, ctx, prompt: str, negative: str) -> "Extension | None":
        return self if self.in_subpasses else None
