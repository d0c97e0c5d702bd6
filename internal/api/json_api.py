"""The JSON API: ``GET /api/orders/{order_uid}`` (and ``/order/{order_uid}``, the path the original
README documents), health endpoints and the OpenAPI description."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from internal.api.lookup import OrderLookup
from internal.api.middleware import request_id
from internal.api.openapi import OPENAPI
from internal.api.order_endpoint import answer
from internal.pkg.health import Component, Health
from internal.pkg.metrics import Metrics


class JsonApi:
    def __init__(self, lookup: OrderLookup, health: Health, metrics: Metrics) -> None:
        self._lookup = lookup
        self._health = health
        self._metrics = metrics

    async def get_order(self, request: Request) -> Response:
        """The routed look-up: HEAD, and any GET the plain-ASGI ``OrderEndpoint`` let through. The
        same ``answer`` decides, so both paths give the same status, headers and body."""
        uid: str = request.path_params["order_uid"]
        found = await answer(self._lookup, uid, request.headers.get("if-none-match"), request_id(request))
        response = Response(found.body, status_code=found.status)
        response.raw_headers = found.headers
        return response

    async def healthz(self, _request: Request) -> Response:
        return _health(self._health.liveness())

    async def readyz(self, _request: Request) -> Response:
        # No thread hop: readiness reads the parts' state and the database probe's recent answer.
        return _health(self._health.readiness())

    async def metrics(self, _request: Request) -> Response:
        return Response(generate_latest(self._metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, _request: Request) -> Response:
        return JSONResponse(OPENAPI)


def _health(components: list[Component]) -> JSONResponse:
    ok = all(c.ok for c in components)
    body = {
        "status": "ok" if ok else "unavailable",
        "components": {c.name: {"ok": c.ok, "detail": c.detail} for c in components},
    }
    return JSONResponse(body, status_code=200 if ok else 503)
