"""The HTTP application: its one route table and its one error mapping; the work is in orders.py,
json_api.py, ui.py and snapshots.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from internal.api.errors import Errors
from internal.api.json_api import JsonApi
from internal.api.lookup import OrderLookup
from internal.api.middleware import ObservabilityMiddleware
from internal.api.orders import OrderAnswers
from internal.api.pages import Pages
from internal.api.routes import AnswerRoute, FastPath
from internal.api.ui import Ui
from internal.cache.lru import OrderCache
from internal.pkg.health import Health
from internal.pkg.metrics import Metrics
from internal.store.async_reader import AsyncOrderReader
from internal.store.observe import DbObserver
from internal.store.reader import OrderSummary, PostgresOrderReader
from internal.store.search import OrderSearch

RECENT_COUNT = 20


def create_api(
    cache: OrderCache,
    reader: PostgresOrderReader,
    health: Health,
    metrics: Metrics,
    *,
    lookup_pool: AsyncConnectionPool,
    search_pool: AsyncConnectionPool,
    request_timeout_s: float,
    search_pages_bytes: int,
    templates: Path,
    access_log: bool,
    console_routes: Sequence[BaseRoute] = (),
    console_pool: AsyncConnectionPool | None = None,
) -> ASGIApp:
    """The app. ``lookup_pool`` serves cache misses on the event loop, ``search_pool`` the UI's
    searches (a budget of their own: they never queue ahead of look-ups or readiness); neither is
    open yet: they are opened and closed with the app's lifespan, because an async pool belongs to
    the loop that runs it. The recent-orders list and readiness use the sync ``reader``'s pool.
    ``console_routes`` are the dead-letter console's (dlq_console.py), reading through ``console_pool``
    (opened with the others)."""
    observer = DbObserver(metrics)
    lookup = OrderLookup(cache, AsyncOrderReader(lookup_pool, observer), request_timeout_s)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # The service answers (503) even while the database is down.
        await lookup_pool.open(wait=False)
        await search_pool.open(wait=False)
        if console_pool is not None:
            await console_pool.open(wait=False)
        try:
            yield
        finally:
            if console_pool is not None:
                await console_pool.close()
            await search_pool.close()
            await lookup_pool.close()

    async def recent() -> list[OrderSummary]:
        async with asyncio.timeout(request_timeout_s):
            return await run_in_threadpool(reader.recent, RECENT_COUNT, request_timeout_s)

    pages = Pages(templates)
    api = JsonApi(health, metrics)
    orders = OrderAnswers(lookup, pages)
    ui = Ui(lookup, OrderSearch(search_pool, observer), pages, recent, search_pages_bytes)
    # Every URL the service serves, once. An AnswerRoute's GET is also answered by FastPath (below)
    # from this same entry. Errors under the API's paths are JSON (errors.py), elsewhere the UI's page.
    api_routes = [
        AnswerRoute("/api/orders/{order_uid}", orders.json, hit=orders.json_hit),
        AnswerRoute("/order/{order_uid}", orders.json, hit=orders.json_hit),  # the original's path
        Route("/openapi.json", api.openapi),
        Route("/healthz", api.healthz),
        Route("/readyz", api.readyz),
        Route("/metrics", api.metrics),
    ]
    ui_routes = [
        AnswerRoute("/", ui.home),
        Route("/orders", ui.lookup_form),
        AnswerRoute("/orders/{order_uid}", orders.page, hit=orders.page_hit),
        AnswerRoute("/search", ui.search),
        Route("/static/style.css", ui.stylesheet),
    ]
    errors = Errors(pages, api_routes)
    routes = [*api_routes, *ui_routes, *console_routes]  # the console's: dlq_console.py
    app = Starlette(lifespan=lifespan, exception_handlers=errors.handlers(), routes=routes)
    # No redirect from "/x/" to "/x": "/api/orders/0%2F" decodes to "/api/orders/0/", and the redirect
    # would answer a look-up of uid "0/" with a look-up of another uid, "0". Unmatched paths are 404.
    app.router.redirect_slashes = False
    # Around Starlette, not inside it: the AnswerRoutes' GETs (order JSON, order page, home, search)
    # are answered before Starlette's own middleware stack, whose error layer costs each request a
    # closure and a wrapped send (docs/performance.md); everything else gets Starlette's whole stack.
    fast = FastPath(app, app.routes, errors.server_error)
    return ObservabilityMiddleware(fast, metrics=metrics, access_log=access_log)
