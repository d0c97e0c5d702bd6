"""The JSON API: ``GET /api/orders/{order_uid}`` (and ``/order/{order_uid}``, the path the original
README documents), health endpoints and the OpenAPI description."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from internal.api.fast_path import order_answer
from internal.api.lookup import OrderLookup, Unavailable, valid_uid
from internal.api.middleware import request_id
from internal.api.openapi import OPENAPI
from internal.pkg.health import Component, Health
from internal.pkg.metrics import Metrics


class JsonApi:
    def __init__(self, lookup: OrderLookup, health: Health, metrics: Metrics) -> None:
        self._lookup = lookup
        self._health = health
        self._metrics = metrics

    async def get_order(self, request: Request) -> Response:
        uid: str = request.path_params["order_uid"]
        if not valid_uid(uid):
            return error(request, 400, "order_uid must be 1 to 64 ASCII letters and digits")
        try:
            found = await self._lookup.find(uid)
        except Unavailable:
            return error(request, 503, "the order store is unavailable; try again shortly")
        if found is None:
            return error(request, 404, f"no order with order_uid {uid}")
        status, headers, body = order_answer(
            found.entry, found.from_cache, request.headers.get("if-none-match")
        )
        response = Response(body, status_code=status)
        response.raw_headers = headers  # exactly what the fast path sends for a hit
        return response

    async def healthz(self, _request: Request) -> Response:
        return _health(self._health.liveness())

    async def readyz(self, _request: Request) -> Response:
        return _health(await run_in_threadpool(self._health.readiness))

    async def metrics(self, _request: Request) -> Response:
        return Response(generate_latest(self._metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, _request: Request) -> Response:
        return JSONResponse(OPENAPI)


def error(request: Request, status: int, message: str) -> JSONResponse:
    """The one shape of every API error: a message, the status and the request id - no stack trace."""
    return JSONResponse(
        {"error": message, "status": status, "request_id": request_id(request)}, status_code=status
    )


def _health(components: list[Component]) -> JSONResponse:
    ok = all(c.ok for c in components)
    body = {
        "status": "ok" if ok else "unavailable",
        "components": {c.name: {"ok": c.ok, "detail": c.detail} for c in components},
    }
    return JSONResponse(body, status_code=200 if ok else 503)
