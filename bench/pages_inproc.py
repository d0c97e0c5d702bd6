"""The order page's costs in process, without a socket or a database: the render of ``Pages.order``
(orders of 1, 3 and 5 items), and per request through the whole app (``create_api`` with unopened
pools, 2,000 orders of 1-5 items all cached): the first view of each page (render + attach), then
JSON hits and page hits, alternated, the best of 40 rounds each (the minimum
filters out the neighbours' share of a shared machine).

``python -m bench.pages_inproc``. It uses only interfaces older builds have too, so one build's
figures can be set beside another's: copy it into a worktree of that build's ``bench/`` and run it
there (docs/performance.md, issue 21).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from internal.api.app import create_api
from internal.api.pages import Pages
from internal.cache.lru import OrderCache, make_entry
from internal.domain.order import Order, order_to_json_bytes
from internal.pkg.health import Health
from internal.pkg.metrics import Metrics
from internal.pkg.paths import templates_dir
from internal.store.reader import PostgresOrderReader
from tests.orders import order_doc

BIG = 10**9
NOWHERE = "postgresql://nobody@127.0.0.1:1/none"  # never connected: every order asked for is cached


class NoConsumer:
    running, fatal, crashed, paused, outage_reason = True, None, None, False, None
    assigned: frozenset[tuple[str, int]] = frozenset()
    stuck: dict[tuple[str, int], str] = {}  # noqa: RUF012 - read only
    last_beat = 0.0


def order_json(seed: int, items: int) -> bytes:
    return order_to_json_bytes(Order.model_validate_json(json.dumps(order_doc(seed, seed=11, items=items))))


def render_figures() -> str:
    pages = Pages(templates_dir())
    figures = []
    for items in (1, 3, 5):
        body = order_json(items, items)
        rounds = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(2000):
                pages.order(body)
            rounds.append((time.perf_counter() - started) / 2000 * 1e6)
        figures.append(f"{items} items {min(rounds):.1f} us")
    return "render: " + ", ".join(figures)


async def app_figures() -> str:
    cache = OrderCache(BIG, BIG, BIG)
    uids = []
    for k in range(2000):
        body = order_json(k, 1 + k % 5)
        uid = json.loads(body)["order_uid"]
        cache.put_entry(uid, make_entry(body))
        uids.append(uid)
    app = create_api(
        cache,
        PostgresOrderReader(ConnectionPool(NOWHERE, open=False)),
        Health(NoConsumer(), lambda: None),  # type: ignore[arg-type]
        Metrics("bench"),
        lookup_pool=AsyncConnectionPool(NOWHERE, open=False),
        search_pool=AsyncConnectionPool(NOWHERE, open=False),
        request_timeout_s=1.0,
        search_pages_bytes=1 << 20,
        templates=templates_dir(),
        access_log=False,
    )

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Any) -> None:
        pass

    async def per_request(prefix: str) -> float:
        started = time.perf_counter()
        for uid in uids:
            scope = {"type": "http", "method": "GET", "path": prefix + uid, "headers": [(b"host", b"x")],
                     "query_string": b"", "root_path": ""}  # fmt: skip
            await app(scope, receive, send)
        return (time.perf_counter() - started) / len(uids) * 1e6

    first = await per_request("/orders/")  # renders and attaches every page
    json_hits, page_hits = [], []
    for _ in range(40):
        json_hits.append(await per_request("/api/orders/"))
        page_hits.append(await per_request("/orders/"))
    json_hit, page_hit = min(json_hits), min(page_hits)
    return f"app: first page view {first:.1f} us, JSON hit {json_hit:.1f} us, page hit {page_hit:.1f} us"


def main() -> None:
    print(render_figures())
    print(asyncio.run(app_figures()))


if __name__ == "__main__":
    main()
