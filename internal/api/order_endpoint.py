"""``GET /api/orders/{order_uid}`` (and ``/order/{order_uid}``) in plain ASGI, ahead of Starlette.

The order look-up is the service's hottest request. A hit needs no routing, no Request/Response
objects and no thread: the bytes and the ETag are ready in the cache. A miss is one shared query
(store/async_reader.py); Starlette's layers around it (exception middleware, the router, Request and
Response objects) cost about a quarter of a miss's CPU (210 against 145-158 us in alternated runs,
docs/performance.md), so GET look-ups skip them too.

Everything else falls through to the Starlette app unchanged: other paths, other methods (HEAD
reaches the routed handler, which answers with the same ``answer`` function, so the paths cannot
disagree) and anything Starlette's ``{order_uid}`` would not match (a ``/`` in it, an empty uid, a
mounted app's root path).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from internal.api.lookup import OrderLookup, Unavailable, valid_uid
from internal.api.middleware import scope_request_id
from internal.cache.lru import CachedOrder

JSON = (b"content-type", b"application/json")
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """Stands in for the matched route, so metrics label the request with the same template."""

    path: str


ORDER_ROUTES = (
    ("/api/orders/", RouteTemplate("/api/orders/{order_uid}")),
    ("/order/", RouteTemplate("/order/{order_uid}")),
)


async def answer(lookup: OrderLookup, uid: str, if_none_match: str | None, request_id: str) -> Answer:
    """The answer to a look-up: 400 for a malformed uid (no database), the order from the cache or
    from PostgreSQL, 404 when no order has this uid, 503 when the database cannot answer within the
    request's budget - never a 404 for an infrastructure failure."""
    if not valid_uid(uid):
        return error_answer(400, "order_uid must be 1 to 64 ASCII letters and digits", request_id)
    entry = lookup.cached(uid)
    if entry is not None:
        return order_answer(entry, True, if_none_match)
    try:
        entry = await lookup.load(uid)
    except Unavailable:
        return error_answer(503, "the order store is unavailable; try again shortly", request_id)
    if entry is None:
        return error_answer(404, f"no order with order_uid {uid}", request_id)
    return order_answer(entry, False, if_none_match)


def order_answer(entry: CachedOrder, from_cache: bool, if_none_match: str | None) -> Answer:
    """A found order: 304 when the client's ETag still matches."""
    headers = [(b"etag", entry.etag.encode()), (b"x-cache", b"HIT" if from_cache else b"MISS")]
    if if_none_match == entry.etag:
        return Answer(304, headers, b"")
    return Answer(200, [JSON, (b"content-length", str(len(entry.json)).encode()), *headers], entry.json)


def error_body(status: int, message: str, request_id: str) -> bytes:
    """The one shape of every API error: a message, the status and the request id - no stack trace."""
    document = {"error": message, "status": status, "request_id": request_id}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def error_answer(status: int, message: str, request_id: str) -> Answer:
    body = error_body(status, message, request_id)
    return Answer(status, [JSON, (b"content-length", str(len(body)).encode())], body)


class OrderEndpoint:
    """ASGI middleware answering GET look-ups of one order; see the module's docstring."""

    def __init__(self, app: ASGIApp, lookup: OrderLookup) -> None:
        self.app = app
        self._lookup = lookup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            path: str = scope["path"]
            for prefix, route in ORDER_ROUTES:
                if path.startswith(prefix):
                    uid = path[len(prefix) :]
                    if uid and "/" not in uid:
                        scope["route"] = route
                        await self._answer(scope, uid, send)
                        return
                    break
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, uid: str, send: Send) -> None:
        headers = scope["headers"]
        if_none_match = next((v.decode("latin-1") for k, v in headers if k == b"if-none-match"), None)
        found = await answer(self._lookup, uid, if_none_match, scope_request_id(scope))
        await send({"type": "http.response.start", "status": found.status, "headers": found.headers})
        await send({"type": "http.response.body", "body": found.body})
