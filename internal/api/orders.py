"""The answers to a look-up of one order: ``/api/orders/{uid}`` and ``/order/{uid}`` (its JSON) and
``/orders/{uid}`` (its HTML page).

Each kind comes in two steps, so that a cache hit - the service's hottest request - costs no
coroutine (``routes.FastPath`` calls ``*_hit`` synchronously): ``json_hit``/``page_hit`` answer from
the cache or return None, and then ``json``/``page`` decide everything else (a miss read from
PostgreSQL, a malformed uid, an unavailable store) without asking the cache again, so a miss is
counted once.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope

from internal.api.answers import HTML, JSON, Answer, error_answer, etag_matches, header, html_answer
from internal.api.lookup import OrderLookup, Unavailable, valid_uid
from internal.api.middleware import scope_request_id
from internal.api.pages import Pages
from internal.cache.lru import CachedOrder

BAD_UID = "order_uid must be 1 to 64 ASCII letters and digits"
UNAVAILABLE = "the order store is unavailable; try again shortly"


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


def order_answer(entry: CachedOrder, from_cache: bool, if_none_match: str | None) -> Answer:
    """A found order's JSON: 304 when the client's ETag still matches."""
    headers = [(b"etag", entry.etag.encode()), (b"x-cache", b"HIT" if from_cache else b"MISS")]
    if etag_matches(if_none_match, entry.etag):
        return Answer(304, headers, b"")
    return Answer(200, [JSON, (b"content-length", str(len(entry.json)).encode()), *headers], entry.json)


class OrderAnswers:
    def __init__(self, lookup: OrderLookup, pages: Pages) -> None:
        self._lookup = lookup
        self._pages = pages

    def json_hit(self, scope: Scope, uid: str) -> Answer | None:
        entry = self._lookup.cached(uid) if valid_uid(uid) else None
        return None if entry is None else order_answer(entry, True, header(scope, b"if-none-match"))

    async def json(self, scope: Scope, uid: str) -> Answer:
        """After ``json_hit`` returned None: the order read from PostgreSQL, or a JSON error."""
        found = await find(self._lookup, uid, missed=True)
        if found.entry is None:
            message = {400: BAD_UID, 404: f"no order with order_uid {uid}", 503: UNAVAILABLE}[found.status]
            return error_answer(found.status, message, scope_request_id(scope))
        return order_answer(found.entry, found.from_cache, header(scope, b"if-none-match"))

    def page_hit(self, scope: Scope, uid: str) -> Answer | None:
        entry = self._lookup.cached(uid) if valid_uid(uid) else None
        if entry is None:
            return None
        return self.page_of(uid, entry, from_cache=True, if_none_match=header(scope, b"if-none-match"))

    async def page(self, scope: Scope, uid: str) -> Answer:
        """After ``page_hit`` returned None: the page of the order read from PostgreSQL, or the HTML
        error page."""
        found = await find(self._lookup, uid, missed=True)
        if found.entry is None:
            return self.page_error(found.status, uid, scope_request_id(scope))
        inm = header(scope, b"if-none-match")
        return self.page_of(uid, found.entry, from_cache=found.from_cache, if_none_match=inm)

    def page_of(self, uid: str, entry: CachedOrder, *, from_cache: bool, if_none_match: str | None) -> Answer:
        """A found order's page: from the cache entry when a page is attached to it, else rendered
        from the entry's JSON and attached (``OrderCache.attach_page`` keeps it only on that very
        entry). The ETag is the JSON's with the templates' version, so a deploy of a new layout is
        not a 304."""
        etag = f'{entry.etag[:-1]}-{self._pages.version}"'
        headers = [(b"etag", etag.encode()), (b"x-cache", b"HIT" if from_cache else b"MISS")]
        if etag_matches(if_none_match, etag):
            return Answer(304, headers, b"")
        page = entry.page
        if page is None:
            page = self._pages.order(entry.json)
            self._lookup.remember_page(uid, entry, page)
        return Answer(200, [HTML, (b"content-length", str(len(page)).encode()), *headers], page)

    def page_error(self, status: int, uid: str, request_id: str) -> Answer:
        pages = self._pages
        if status == 404:
            body = pages.not_found(uid, request_id)
        elif status == 400:
            body = pages.message("Not an order uid", "An order_uid is 1 to 64 ASCII letters and digits.",
                                 request_id, uid)  # fmt: skip
        else:
            body = pages.message("Orders are unavailable", UNAVAILABLE.capitalize() + ".", request_id, uid)
        return html_answer(status, body)
