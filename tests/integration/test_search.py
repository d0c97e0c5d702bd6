"""The UI's search against the real PostgreSQL: keyset pages have no repeats and no gaps while orders
arrive, the three kinds of match are merged without repeats, the count is exact up to its bound, and
every statement is served by an index."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from internal.domain.order import Order
from internal.domain.records import OrderRecord
from internal.store import migrations, search
from internal.store.search import COUNT_BOUND, Cursor, OrderSearch
from internal.store.sessions import configure_lookup_session
from internal.store.writer import PostgresOrderWriter
from tests.orders import order_doc

pytestmark = pytest.mark.integration
TRACK = "WBILSHAREDTRACK1"
CUSTOMER = "shared customer 'ä' <b>"


def record(doc: dict[str, Any]) -> OrderRecord:
    return OrderRecord.of(Order.model_validate_json(json.dumps(doc)))


def docs(first: int, n: int, **fields: str) -> list[dict[str, Any]]:
    made = []
    for i in range(first, first + n):
        doc = copy.deepcopy(order_doc(i, seed=61))
        doc.update(fields)
        for item in doc["items"]:
            item["track_number"] = doc["track_number"]
        made.append(doc)
    return made


def write(dsn: str, batch: list[dict[str, Any]]) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=1, timeout=5) as pool:
        PostgresOrderWriter(pool).write_batch([record(d) for d in batch])


async def walk(dsn: str, query: str, size: int, between: Any = None) -> list[list[str]]:
    """Every page's uids, following the cursors; ``between(page_number)`` runs after each page."""

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await configure_lookup_session(conn, 5000)

    pool = AsyncConnectionPool(dsn, min_size=1, max_size=1, kwargs={"autocommit": True},
                               configure=configure, open=False)  # fmt: skip
    async with pool:
        finder = OrderSearch(pool)
        pages: list[list[str]] = []
        cursor: Cursor | None = Cursor()
        while cursor is not None:
            page = await finder.search(query, query.isalnum() and query.isascii(), cursor, size, 5.0)
            pages.append([o.order_uid for o in page.orders])
            cursor = page.next
            if between is not None:
                between(len(pages))
    return pages


@pytest.fixture
def dsn(schema_dsn: str) -> str:
    migrations.apply_pending(schema_dsn)
    return schema_dsn


def test_pages_by_id_neither_repeat_nor_skip_while_orders_arrive(dsn: str) -> None:
    before = docs(0, 47, track_number=TRACK)
    write(dsn, before)
    arriving = iter(docs(100 + 5 * n, 5, track_number=TRACK) for n in range(20))

    pages = asyncio.run(walk(dsn, TRACK, 10, between=lambda _n: write(dsn, next(arriving))))
    seen = [uid for page in pages for uid in page]
    assert len(seen) == len(set(seen)), "an order was listed twice"
    assert set(seen) == {d["order_uid"] for d in before}, "the pages missed orders or showed newer ones"
    assert [len(p) for p in pages] == [10, 10, 10, 10, 7]


def test_uid_prefix_matches_come_first_then_the_others_newest_first_without_repeats(dsn: str) -> None:
    prefixed = docs(0, 12, order_uid="abc" + "0" * 5, track_number=TRACK)
    for n, d in enumerate(prefixed):
        d["order_uid"] = d["payment"]["transaction"] = f"abc{n:05d}"
    by_customer = docs(20, 9, customer_id="abc")
    write(dsn, prefixed + by_customer)
    # a customer id equal to the text: 9 orders; 12 whose uid starts with it
    pages = asyncio.run(walk(dsn, "abc", 5))
    seen = [uid for page in pages for uid in page]
    assert seen == sorted(d["order_uid"] for d in prefixed) + [d["order_uid"] for d in reversed(by_customer)]
    # the page that ends the prefix list exactly is followed by the start of the other list
    assert [len(p) for p in asyncio.run(walk(dsn, "abc", 12))] == [12, 9]


def test_track_and_customer_both_matching_list_an_order_once(dsn: str) -> None:
    both = docs(0, 3, track_number="SAMEVALUE", customer_id="SAMEVALUE")
    write(dsn, both + docs(10, 2, customer_id="SAMEVALUE"))
    pages = asyncio.run(walk(dsn, "SAMEVALUE", 20))
    assert len(pages[0]) == len(set(pages[0])) == 5

    async def total() -> int:
        pool = AsyncConnectionPool(dsn, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False)
        async with pool:
            return (await OrderSearch(pool).search("SAMEVALUE", True, Cursor(), 20, 5.0)).total

    assert asyncio.run(total()) == 5  # counted as a set: the three that match twice, once


def test_the_count_is_exact_up_to_its_bound(dsn: str) -> None:
    write(dsn, docs(0, 30, customer_id=CUSTOMER))

    async def total(query: str) -> int:
        pool = AsyncConnectionPool(dsn, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False)
        async with pool:
            return (await OrderSearch(pool).search(query, False, Cursor(), 20, 5.0)).total

    assert asyncio.run(total(CUSTOMER)) == 30
    assert asyncio.run(total("nobody")) == 0
    with psycopg.connect(dsn, autocommit=True) as conn:  # more than the bound, without 1,000 orders
        params = {"q": CUSTOMER, "lo": "", "hi": "", "bound": 10}
        assert conn.execute(search.COUNT, params).fetchone() == (0, 0, 10)
        assert conn.execute(search.COUNT_UNION, params).fetchone() == (10,)
    assert COUNT_BOUND == 1000


@pytest.mark.parametrize("statement", [search.SEARCH_FIRST, search.SEARCH_AFTER, search.COUNT_UNION])
def test_every_search_statement_is_served_by_indexes(dsn: str, statement: str) -> None:
    write(dsn, docs(0, 20))
    params = {"q": "x", "lo": "ab", "hi": "ac", "bound": 1001, "limit": 21, "after_uid": "", "before": 9,
              "list_prefix": True}  # fmt: skip
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")  # a tiny table would otherwise be scanned
        plan = "\n".join(str(r[0]) for r in conn.execute("EXPLAIN " + statement, params))
    for index in ("orders_order_uid_key", "orders_track_number_id_idx", "orders_customer_id_id_idx"):
        assert index in plan, plan
    assert "Seq Scan" not in plan, plan
