"""The one function the UI and the REST API both call: fields in, saved result out.

Service holds what the app builds once at start-up (settings, catalog, the pipeline manager,
the job registry) and passes to the UI and API builders -- there are no other globals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from .catalog import Catalog
from .engine import GenerationResult, PipelineManager
from .errors import UserError
from .gpu_queue import GPUQueue, in_caller_context
from .jobs import Job, JobRegistry
from .outputs import save_result
from .request import GenerationRequest, build_request
from .settings import Settings

log = logging.getLogger(__name__)

DEMO_NOTICE = ("Demo mode: the loaded model has random weights and draws coloured noise. It is here "
               "to try the interface. Put a real checkpoint in models/Stable-diffusion (or start with "
               "--model) to paint portraits.")


@dataclass
class Service:
    settings: Settings
    catalog: Catalog
    manager: PipelineManager
    jobs: JobRegistry = field(default_factory=JobRegistry)
    queue: GPUQueue | None = None  # built in __post_init__ from the manager and settings

    def __post_init__(self):
        if self.queue is None:
            self.queue = GPUQueue(self.manager, max_batch=self.settings.limits.max_batch_size,
                                  batching=self.settings.batching)

    @classmethod
    def create(cls, settings: Settings, load_model: bool = True) -> "Service":
        if settings.demo:
            from .tiny_models import ensure_demo_model
            ensure_demo_model(settings.models_dir)
        catalog = Catalog(settings.models_dir)
        if settings.model:
            first = catalog.add(settings.model)
        elif settings.demo:
            first = catalog.find("demo-tiny-sd15")
        else:
            first = catalog.list()[0] if catalog.list() else None
        manager = PipelineManager(settings, catalog)
        service = cls(settings, catalog, manager)
        if load_model and first is not None:
            manager.select(first.name)
            if settings.fast and settings.warmup:
                service.warmup()
        return service

    @property
    def demo_active(self) -> bool:
        m = self.manager.active
        return m is not None and m.ckpt.name.endswith("demo-tiny-sd15")

    def request(self, fields: dict[str, Any], task: str = "txt2img") -> GenerationRequest:
        return build_request(fields, self.settings.limits, task)

    def generate(self, req: GenerationRequest, owner: str | None = None,
                 listener: Callable[[Job], None] | None = None, job: Job | None = None) -> GenerationResult:
        """Run a validated request and save its images (a failed save only adds a warning)."""
        job = job or self.jobs.new(owner)
        job.listener = in_caller_context(listener)
        # Every generation goes through the one GPU queue: fair between owners, and batched
        # with other users' compatible requests when they wait at the same time.
        result = self.queue.run(req, job)
        if req.save_images:
            save_result(result, self.settings.outputs_dir)
        return result

    def close(self) -> None:
        """Finish queued jobs, stop the GPU worker and free the models (tests, benchmarks)."""
        self.queue.close()
        self.manager.unload_all()

    def warmup(self) -> None:
        """Fast mode: compile the common sizes now rather than on users' first requests. Runs
        through the queue, on the thread that will replay the CUDA graphs."""
        from .fast import WARMUP_SIZES

        model = self.manager.active
        if model is None:
            return
        for w, h in WARMUP_SIZES["sdxl" if model.is_sdxl else "sd"]:
            req = self.request({"prompt": "warm-up", "steps": 2, "width": w, "height": h, "save_images": False})
            self.generate(req, owner="warm-up")
            log.info("fast mode: compiled %dx%d", w, h)

    def select_model(self, name: str) -> str:
        model = self.manager.select(name)
        return self.catalog.title(model.ckpt)

    def checkpoint_titles(self) -> list[str]:
        return [self.catalog.title(c) for c in self.catalog.list()]

    def active_title(self) -> str | None:
        m = self.manager.active
        return self.catalog.title(m.ckpt) if m else None


__all__ = ["DEMO_NOTICE", "Service", "UserError"]
