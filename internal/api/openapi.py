"""The OpenAPI 3.1 description served at /openapi.json (the JSON endpoints; the HTML pages are for people)."""

from __future__ import annotations

from typing import Any

from internal.domain.order import Order

_ERROR = {
    "type": "object",
    "required": ["error", "status", "request_id"],
    "properties": {
        "error": {"type": "string"},
        "status": {"type": "integer"},
        "request_id": {"type": "string"},
    },
}
_UID = {
    "name": "order_uid",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9]{1,64}$"},
}
_HEALTH = {
    "type": "object",
    "required": ["status", "components"],
    "properties": {
        "status": {"enum": ["ok", "unavailable"]},
        "components": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
            },
        },
    },
}


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(code): {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for code, text in [
            (400, "malformed order_uid"),
            (404, "no such order"),
            (503, "order store unavailable"),
        ]
        if code in codes
    }


def _order_operation(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [
            _UID,
            {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {
                "description": "the order, in the shape of the Kafka message",
                "headers": {
                    "ETag": {"schema": {"type": "string"}},
                    "X-Cache": {"schema": {"enum": ["HIT", "MISS"]}},
                },
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}},
            },
            "304": {"description": "not modified (If-None-Match matched the ETag)"},
            **_errors(400, 404, 503),
        },
    }


def _health_operation(summary: str) -> dict[str, Any]:
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}
    return {
        "summary": summary,
        "responses": {"200": {"description": "ok", **body}, "503": {"description": "not ok", **body}},
    }


def _schemas() -> dict[str, Any]:
    # The Order schema comes from the very model that validates messages, so the two cannot drift.
    order = Order.model_json_schema(ref_template="#/components/schemas/{model}")
    nested: dict[str, Any] = order.pop("$defs", {})
    return {"Order": order, **nested, "Error": _ERROR, "Health": _HEALTH}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "L0 order service", "version": "1"},
    "paths": {
        "/api/orders/{order_uid}": {"get": _order_operation("One order by its uid")},
        "/order/{order_uid}": {"get": _order_operation("The same, at the path of the original service")},
        "/healthz": {"get": _health_operation("Liveness: the process and its consumer loop run")},
        "/readyz": {"get": _health_operation("Readiness: database, consumer, cache warm, not stopping")},
    },
    "components": {"schemas": _schemas()},
}
