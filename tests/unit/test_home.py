"""The home page's snapshot of recent orders (internal/api/home.py), with a fake clock and reader."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from internal.api.home import UNAVAILABLE, RecentOrdersPage
from internal.domain.errors import TransientError
from internal.store.reader import OrderSummary


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Reader:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> list[OrderSummary]:
        self.calls += 1
        await self.release.wait()
        if self.fail:
            raise TransientError("database down")
        return []


def render(recent: Sequence[OrderSummary], problem: str | None) -> bytes:
    return f"page {len(recent)} {problem}".encode()


def test_a_fresh_snapshot_is_served_without_a_query_and_a_stale_one_replaced() -> None:
    async def scenario() -> None:
        clock, reader = Clock(), Reader()
        home = RecentOrdersPage(reader, render, max_age_s=1.0, clock=clock)
        first = await home.body()
        clock.now += 0.99
        assert await home.body() is first
        assert reader.calls == 1
        clock.now += 0.01  # the snapshot is 1 s old: the next page reads again
        await home.body()
        assert reader.calls == 2

    asyncio.run(scenario())


def test_concurrent_requests_share_one_refresh_and_a_cancelled_one_does_not_stop_it() -> None:
    async def scenario() -> None:
        clock, reader = Clock(), Reader()
        reader.release.clear()
        home = RecentOrdersPage(reader, render, clock=clock)
        waiting = [asyncio.create_task(home.body()) for _ in range(50)]
        await asyncio.sleep(0)
        waiting[0].cancel()  # a client went away
        reader.release.set()
        bodies = await asyncio.gather(*waiting[1:])
        assert reader.calls == 1
        assert set(bodies) == {b"page 0 None"}

    asyncio.run(scenario())


def test_a_database_outage_is_a_page_saying_so_for_one_snapshot() -> None:
    async def scenario() -> None:
        clock, reader = Clock(), Reader()
        reader.fail = True
        home = RecentOrdersPage(reader, render, clock=clock)
        assert await home.body() == f"page 0 {UNAVAILABLE}".encode()
        assert await home.body() == f"page 0 {UNAVAILABLE}".encode()
        assert reader.calls == 1  # one timeout per second, not one per request
        reader.fail = False
        clock.now += 1.0
        assert await home.body() == b"page 0 None"

    asyncio.run(scenario())
