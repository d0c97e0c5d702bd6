"""The HTML UI (Jinja2, autoescaping on: order data is untrusted input). Pages:
``/`` look-up form and recent orders, ``/orders/{uid}`` one order, ``/search?q=`` by uid prefix,
track number or customer id."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from internal.api.lookup import OrderLookup, Unavailable, valid_uid
from internal.api.middleware import request_id
from internal.domain.errors import ServiceError
from internal.store.reader import OrderSummary, PostgresOrderReader

RECENT_COUNT = 20
PAGE_SIZE = 20
MAX_QUERY = 128
MAX_PAGE = 10_000  # deeper pages are refined searches, not paging
UNAVAILABLE = "The order store did not answer in time; try again shortly."


@dataclass(frozen=True, slots=True)
class PaymentCheck:
    goods_total_ok: bool
    amount_ok: bool
    items_total: int
    expected_amount: int


def payment_check(order: dict[str, Any]) -> PaymentCheck:
    payment = order["payment"]
    items_total = sum(item["total_price"] for item in order["items"])
    expected = payment["goods_total"] + payment["delivery_cost"] + payment["custom_fee"]
    return PaymentCheck(
        payment["goods_total"] == items_total, payment["amount"] == expected, items_total, expected
    )


def unix_time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_time(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Ui:
    def __init__(self, lookup: OrderLookup, reader: PostgresOrderReader, templates: Path) -> None:
        self._lookup = lookup
        self._reader = reader
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates),
            autoescape=True,  # every template, whatever its name: order fields may hold HTML
            undefined=jinja2.StrictUndefined,
        )
        self._env.filters["unix_time"] = unix_time
        self._env.filters["iso_time"] = iso_time
        self._css = (templates / "static" / "style.css").read_bytes()

    def _page(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self._env.get_template(template).render(request_id=request_id(request), **context)
        return HTMLResponse(html, status_code=status)

    async def home(self, request: Request) -> Response:
        recent, recent_error = await self._summaries(
            lambda: self._reader.recent(RECENT_COUNT, self._lookup.timeout_s)
        )
        return self._page(request, "home.html", recent=recent, recent_error=recent_error)

    async def lookup_form(self, request: Request) -> Response:
        uid = request.query_params.get("order_uid", "").strip()
        if not uid:
            return RedirectResponse("/", status_code=303)
        return RedirectResponse(f"/orders/{quote(uid, safe='')}", status_code=303)

    async def order(self, request: Request) -> Response:
        uid: str = request.path_params["order_uid"]
        if not valid_uid(uid):
            return self._page(request, "message.html", 400, uid=uid, title="Not an order uid",
                              message="An order_uid is 1 to 64 ASCII letters and digits.")  # fmt: skip
        try:
            found = await self._lookup.find(uid)
        except Unavailable:
            return self._page(
                request, "message.html", 503, uid=uid, title="Orders are unavailable", message=UNAVAILABLE
            )
        if found is None:
            return self._page(request, "order.html", 404, uid=uid, order=None)
        order = json.loads(found.entry.json)
        return self._page(request, "order.html", uid=uid, order=order, from_cache=found.from_cache,
                          check=payment_check(order), raw_url=f"/api/orders/{uid}")  # fmt: skip

    async def search(self, request: Request) -> Response:
        query = request.query_params.get("q", "").strip()[:MAX_QUERY]
        if any(ord(c) < 32 or ord(c) == 127 for c in query):  # PostgreSQL refuses NUL in text, too
            return self._page(request, "message.html", 400, uid="", title="Not a search",
                              message="Search text must not contain control characters.")  # fmt: skip
        try:
            page = min(MAX_PAGE, max(1, int(request.query_params.get("page", "1"))))
        except ValueError:
            page = 1
        results: list[OrderSummary] = []
        problem = None
        if query:
            offset = (page - 1) * PAGE_SIZE
            results, problem = await self._summaries(
                lambda: self._reader.search(query, PAGE_SIZE + 1, offset, self._lookup.timeout_s)
            )
        status = 503 if problem else 200
        return self._page(request, "search.html", status, query=query, page=page, results=results[:PAGE_SIZE],
                          has_next=len(results) > PAGE_SIZE, problem=problem)  # fmt: skip

    async def stylesheet(self, _request: Request) -> Response:
        return Response(self._css, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})

    async def _summaries(self, read: Any) -> tuple[list[OrderSummary], str | None]:
        try:
            with anyio.fail_after(self._lookup.timeout_s):
                return await run_in_threadpool(read), None
        except (TimeoutError, ServiceError):
            return [], UNAVAILABLE
