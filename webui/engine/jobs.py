"""Per-request live state: progress, preview, interrupt and skip.

A Job belongs to the request (and the browser session) that started it; the engine only
reads its flags, so one user's Interrupt can never reach another user's generation.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from PIL import Image

from ..errors import UserError
from ..imaging.images import image_bytes


@dataclass
class Job:
    owner: str | None = None
    # Who started it (identity.Caller), when it came from the UI or the API: its verified user
    # guards access by job id, and its rate-limit key is counted when it enters the GPU queue.
    caller: object = field(default=None, repr=False)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "queued"          # queued -> running -> done
    queue_position: int | None = None  # set by the GPU queue while waiting (0 = next)
    image_index: int = 0           # which batch (of n_iter) is being denoised
    image_count: int = 0
    step: int = 0
    total_steps: int = 0
    started: float | None = None
    _preview: object = field(default=None, repr=False)  # a PIL image, or a DeferredImage from the GPU
    preview_step: int = -1
    preview_kind: str | None = None  # "taesd" or "approx"
    preview_count: int = 0
    interrupted: bool = False
    skipped: bool = False
    # The current batch was stopped before its last step (by Skip or Interrupt).
    cut_short: bool = False
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
            self.step, self.skipped, self.cut_short = 0, False, False
            self._preview, self.preview_step = None, -1

    def set_preview(self, image, kind: str) -> None:
        with self._lock:
            self._preview, self.preview_step, self.preview_kind = image, self.step, kind
            self.preview_count += 1

    @property
    def preview(self) -> Image.Image | None:
        p = self._preview
        return p.image() if hasattr(p, "image") else p

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

    def status_text(self) -> str:
        """One line for the UI: queue position while waiting, then image, step and ETA."""
        if self.state == "queued":
            if self.queue_position is None:
                return "Waiting for the GPU..."
            ahead = self.queue_position
            return "Next in the GPU queue..." if ahead == 0 else f"Waiting in the GPU queue: {ahead} ahead of you"
        if self.state == "done":
            return "Done"
        if not self.total_steps:
            return "Preparing..."
        parts = []
        if self.image_count > 1:
            parts.append(f"batch {self.image_index + 1}/{self.image_count}")
        parts.append(f"step {self.step}/{self.total_steps}")
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {eta:.0f} s" if eta >= 1 else "ETA <1 s")
        if self.interrupted:
            parts.append("stopping")
        elif self.skipped:
            parts.append("skipping to the next image")
        return ", ".join(parts)


@dataclass
class Snapshot:
    """What a progress display needs from a running Job, as plain picklable values (it may
    cross a process boundary on ZeroGPU). `preview` is set only when it is new."""

    text: str
    fraction: float
    preview: Image.Image | None = None
    preview_kind: str | None = None


class JobRegistry:
    """The jobs currently known, by id; `latest_for(owner)` answers "my progress", and
    `history(owner)` the images a session made (newest last, bounded)."""

    HISTORY_PER_OWNER = 200
    HISTORY_OWNERS = 256
    # Unsaved images are kept as images (saved ones as paths): at most this many per owner,
    # and by bytes per owner and for all owners together; the oldest go first.
    HISTORY_IN_MEMORY = 16
    HISTORY_BYTES_PER_OWNER = 64 << 20
    HISTORY_BYTES = 512 << 20

    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        # owner -> [image or path, infotext, sequence number, bytes in memory], oldest first
        self._history: OrderedDict[str, deque] = OrderedDict()
        self._seq = 0

    def new(self, owner, job_id: str | None = None) -> Job:
        """A new job for `owner` (an identity.Caller, or a plain owner key for internal work);
        `job_id` lets an API client pick the id it will poll (A1111's force_task_id)."""
        caller = owner if hasattr(owner, "owner") else None
        key = caller.owner if caller is not None else owner
        job = Job(owner=key, caller=caller, id=job_id) if job_id else Job(owner=key, caller=caller)
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

    def active_for(self, owner: str | None) -> list[Job]:
        """The owner's jobs that are queued or running (what its Interrupt/Skip may touch)."""
        if owner is None:
            return []
        with self._lock:
            return [j for j in self._jobs.values() if j.owner == owner and j.state != "done"]

    def interrupt(self, owner: str | None) -> int:
        """Stop the owner's queued and running jobs; nobody else's. Returns how many."""
        jobs = self.active_for(owner)
        for j in jobs:
            j.interrupt()
        return len(jobs)

    def skip(self, owner: str | None) -> int:
        """Skip the image being made in the owner's running job. Returns how many jobs."""
        jobs = [j for j in self.active_for(owner) if j.state == "running"]
        for j in jobs:
            j.skip()
        return len(jobs)

    def record(self, owner: str | None, result) -> None:
        """Remember a finished result's images (paths when saved, else the images) for the
        owner's History tab."""
        if owner is None:
            return
        paths = list(getattr(result, "paths", []) or [])
        images = paths if len(paths) == len(result.images) else list(result.images)
        with self._lock:
            items = self._history.pop(owner, None) or deque()
            self._history[owner] = items
            while len(self._history) > self.HISTORY_OWNERS:
                self._history.popitem(last=False)
            for img, info in zip(images, result.infotexts):
                self._seq += 1
                items.append((img, info, self._seq, image_bytes(img)))
            while len(items) > self.HISTORY_PER_OWNER:
                items.popleft()
            mine = [e for e in items if e[3]]
            self._drop(mine, len(mine) - self.HISTORY_IN_MEMORY, self.HISTORY_BYTES_PER_OWNER)
            everyone = sorted((e for q in self._history.values() for e in q if e[3]), key=lambda e: e[2])
            self._drop(everyone, 0, self.HISTORY_BYTES)

    def _drop(self, in_memory: list, count: int, max_bytes: int) -> None:
        """Forget the oldest of `in_memory` (oldest first): at least `count` of them, and more
        until the rest hold at most `max_bytes`."""
        total = sum(e[3] for e in in_memory)
        gone = set()
        for e in in_memory:
            if len(gone) >= count and total <= max_bytes:
                break
            gone.add(e[2])
            total -= e[3]
        touched = [o for o, items in self._history.items() if any(e[2] in gone for e in items)] if gone else []
        for owner in touched:
            self._history[owner] = deque(e for e in self._history[owner] if e[2] not in gone)

    def memory_bytes(self) -> int:
        """Bytes of the unsaved images all histories hold."""
        with self._lock:
            return sum(e[3] for q in self._history.values() for e in q)

    def history(self, owner: str | None) -> list[tuple[object, str]]:
        with self._lock:
            return [(img, info) for img, info, _, _ in self._history.get(owner, ())]
