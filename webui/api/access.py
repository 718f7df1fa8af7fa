"""Who may call the REST API (which jobs a caller reaches: Service.find_job).

- `caller_dependency`: the --auth check (HTTP basic) and the identity.Caller of each request.
- `until_disconnect`: a generation whose client hangs up is stopped (dropped while it waits in
  the GPU queue, interrupted while it runs).
- `error_response`: UserError -> HTTP 4xx naming the field (429 with Retry-After when rate limited).
"""

from __future__ import annotations

import functools
import inspect
import secrets
from typing import Callable

import anyio
from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from starlette.concurrency import run_in_threadpool

from ..errors import UserError
from ..serving.identity import Caller, client_address, session_id
from ..engine.jobs import Job
from ..serving.ratelimit import RateLimited

DISCONNECT_POLL_S = 0.25


class StatusError(UserError):
    """A UserError with a specific HTTP status (404 unknown name, 400 refused path...)."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message, field)
        self.status = status


def error_response(e: UserError) -> JSONResponse:
    status, headers = 422, None
    if isinstance(e, StatusError):
        status = e.status
    elif isinstance(e, RateLimited):
        status, headers = 429, {"Retry-After": str(e.retry_after)}
    return JSONResponse({"error": "UserError", "detail": str(e), "field": e.field}, status_code=status,
                        headers=headers)


def user_errors(fn: Callable) -> Callable:
    """UserError -> HTTP 4xx naming the field; the server keeps serving. Sync or async routes."""
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except UserError as e:
                return error_response(e)
        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            return error_response(e)
    return wrapper


def caller_dependency(settings):
    """A FastAPI dependency: the verified Caller, or 401 under --auth without valid credentials."""
    basic = HTTPBasic(auto_error=False)

    def caller(request: Request, cred: HTTPBasicCredentials | None = Depends(basic)) -> Caller:
        user = None
        if settings.auth:
            ok = cred is not None and any(
                secrets.compare_digest(cred.username.encode(), u.encode())
                & secrets.compare_digest(cred.password.encode(), p.encode()) for u, p in settings.auth)
            if not ok:
                raise HTTPException(401, "this server needs a user name and password (the --auth ones)",
                                    headers={"WWW-Authenticate": "Basic"})
            user = cred.username
        host = request.client.host if request.client else None
        return Caller("api", user=user, address=client_address(host, settings),
                      sid=session_id(request.headers.get("cookie")))

    return caller


async def until_disconnect(request: Request, job: Job, work: Callable[[], object]):
    """Run work() in a worker thread; if the client disconnects first, stop `job` (the GPU
    queue drops it while it waits, the engine stops it after the current step while it runs)
    and still wait for work() to end, so nothing is left half-done."""
    box: dict = {}

    async def watch():
        while not await request.is_disconnected():
            await anyio.sleep(DISCONNECT_POLL_S)
        job.interrupt()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        try:
            box["result"] = await run_in_threadpool(work)
        except Exception as e:  # noqa: BLE001 - re-raised below, outside the task group's wrapping
            box["error"] = e
        tg.cancel_scope.cancel()
    if "error" in box:
        raise box["error"]
    return box["result"]


__all__ = ["StatusError", "caller_dependency", "error_response", "until_disconnect", "user_errors"]
