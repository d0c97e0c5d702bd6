"""Cache hits of the JSON API answered in plain ASGI, ahead of Starlette's router.

A hit is the service's hottest request and needs no routing, no Request/Response objects and no
thread: the bytes and the ETag are ready in the cache. Everything else (misses, errors, the UI) falls
through to the Starlette app unchanged. The answer itself is built by ``order_answer``, the same
function the routed handler uses, so the two paths cannot disagree. docs/performance.md measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from internal.cache.lru import CachedOrder, OrderCache

JSON = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """Stands in for the matched route, so metrics label the request with the same template."""

    path: str


ORDER_ROUTES = (
    ("/api/orders/", RouteTemplate("/api/orders/{order_uid}")),
    ("/order/", RouteTemplate("/order/{order_uid}")),
)


def order_answer(
    entry: CachedOrder, from_cache: bool, if_none_match: str | None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of a found order: 304 when the client's ETag still matches."""
    headers = [(b"etag", entry.etag.encode()), (b"x-cache", b"HIT" if from_cache else b"MISS")]
    if if_none_match == entry.etag:
        return 304, headers, b""
    return 200, [JSON, (b"content-length", str(len(entry.json)).encode()), *headers], entry.json


class CacheHitFastPath:
    def __init__(self, app: ASGIApp, cache: OrderCache) -> None:
        self.app = app
        self._cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            for prefix, route in ORDER_ROUTES:
                if path.startswith(prefix):
                    uid = path[len(prefix) :]
                    # Only a plain uid can be a hit; anything odd goes to the router and its checks.
                    entry = (
                        self._cache.get(uid, count_miss=False)
                        if uid.isascii() and uid.isalnum() and len(uid) <= 64
                        else None
                    )
                    if entry is not None:
                        scope["route"] = route
                        if_none_match = next(
                            (v.decode("latin-1") for k, v in scope["headers"] if k == b"if-none-match"), None
                        )
                        status, headers, body = order_answer(entry, True, if_none_match)
                        await send({"type": "http.response.start", "status": status, "headers": headers})
                        await send({"type": "http.response.body", "body": body})
                        return
                    break
        await self.app(scope, receive, send)
