"""The HTTP application: order look-ups (JSON), health endpoints. Routes stay thin; the work is in
the reader (internal/store) and the health model (internal/pkg/health.py)."""

from __future__ import annotations

import re
import uuid

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from internal.domain.errors import ServiceError
from internal.pkg.health import Component, Health
from internal.store.reader import PostgresOrderReader

UID = re.compile(r"[A-Za-z0-9]{1,64}")


def create_api(reader: PostgresOrderReader, health: Health, request_timeout_s: float) -> Starlette:
    async def get_order(request: Request) -> Response:
        uid = request.path_params["order_uid"]
        if not UID.fullmatch(uid):
            return _error(request, 400, "order_uid must be 1 to 64 ASCII letters and digits")
        try:
            record = await run_in_threadpool(reader.get, uid, request_timeout_s)
        except ServiceError:
            return _error(request, 503, "the order store is unavailable, try again shortly")
        if record is None:
            return _error(request, 404, f"no order with order_uid {uid!r}")
        return Response(record.json, media_type="application/json", headers={"X-Cache": "MISS"})

    async def healthz(_request: Request) -> Response:
        return _health(health.liveness())

    async def readyz(_request: Request) -> Response:
        return _health(await run_in_threadpool(health.readiness))

    async def home(_request: Request) -> Response:
        return Response("L0 order service: GET /api/orders/{order_uid}\n", media_type="text/plain")

    return Starlette(
        routes=[
            Route("/", home),
            Route("/api/orders/{order_uid}", get_order),
            Route("/order/{order_uid}", get_order),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )


def _health(components: list[Component]) -> JSONResponse:
    ok = all(c.ok for c in components)
    body = {
        "status": "ok" if ok else "unavailable",
        "components": {c.name: {"ok": c.ok, "detail": c.detail} for c in components},
    }
    return JSONResponse(body, status_code=200 if ok else 503)


def _error(request: Request, status: int, message: str) -> JSONResponse:
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    return JSONResponse(
        {"error": message, "status": status, "request_id": request_id},
        status_code=status,
        headers={"X-Request-ID": request_id},
    )
