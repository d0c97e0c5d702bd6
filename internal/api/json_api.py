"""The JSON API's endpoints but the order look-up (``orders.py``): health, metrics and the OpenAPI
description."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from internal.api.openapi import OPENAPI
from internal.pkg.health import Component, Health
from internal.pkg.metrics import Metrics


class JsonApi:
    def __init__(self, health: Health, metrics: Metrics) -> None:
        self._health = health
        self._metrics = metrics

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
