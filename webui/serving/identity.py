"""Who is calling: one answer for the UI, the REST API and the rate limit.

Ownership of a job, a History and a rate-limit count comes only from what the server issued
or verified, never from a name the client picks:
- `user`: the --auth user name, checked by Gradio's login or HTTP basic auth;
- `address`: the connection's address. Forwarded headers rewrite it only when the proxy is
  one the admin named (--forwarded-allow-ips, applied by uvicorn before we see the request);
- `sid`: a random browser session id this server set as an HttpOnly cookie (SessionGuard).
Gradio's `session_hash` is made by the browser; it only tells apart the tabs of one server
session, so it is hashed together with the user and `sid` and can never name another owner.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

SESSION_COOKIE = "portrait_sid"


@dataclass(frozen=True)
class Caller:
    via: str                    # "ui" or "api"
    user: str | None = None     # verified --auth user
    address: str | None = None  # client address (None when it identifies nobody, see settings)
    sid: str = ""               # server-issued browser session id ("" when the client keeps no cookie)
    session_hash: str = ""      # Gradio's per-page id (UI only)

    @property
    def owner(self) -> str | None:
        """The key of the jobs and History this caller may see without naming a job id."""
        if self.via == "ui":
            return ui_owner(self.user, self.sid, self.session_hash) if self.session_hash else None
        if self.user is not None:
            return f"api:{self.user}"
        return f"api@{self.address}" if self.address else None

    def rate_key(self, by: str) -> str:
        """What --rate-limit counts: the verified user, else the address or the session."""
        if self.user is not None:
            return f"user:{self.user}"
        if by == "session" and (self.sid or self.session_hash):
            return f"session:{self.sid or self.session_hash}"
        return f"ip:{self.address or 'unknown'}"

    def may_see(self, job_user: str | None, auth_on: bool) -> bool:
        """A job reached by its id: under --auth only its own user's; else whoever holds the id."""
        return not auth_on or job_user == self.user


def ui_owner(user: str | None, sid: str, session_hash: str) -> str:
    """The owner key of a browser page: nobody can choose a session_hash that makes another
    user's or another browser's key, nor one in the API's namespace."""
    digest = hashlib.sha256(f"{user or ''}\0{sid}\0{session_hash}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"ui:{digest[:32]}"


def client_address(host: str | None, settings) -> str | None:
    """The connection's address, or None where every client arrives from the same hop (a
    --share tunnel or a Spaces proxy that the admin did not name with --forwarded-allow-ips)."""
    if not host:
        return None
    if settings.forwarded_allow_ips:
        return host
    if settings.share and host in ("127.0.0.1", "::1"):
        return None
    if settings.behind_proxy:
        return None
    return host


def session_id(cookie_header: str | None) -> str:
    """The server-issued session id from a Cookie header ("" when absent or malformed)."""
    if not cookie_header:
        return ""
    try:
        morsel = SimpleCookie(cookie_header).get(SESSION_COOKIE)
    except Exception:  # noqa: BLE001 - a malformed cookie header is just no session
        return ""
    value = morsel.value if morsel is not None else ""
    return value if len(value) == 43 and value.replace("-", "").replace("_", "").isalnum() else ""


class SessionGuard:
    """ASGI middleware for the server-issued session.

    - Gives every browser without one a random, HttpOnly session cookie.
    - Binds each Gradio session_hash to the session that first used it: Gradio streams a
      page's results (its images, its State) to whoever names its session_hash in /queue/data,
      so a page id learnt from a log or a shared URL would otherwise let anyone read another
      page's pictures. Another session naming it gets 403.
    Pure ASGI (not BaseHTTPMiddleware) so Gradio's streamed responses pass through untouched."""

    MAX_BOUND = 100_000
    # Gradio routes that name the session in the path (others use ?session_hash=).
    _PATH_HASH = ("/heartbeat/", "/stream/")

    def __init__(self, app):
        self.app = app
        self._bound: OrderedDict[str, str] = OrderedDict()

    def _page_of(self, scope) -> str | None:
        query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
        if query.get("session_hash"):
            return query["session_hash"][0]
        path = scope.get("path", "")
        for marker in self._PATH_HASH:
            if marker in path:
                return path.split(marker, 1)[1].split("/", 1)[0] or None
        return None

    def _claim(self, page: str, sid: str) -> bool:
        """Whether `sid` may use `page`; the first session with a cookie to use it keeps it (a
        client without our cookie binds nothing: it can use only pages no session has)."""
        if not sid:
            return page not in self._bound
        owner = self._bound.pop(page, sid)
        self._bound[page] = owner
        while len(self._bound) > self.MAX_BOUND:
            self._bound.popitem(last=False)
        return owner == sid

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        sid = session_id(headers.get(b"cookie", b"").decode("latin-1"))
        page = self._page_of(scope)
        if page is not None and not self._claim(page, sid):
            body = b'{"error": "this page belongs to another browser session"}'
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})
        if sid:
            return await self.app(scope, receive, send)
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{SESSION_COOKIE}={secrets.token_urlsafe(32)}; Path=/; HttpOnly; SameSite=Lax{secure}"

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers") or []) + [(b"set-cookie", cookie.encode())]
            await send(message)

        return await self.app(scope, receive, send_with_cookie)


__all__ = ["Caller", "SESSION_COOKIE", "SessionGuard", "client_address", "session_id", "ui_owner"]
