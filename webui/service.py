"""The one function the UI and the REST API both call: fields in, saved result out.

Service holds what the app builds once at start-up (settings, catalog, the pipeline manager,
the job registry) and passes to the UI and API builders -- there are no other globals.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .catalog import Catalog
from .engine import GenerationResult, PipelineManager
from .errors import UserError
from .jobs import Job, JobRegistry, Snapshot
from .outputs import save_result
from .ratelimit import RateLimiter
from .request import GenerationRequest, build_request
from .settings import Settings
from .spaces import gpu

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
    rate: RateLimiter | None = None
    safety: Any = None  # safety.SafetyFilter when --safety-filter is on
    # generate_stream, wrapped with spaces.GPU on ZeroGPU (it must be wrapped at start-up)
    gpu_stream: Callable[..., Iterator] | None = None

    def __post_init__(self):
        if self.gpu_stream is None:
            self.gpu_stream = gpu(self.generate_stream)

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
        safety = None
        if settings.safety_filter:
            from .safety import load_safety_filter
            safety = load_safety_filter(settings.models_dir, manager.device)
        rate = RateLimiter(settings.rate_limit) if settings.rate_limit > 0 else None
        service = cls(settings, catalog, manager, rate=rate, safety=safety)
        if load_model and first is not None:
            manager.select(first.name)
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
        job.listener = listener
        result = self.manager.generate(req, job)
        if self.safety is not None:
            self.safety.apply(result)  # before saving: a hidden image never reaches the disk
        if req.save_images:
            save_result(result, self.settings.outputs_dir)
        self.jobs.record(owner, result)
        return result

    def generate_stream(self, req: GenerationRequest, owner: str | None = None,
                        poll_s: float = 0.25) -> Iterator[Snapshot | GenerationResult]:
        """Run `req` in a worker thread, yielding Snapshots (step, ETA, queue position, new
        previews) while it runs and the GenerationResult last. Closing the generator early
        (the browser went away) interrupts the job; finished images are still saved."""
        job = self.jobs.new(owner)
        changed = threading.Event()
        box: dict[str, Any] = {}

        def work():
            try:
                box["result"] = self.generate(req, owner=owner, listener=lambda _j: changed.set(), job=job)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = e
            finally:
                changed.set()

        worker = threading.Thread(target=work, name=f"job-{job.id[:8]}", daemon=True)
        worker.start()
        shown_preview, last_text = -1, None
        try:
            while worker.is_alive():
                changed.wait(poll_s)
                changed.clear()
                new = job.preview is not None and job.preview_count != shown_preview
                text = job.status_text()
                if new or text != last_text:
                    shown_preview, last_text = job.preview_count, text
                    yield Snapshot(text, job.progress(), job.preview if new else None, job.preview_kind)
            worker.join()
        except GeneratorExit:
            job.interrupt()
            raise
        if "error" in box:
            raise box["error"]
        yield box["result"]

    def admit(self, client: str | None) -> None:
        """The rate limit (--rate-limit), checked before a request joins the GPU queue;
        raises UserError with the wait when the client is over it."""
        if self.rate is not None:
            self.rate.admit(client)

    def select_model(self, name: str) -> str:
        model = self.manager.select(name)
        return self.catalog.title(model.ckpt)

    def checkpoint_titles(self) -> list[str]:
        return [self.catalog.title(c) for c in self.catalog.list()]

    def active_title(self) -> str | None:
        m = self.manager.active
        return self.catalog.title(m.ckpt) if m else None


__all__ = ["DEMO_NOTICE", "Service", "UserError"]
