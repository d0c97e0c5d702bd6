"""One plain-ASGI middleware for what every request needs: a request id, metrics, an optional access
line. No BaseHTTPMiddleware: this runs on every request, cache hits included, and must cost next to
nothing (docs/performance.md measures it against a bare endpoint).

* Request id: the caller's ``X-Request-ID`` when it is sane, else a new one (a random per-process
  prefix and a counter: unique, and ~1.5 us cheaper than a uuid4); echoed in the response header, in
  error bodies, and put on every log line written while the request runs (``REQUEST_ID``, a context
  variable read by the log pipeline: setting one costs far less than structlog's bound_contextvars).
* Security headers (``security.py``): appended to every response here, the plain-ASGI answers and
  error pages included, so no route can forget them.
* Metrics: ``http_requests_total{method,route,status}`` and ``http_request_duration_seconds`` by
  route *template* (``/api/orders/{order_uid}``), so hostile paths cannot explode the label set.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from internal.api.security import security_headers
from internal.pkg.logging import REQUEST_ID
from internal.pkg.metrics import Metrics

SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
UNMATCHED = "unmatched"
log = structlog.get_logger(component="api")


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = False) -> None:
        self.app = app
        self._record_http = metrics.http.record
        self._access_log = access_log
        self._id_prefix = secrets.token_hex(6) + "-"
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        if incoming is not None and SANE_ID.fullmatch(incoming):
            rid, request_id = incoming.decode(), incoming
        else:
            rid = f"{self._id_prefix}{next(self._ids):x}"
            request_id = rid.encode()
        scope.setdefault("state", {})["request_id"] = rid
        status = 500  # what the client gets if the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", [])
                message["headers"] = [*headers, (b"x-request-id", request_id), *security_headers(headers)]
            await send(message)

        token = REQUEST_ID.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started)
            REQUEST_ID.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        template = getattr(scope.get("route"), "path", UNMATCHED)
        method = scope["method"]
        self._record_http(method, template, status, elapsed)
        if self._access_log:
            log.info("http_request", method=method, route=template, path=scope["path"], status=status,
                     duration_ms=round(elapsed * 1000, 2))  # fmt: skip


def scope_request_id(scope: Scope) -> str:
    """The request's id, set by ``ObservabilityMiddleware`` (empty outside of it)."""
    rid: str = scope.get("state", {}).get("request_id", "")
    return rid


def request_id(request: Request) -> str:
    return scope_request_id(request.scope)
