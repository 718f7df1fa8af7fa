"""Per-request live state: progress, preview, interrupt and skip.

A Job belongs to the request (and the browser session) that started it; the engine only
reads its flags, so one user's Interrupt can never reach another user's generation.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from PIL import Image

from .errors import UserError


@dataclass
class Job:
    owner: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "queued"          # queued -> running -> done
    queue_position: int | None = None  # set by the GPU queue while waiting (0 = next)
    image_index: int = 0           # which batch (of n_iter) is being denoised
    image_count: int = 0
    step: int = 0
    total_steps: int = 0
    started: float | None = None
    preview: Image.Image | None = None
    preview_step: int = -1
    interrupted: bool = False
    skipped: bool = False
    # Called after every step (from the generating thread): UI progress bars hook in here.
    listener: object = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def interrupt(self) -> None:
        self.interrupted = True

    def skip(self) -> None:
        self.skipped = True

    def start_batch(self, index: int, count: int) -> None:
        with self._lock:
            if self.started is None:
                self.started = time.monotonic()
            self.state = "running"
            self.image_index, self.image_count = index, count
            self.step, self.skipped = 0, False

    def progress(self) -> float:
        """0..1 over the whole job (all batches)."""
        if self.state == "done":
            return 1.0
        if not self.total_steps or not self.image_count:
            return 0.0
        return min(1.0, (self.image_index + self.step / self.total_steps) / self.image_count)

    def eta(self) -> float | None:
        p = self.progress()
        if self.started is None or p <= 0:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / p - elapsed

    def notify(self) -> None:
        if callable(self.listener):
            self.listener(self)

    @property
    def stop_requested(self) -> bool:
        return self.interrupted or self.skipped


class JobRegistry:
    """The jobs currently known, by id; `latest_for(owner)` answers "my progress"."""

    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def new(self, owner: str | None, job_id: str | None = None) -> Job:
        """A new job; `job_id` lets an API client pick the id it will poll (A1111's force_task_id)."""
        job = Job(owner=owner, id=job_id) if job_id else Job(owner=owner)
        with self._lock:
            if job.id in self._jobs:
                raise UserError(f"a job with id {job.id!r} already exists; use a new id", field="force_task_id")
            # Keep finished jobs briefly so a late progress poll still sees "done".
            done = [j for j in self._jobs.values() if j.state == "done"]
            for j in done[:-64]:
                self._jobs.pop(j.id, None)
            self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def latest_for(self, owner: str | None) -> Job | None:
        with self._lock:
            mine = [j for j in self._jobs.values() if j.owner == owner]
        running = [j for j in mine if j.state != "done"]
        return (running or mine or [None])[-1]

    def running(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.state == "running"]
