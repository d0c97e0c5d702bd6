"""The API's miss reader against the real PostgreSQL: concurrent misses share queries, each request
still gets exactly its own order (or None), and failures and timeouts reach every waiting request."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from internal.domain.errors import TransientError
from internal.domain.order import Order
from internal.domain.records import OrderRecord
from internal.store import migrations
from internal.store.async_reader import AsyncOrderReader
from internal.store.observe import DbObserver
from internal.store.reader import StoredOrder
from internal.store.sessions import configure_lookup_session
from internal.store.writer import PostgresOrderWriter
from tests.orders import order_doc

pytestmark = pytest.mark.integration


class CountingObserver(DbObserver):
    def __init__(self) -> None:
        super().__init__()
        self.queries = 0

    @contextmanager
    def op(self, name: str) -> Iterator[None]:
        self.queries += 1
        with super().op(name):
            yield


@pytest.fixture
def stored(schema_dsn: str) -> tuple[str, list[OrderRecord]]:
    migrations.apply_pending(schema_dsn)
    records = [
        OrderRecord.of(Order.model_validate_json(json.dumps(order_doc(i, items=1 + i % 3))))
        for i in range(120)
    ]
    with ConnectionPool(schema_dsn, min_size=1, max_size=1, timeout=5) as pool:
        PostgresOrderWriter(pool).write_batch(records)
    return schema_dsn, records


def lookup_pool(dsn: str, size: int) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        dsn, min_size=1, max_size=size, timeout=5, kwargs={"autocommit": True}, open=False
    )


def test_concurrent_misses_share_queries_and_each_gets_its_own_order(
    stored: tuple[str, list[OrderRecord]],
) -> None:
    dsn, records = stored
    asked = [r.uid for r in records] + [r.uid for r in records[:30]] + [f"unknown{i}" for i in range(20)]
    expected = {r.uid: r.json for r in records}

    async def scenario() -> tuple[list[StoredOrder | None], int]:
        async with lookup_pool(dsn, 2) as pool:
            observer = CountingObserver()
            reader = AsyncOrderReader(pool, observer, max_batch=16)
            answers = await asyncio.gather(*(reader.get(uid, 5.0) for uid in asked))
            return answers, observer.queries

    answers, queries = asyncio.run(scenario())
    for uid, answer in zip(asked, answers, strict=True):
        if uid in expected:
            assert answer is not None, uid
            assert (answer.uid, answer.json) == (uid, expected[uid])
        else:
            assert answer is None, uid
    # 170 requests, 2 connections, batches of at most 16 distinct uids: far fewer queries than requests.
    assert len(asked) // 16 <= queries < len(asked) // 4


def test_a_lone_miss_runs_its_own_query_at_once(stored: tuple[str, list[OrderRecord]]) -> None:
    dsn, records = stored

    async def scenario() -> tuple[StoredOrder | None, int]:
        async with lookup_pool(dsn, 4) as pool:
            observer = CountingObserver()
            reader = AsyncOrderReader(pool, observer)
            return await reader.get(records[7].uid, 5.0), observer.queries

    answer, queries = asyncio.run(scenario())
    assert answer is not None
    assert answer.json == records[7].json
    assert queries == 1


def test_database_down_fails_every_waiting_request_transiently() -> None:
    dead = "postgresql://orders:orders@127.0.0.1:1/orders?connect_timeout=1"

    async def scenario() -> list[BaseException | StoredOrder | None]:
        async with AsyncConnectionPool(dead, min_size=1, max_size=2, timeout=1, open=False) as pool:
            reader = AsyncOrderReader(pool)
            return await asyncio.gather(
                *(reader.get(f"uid{i}", 1.5) for i in range(10)), return_exceptions=True
            )

    results = asyncio.run(scenario())
    assert all(isinstance(r, TransientError) for r in results), results


def test_a_locked_table_times_out_within_the_budget_then_the_reader_recovers(
    stored: tuple[str, list[OrderRecord]],
) -> None:
    dsn, records = stored

    async def scenario() -> tuple[list[BaseException | StoredOrder | None], float, StoredOrder | None]:
        async with lookup_pool(dsn, 2) as pool:
            reader = AsyncOrderReader(pool, max_batch=4)
            with psycopg.connect(dsn) as locker:
                locker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
                started = time.monotonic()
                blocked = await asyncio.gather(
                    *(reader.get(r.uid, 0.5) for r in records[:12]), return_exceptions=True
                )
                elapsed = time.monotonic() - started
                locker.rollback()
            after = await reader.get(records[0].uid, 5.0)
            return blocked, elapsed, after

    blocked, elapsed, after = asyncio.run(scenario())
    assert all(isinstance(r, TransientError) for r in blocked), blocked
    assert elapsed < 3.0, f"requests with a 0.5 s budget took {elapsed:.1f}s"
    assert after is not None
    assert after.json == records[0].json


def test_lookup_sessions_plan_the_query_once_and_carry_the_request_budget(
    stored: tuple[str, list[OrderRecord]],
) -> None:
    """PostgreSQL re-plans ``order_uid = ANY($1)`` on every execution unless told otherwise (a custom
    plan cost three times the execution): look-up sessions use the generic plan, every time."""
    dsn, records = stored

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await configure_lookup_session(conn, 1500)

    async def scenario() -> tuple[list[tuple[Any, ...]], str]:
        async with AsyncConnectionPool(
            dsn, min_size=1, max_size=1, timeout=5, kwargs={"autocommit": True}, configure=configure
        ) as pool:
            reader = AsyncOrderReader(pool)
            for record in records[:12]:  # one at a time: twelve executions of the prepared statement
                assert await reader.get(record.uid, 5.0) is not None
            async with pool.connection() as conn:
                plans = await (
                    await conn.execute(
                        "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                        " WHERE statement LIKE '%%order_uid = ANY%%'"
                    )
                ).fetchall()
                timeout = await (await conn.execute("SHOW statement_timeout")).fetchone()
                jit = await (await conn.execute("SHOW jit")).fetchone()
            return plans, f"{timeout[0] if timeout else None} jit={jit[0] if jit else None}"

    plans, session = asyncio.run(scenario())
    assert len(plans) == 1, plans  # prepared by psycopg after its prepare_threshold (5) executions
    generic, custom = plans[0]
    assert (generic >= 1, custom) == (True, 0), plans
    assert session == "1500ms jit=off"
