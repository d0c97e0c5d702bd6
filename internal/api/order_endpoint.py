"""Order look-ups and the home page in plain ASGI, ahead of Starlette: ``GET /api/orders/{uid}`` and
``/order/{uid}`` (JSON), ``/orders/{uid}`` (the order's HTML page) and ``/``.

The order look-up is the service's hottest request. A hit needs no routing, no Request/Response
objects and no thread: the bytes and the ETag are ready in the cache (the page too, once it was
rendered: ``OrderCache.attach_page``). A miss is one shared query (store/async_reader.py);
Starlette's layers around it (exception middleware, the router, Request and Response objects) cost
about a quarter of a miss's CPU (210 against 145-158 us in alternated runs, docs/performance.md), so
GET look-ups skip them too. The home page is a ready snapshot (``home.py``).

Everything else falls through to the Starlette app unchanged: other paths, other methods (HEAD
reaches the routed handler, which answers with the same functions, so the paths cannot disagree)
and anything Starlette's ``{order_uid}`` would not match (a ``/`` in it, an empty uid, a mounted
app's root path).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from internal.api.lookup import OrderLookup, Unavailable, valid_uid
from internal.api.middleware import scope_request_id
from internal.api.pages import Pages
from internal.cache.lru import CachedOrder

JSON = (b"content-type", b"application/json")
HTML = (b"content-type", b"text/html; charset=utf-8")
Headers = list[tuple[bytes, bytes]]
BAD_UID = "order_uid must be 1 to 64 ASCII letters and digits"
log = structlog.get_logger(component="api")
UNAVAILABLE = "the order store is unavailable; try again shortly"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """Stands in for the matched route, so metrics label the request with the same template."""

    path: str


@dataclass(frozen=True, slots=True)
class Found:
    """The outcome of finding one order: 200 with its entry, or 400/404/503 without one."""

    status: int
    entry: CachedOrder | None = None
    from_cache: bool = False


async def find(lookup: OrderLookup, uid: str, *, missed: bool = False) -> Found:
    """400 for a malformed uid (no database), the order from the cache or from PostgreSQL, 404 when
    no order has this uid, 503 when the database cannot answer within the request's budget - never a
    404 for an infrastructure failure. ``missed``: the caller asked the cache already (one look-up,
    one hit or miss counted)."""
    if not valid_uid(uid):
        return Found(400)
    entry = None if missed else lookup.cached(uid)
    if entry is not None:
        return Found(200, entry, True)
    try:
        entry = await lookup.load(uid)
    except Unavailable:
        return Found(503)
    return Found(404) if entry is None else Found(200, entry, False)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110's weak comparison of If-None-Match (one ETag, a list, ``W/`` forms or ``*``)."""
    if if_none_match is None:
        return False
    if if_none_match == etag:
        return True
    for listed in if_none_match.split(","):
        candidate = listed.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


async def answer(
    lookup: OrderLookup, uid: str, if_none_match: str | None, request_id: str, *, missed: bool = False
) -> Answer:
    """The JSON answer to a look-up; errors are JSON with the request id."""
    found = await find(lookup, uid, missed=missed)
    if found.entry is None:
        message = {400: BAD_UID, 404: f"no order with order_uid {uid}", 503: UNAVAILABLE}[found.status]
        return error_answer(found.status, message, request_id)
    return order_answer(found.entry, found.from_cache, if_none_match)


def order_answer(entry: CachedOrder, from_cache: bool, if_none_match: str | None) -> Answer:
    """A found order: 304 when the client's ETag still matches."""
    headers = [(b"etag", entry.etag.encode()), (b"x-cache", b"HIT" if from_cache else b"MISS")]
    if etag_matches(if_none_match, entry.etag):
        return Answer(304, headers, b"")
    return Answer(200, [JSON, (b"content-length", str(len(entry.json)).encode()), *headers], entry.json)


async def page_answer(
    lookup: OrderLookup,
    pages: Pages,
    uid: str,
    if_none_match: str | None,
    request_id: str,
    *,
    missed: bool = False,
) -> Answer:
    """The order's HTML page (see ``page_of``), or the HTML error page."""
    found = await find(lookup, uid, missed=missed)
    if found.entry is None:
        return html_error(pages, found.status, uid, request_id)
    return page_of(lookup, pages, uid, found.entry, from_cache=found.from_cache, if_none_match=if_none_match)


def page_of(
    lookup: OrderLookup,
    pages: Pages,
    uid: str,
    entry: CachedOrder,
    *,
    from_cache: bool,
    if_none_match: str | None,
) -> Answer:
    """A found order's page: from the cache entry when a page is attached to it, else rendered from
    the entry's JSON and attached (``OrderCache.attach_page`` keeps it only on that very entry). The
    ETag is the JSON's with the templates' version, so a deploy of a new layout is not a 304."""
    etag = f'{entry.etag[:-1]}-{pages.version}"'
    headers = [(b"etag", etag.encode()), (b"x-cache", b"HIT" if from_cache else b"MISS")]
    if etag_matches(if_none_match, etag):
        return Answer(304, headers, b"")
    page = entry.page
    if page is None:
        page = pages.order(entry.json)
        lookup.remember_page(uid, entry, page)
    return Answer(200, [HTML, (b"content-length", str(len(page)).encode()), *headers], page)


def html_error(pages: Pages, status: int, uid: str, request_id: str) -> Answer:
    if status == 404:
        body = pages.not_found(uid, request_id)
    elif status == 400:
        body = pages.message("Not an order uid", "An order_uid is 1 to 64 ASCII letters and digits.",
                             request_id, uid)  # fmt: skip
    else:
        body = pages.message("Orders are unavailable", UNAVAILABLE.capitalize() + ".", request_id, uid)
    return html_answer(status, body)


def html_answer(status: int, body: bytes) -> Answer:
    return Answer(status, [HTML, (b"content-length", str(len(body)).encode())], body)


def error_body(status: int, message: str, request_id: str) -> bytes:
    """The one shape of every API error: a message, the status and the request id - no stack trace."""
    document = {"error": message, "status": status, "request_id": request_id}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def error_answer(status: int, message: str, request_id: str) -> Answer:
    body = error_body(status, message, request_id)
    return Answer(status, [JSON, (b"content-length", str(len(body)).encode())], body)


class OrderEndpoint:
    """ASGI middleware answering GET look-ups of one order and the home page; see the module's
    docstring."""

    def __init__(
        self,
        app: ASGIApp,
        lookup: OrderLookup,
        pages: Pages,
        home: Callable[[str | None], Awaitable[Answer]],
        search: Callable[[QueryParams, str], Awaitable[Answer]],
    ) -> None:
        self.app = app
        self._lookup = lookup
        self._pages = pages
        self._home = home
        self._search = search

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            path: str = scope["path"]
            if path == "/":
                scope["route"] = HOME_ROUTE
                inm = _header(scope["headers"], b"if-none-match")
                await self._guarded(self._home(inm), scope, send, html=True)
                return
            if path == "/search":
                scope["route"] = SEARCH_ROUTE
                params = QueryParams(scope["query_string"])
                await self._guarded(self._search(params, scope_request_id(scope)), scope, send, html=True)
                return
            for prefix, route, is_page in ORDER_ROUTES:
                if path.startswith(prefix):
                    uid = path[len(prefix) :]
                    if uid and "/" not in uid:
                        scope["route"] = route
                        await self._order(scope, uid, is_page, send)
                        return
                    break
        await self.app(scope, receive, send)

    async def _order(self, scope: Scope, uid: str, is_page: bool, send: Send) -> None:
        if_none_match = _header(scope["headers"], b"if-none-match")
        # A hit is answered without another coroutine to make and run; a miss, a bad uid or a failure
        # take the shared async path, which decides them.
        try:
            entry = self._lookup.cached(uid) if valid_uid(uid) else None
            if entry is None:
                found = None
            elif is_page:
                found = page_of(
                    self._lookup, self._pages, uid, entry, from_cache=True, if_none_match=if_none_match
                )
            else:
                found = order_answer(entry, True, if_none_match)
        except Exception:
            found = self._failed(scope, html=is_page)
        if found is None:
            await self._guarded(self._missed(scope, uid, is_page, if_none_match), scope, send, html=is_page)
            return
        await send({"type": "http.response.start", "status": found.status, "headers": found.headers})
        await send({"type": "http.response.body", "body": found.body})

    async def _missed(self, scope: Scope, uid: str, is_page: bool, if_none_match: str | None) -> Answer:
        rid = scope_request_id(scope)
        if is_page:
            return await page_answer(self._lookup, self._pages, uid, if_none_match, rid, missed=True)
        return await answer(self._lookup, uid, if_none_match, rid, missed=True)

    async def _guarded(self, answering: Awaitable[Answer], scope: Scope, send: Send, *, html: bool) -> None:
        """Send the answer; a bug while making it is a logged 500 (this runs ahead of Starlette's
        error middleware), never a dropped connection or a trace in the body."""
        try:
            found = await answering
        except Exception:
            found = self._failed(scope, html=html)
        await _send(send, found)

    def _failed(self, scope: Scope, *, html: bool) -> Answer:
        log.exception("request_failed", path=scope["path"])
        rid = scope_request_id(scope)
        if html:
            return html_answer(500, self._pages.message("Something went wrong",
                               "The service failed to answer; try again shortly.", rid))  # fmt: skip
        return error_answer(500, "the service failed to answer", rid)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def _send(send: Send, found: Answer) -> None:
    await send({"type": "http.response.start", "status": found.status, "headers": found.headers})
    await send({"type": "http.response.body", "body": found.body})


HOME_ROUTE = RouteTemplate("/")
SEARCH_ROUTE = RouteTemplate("/search")
ORDER_ROUTES = (
    ("/api/orders/", RouteTemplate("/api/orders/{order_uid}"), False),
    ("/order/", RouteTemplate("/order/{order_uid}"), False),
    ("/orders/", RouteTemplate("/orders/{order_uid}"), True),
)
