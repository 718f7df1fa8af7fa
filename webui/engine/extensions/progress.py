"""Progress, live previews, Skip and Interrupt, per step, as an extension.

Each job owns some rows of the batch (one request alone: all of them; merged requests: one
slice each, in the order of the pass's prompt groups). A job that is stopped keeps what a run
of its own would keep -- the sampler's denoised estimate on Interrupt, where it has one -- and
its rows are put back after every later step, so stopping one user's job never stops or
changes the others sharing the batch. When every job has stopped, the pipeline stops.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from ..previews import denoised_estimate
from .base import Extension

log = logging.getLogger(__name__)


class Progress(Extension):
    def __init__(self, jobs: list):
        self.jobs = jobs
        self.rows: list[slice] = []
        self.frozen: dict[int, object] = {}  # job index -> its latents when it was stopped
        self.size = (0, 0)

    @contextmanager
    def around_call(self, ctx, spec, pipe):
        if len(self.jobs) == 1:
            self.rows = [slice(0, spec.rows)]
        else:
            starts = [0]
            for g in spec.groups:
                starts.append(starts[-1] + g.count)
            self.rows = [slice(a, b) for a, b in zip(starts, starts[1:])]
        self.frozen = {}
        self.size = (spec.width, spec.height)
        for job in self.jobs:
            job.step, job.total_steps = 0, max(1, int(spec.steps * spec.strength))
        yield

    def on_step(self, ctx, pipe, step, tensors):
        latents = tensors.get("latents")
        for k, job in enumerate(self.jobs):
            if k in self.frozen:
                continue
            job.step = step + 1
            job.total_steps = getattr(pipe, "_num_timesteps", None) or job.total_steps
            last = job.step >= job.total_steps
            every = ctx.engine.settings.preview_every
            if len(self.jobs) == 1 and every > 0 and latents is not None and not last \
                    and not job.stop_requested and job.step % every == 0:
                self._preview(ctx, job, pipe, latents)
            job.notify()  # listeners (progress bars, tests) see this step; a stop they ask for applies now
            if job.stop_requested and not last and latents is not None:
                x0 = denoised_estimate(pipe, latents) if job.interrupted else None
                self.frozen[k] = (x0 if x0 is not None else latents)[self.rows[k]].clone()
                job.cut_short = True
        if len(self.frozen) == len(self.jobs):
            pipe._interrupt = True  # this pass's own pipeline object: nobody else's
        if not self.frozen or latents is None:
            return None
        latents = latents.clone()
        for k, kept in self.frozen.items():
            latents[self.rows[k]] = kept
        return {"latents": latents}

    def _preview(self, ctx, job, pipe, latents) -> None:
        previews, family = ctx.engine.previews, ctx.model.family
        try:
            x0 = denoised_estimate(pipe, latents)
            image = previews.render(x0 if x0 is not None else latents, family, self.size)
            if image is not None:
                job.set_preview(image, previews.kind(family))
        except Exception:  # noqa: BLE001 - a preview must never cost the user the image
            log.exception("live preview failed; generation continues")
