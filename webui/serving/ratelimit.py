"""A per-client limit on generations per minute for public deployments (--rate-limit N).

Checked when a job asks for a place in the GPU queue (generations, Extras, model switches; UI,
REST and gradio_client alike), so a client that floods the queue is told to wait instead of
pushing everyone else back. Who counts as one client is identity.Caller.rate_key."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

from ..errors import UserError


class RateLimited(UserError):
    """Over the limit; `retry_after` is the wait in seconds (REST: HTTP 429 with Retry-After)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimiter:
    WINDOW_S = 60.0
    MAX_CLIENTS = 10_000  # forget the least recently seen clients beyond this

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute = per_minute
        self._clock = clock
        self._seen: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, client: str | None) -> None:
        """Count one generation for `client`, or raise UserError saying when to try again."""
        if self.per_minute <= 0:
            return
        key = client or "anonymous"
        now = self._clock()
        with self._lock:
            times = self._seen.pop(key, None) or deque()
            self._seen[key] = times
            while times and now - times[0] >= self.WINDOW_S:
                times.popleft()
            if len(times) >= self.per_minute:
                wait = max(1, round(self.WINDOW_S - (now - times[0])))
                raise RateLimited(f"rate limit: at most {self.per_minute} generations per minute on this server; "
                                  f"try again in {wait} s", retry_after=wait)
            times.append(now)
            while len(self._seen) > self.MAX_CLIENTS:
                self._seen.popitem(last=False)
