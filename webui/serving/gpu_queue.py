"""One queue in front of the GPU, shared by every user and every GPU event.

Gradio lets several generate events in at once (ui/common.GPU); they all land here. A single
worker thread owns the device (torch.compile's CUDA graphs want one thread), serves owners
(browser sessions) round-robin so one user's ten jobs never starve another's one, and merges
compatible waiting requests from any owners into one UNet batch. Each job still gets only its
own images: results are handed back per entry, never by position in a shared list.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..engine.manager import GenerationResult
from ..engine.runner import batch_key
from ..errors import UserError
from ..engine.jobs import Job
from ..request import GenerationRequest

log = logging.getLogger(__name__)

@dataclass
class Entry:
    request: GenerationRequest | None
    job: Job
    owner: object
    key: tuple | None
    work: Callable[[], object] | None = None  # GPU work that is not a generation (Extras)
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None

    def wait(self):
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


class GPUQueue:
    """Fair, batching job queue in front of PipelineManager.generate_many."""

    def __init__(self, manager, max_batch: int = 8, batching: bool = True,
                 admit: Callable[[Job], None] | None = None):
        self.manager = manager
        # Called with each job before it takes a place (the rate limit); may raise UserError.
        self.admit = admit
        self.max_batch = max(1, int(max_batch))
        self.batching = batching
        self._cond = threading.Condition()
        self._waiting: OrderedDict[object, deque[Entry]] = OrderedDict()  # owner -> FIFO; order = turn
        self._held = 0
        self._closed = False
        self._worker: threading.Thread | None = None
        self.batches_run = 0  # how many UNet batches ran (a merged batch counts once)

    # ---- submitting ----------------------------------------------------------------------------

    def submit(self, request: GenerationRequest | None, job: Job, work: Callable[[], object] | None = None) -> Entry:
        if self.admit is not None:
            self.admit(job)
        key = batch_key(request) if self.batching and work is None else None
        entry = Entry(request, job, job.owner, key, work)
        with self._cond:
            if self._closed:
                raise RuntimeError("the GPU queue is closed")
            self._waiting.setdefault(entry.owner, deque()).append(entry)
            self._update_positions()
            self._ensure_worker()
            self._cond.notify_all()
        return entry

    def run(self, request: GenerationRequest, job: Job):
        """Submit and wait: the call the Service makes from each request's own thread."""
        return self.submit(request, job).wait()

    def call(self, work: Callable[[], object], job: Job, request: GenerationRequest | None = None):
        """Run work() on the worker thread, in its owner's turn, and return what it returns: GPU
        work besides generations (the Extras tab's upscalers and face pass) queues like them,
        and compiled CUDA graphs replay only on the thread that recorded them (torch 2.11 asserts
        otherwise: pytorch issue 123177)."""
        return self.submit(request, job, work).wait()

    def hold(self) -> "_Hold":
        """`with queue.hold():` nothing starts until the block ends (lets a caller submit several
        jobs that should be considered together, e.g. a benchmark of concurrent requests)."""
        return _Hold(self)

    def pending(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._waiting.values())

    # ---- serving -------------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._serve, name="gpu-queue", daemon=True)
            self._worker.start()

    def _order(self) -> list[Entry]:
        """The order entries would be served in without batching: owners take turns."""
        queues = [list(q) for q in self._waiting.values()]
        out = []
        for i in range(max((len(q) for q in queues), default=0)):
            out += [q[i] for q in queues if i < len(q)]
        return out

    def _update_positions(self) -> None:
        for pos, e in enumerate(self._order()):
            if e.job.queue_position != pos:
                e.job.queue_position = pos
                e.job.notify()

    def _take(self) -> list[Entry]:
        """Pop the next owner's first entry plus compatible entries of any owner (in turn order)
        up to max_batch images. The served owner moves to the back of the turn order."""
        owner, queue = next(iter(self._waiting.items()))
        lead = queue.popleft()
        taken, images = [lead], (lead.request.batch_size if lead.request is not None else 1)
        self._waiting.move_to_end(owner)  # other owners' requests join before this owner's next
        if lead.key is not None:
            for e in self._order():
                if e.key == lead.key and images + e.request.batch_size <= self.max_batch:
                    taken.append(e)
                    images += e.request.batch_size
                    self._waiting[e.owner].remove(e)
        for o in [o for o, q in self._waiting.items() if not q]:
            del self._waiting[o]
        return taken

    def close(self) -> None:
        """Stop the worker once the queue is empty (jobs already queued still run)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._waiting or self._held:
                    if self._closed and not self._waiting:
                        return
                    self._cond.wait()
                entries = self._take()
                for e in entries:
                    e.job.queue_position = None
                self._update_positions()
            entries = self._drop_stopped(entries)
            if entries:
                self._run(entries)

    @staticmethod
    def _drop_stopped(entries: list[Entry]) -> list[Entry]:
        """Jobs interrupted while they waited (their client went away, or pressed Interrupt)
        never reach the GPU: they end with no images."""
        keep = []
        for e in entries:
            if not e.job.interrupted:
                keep.append(e)
                continue
            if e.work is not None or e.request is None:
                e.error = UserError("stopped before it started")
            else:
                e.result = GenerationResult(e.request, [], [], [], "", None, interrupted=True)
            e.job.state = "done"
            e.done.set()
        return keep

    def _run(self, entries: list[Entry]) -> None:
        self.batches_run += 1
        try:
            if entries[0].work is not None:  # never merged: key None
                outcomes = [entries[0].work()]
            else:
                outcomes = self.manager.generate_many([(e.request, e.job) for e in entries])
        except BaseException as exc:  # noqa: BLE001 -- handed to the waiting callers, not swallowed
            outcomes = [exc] * len(entries)
        for e, out in zip(entries, outcomes):
            if isinstance(out, BaseException):
                e.error = out
            else:
                e.result = out
            e.done.set()


class _Hold:
    def __init__(self, queue: GPUQueue):
        self.queue = queue

    def __enter__(self):
        with self.queue._cond:
            self.queue._held += 1
        return self.queue

    def __exit__(self, *exc):
        with self.queue._cond:
            self.queue._held -= 1
            self.queue._cond.notify_all()


def in_caller_context(listener):
    """Wrap a progress listener so it runs with the submitting thread's context variables
    (Gradio finds the event a progress update belongs to through them)."""
    if listener is None:
        return None
    ctx = contextvars.copy_context()
    lock = threading.Lock()

    def call(job):
        with lock:
            return ctx.run(listener, job)
    return call
