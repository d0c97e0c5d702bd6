"""Pages kept at most 1 s (internal/api/snapshots.py): the home page's recent orders and search pages,
with a fake clock and a fake read."""

from __future__ import annotations

import asyncio

from internal.api.snapshots import Snapshots


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Read:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> tuple[int, bytes]:
        self.calls += 1
        await self.release.wait()
        return 200, f"page {self.calls}".encode()


def test_a_fresh_page_is_served_without_a_read_and_a_stale_one_replaced() -> None:
    async def scenario() -> None:
        clock, read = Clock(), Read()
        pages = Snapshots(1.0, 1 << 20, clock=clock)
        first = await pages.get("", read)
        clock.now += 0.99
        assert await pages.get("", read) is first
        assert read.calls == 1
        clock.now += 0.01  # 1 s after the read started: the next request reads again
        assert (await pages.get("", read)).body == b"page 2"

    asyncio.run(scenario())


def test_concurrent_requests_share_one_read_and_a_cancelled_one_does_not_stop_it() -> None:
    async def scenario() -> None:
        read = Read()
        read.release.clear()
        pages = Snapshots(1.0, 1 << 20, clock=Clock())
        waiting = [asyncio.create_task(pages.get("k", read)) for _ in range(50)]
        await asyncio.sleep(0)
        waiting[0].cancel()  # a client went away
        read.release.set()
        answers = await asyncio.gather(*waiting[1:])
        assert read.calls == 1
        assert {a.body for a in answers} == {b"page 1"}

    asyncio.run(scenario())


def test_pages_are_kept_per_key_within_the_byte_bound() -> None:
    async def scenario() -> None:
        read = Read()
        pages = Snapshots(1.0, 2 * (len(b"page 1") + 300), clock=Clock())
        for key in ("a", "b", "c"):
            await pages.get(key, read)
        await pages.get("c", read)
        assert read.calls == 3  # c kept
        await pages.get("a", read)
        assert read.calls == 4  # a was the least recently used, evicted by c

    asyncio.run(scenario())


def test_with_no_bytes_nothing_is_kept_but_concurrent_reads_are_still_shared() -> None:
    async def scenario() -> None:
        read = Read()
        pages = Snapshots(1.0, 0, clock=Clock())
        await pages.get("k", read)
        await pages.get("k", read)
        assert read.calls == 2
        read.release.clear()
        both = [asyncio.create_task(pages.get("k", read)) for _ in range(2)]
        await asyncio.sleep(0)
        read.release.set()
        await asyncio.gather(*both)
        assert read.calls == 3

    asyncio.run(scenario())


def test_a_page_past_its_refresh_point_is_served_while_one_read_replaces_it() -> None:
    async def scenario() -> None:
        clock, read = Clock(), Read()
        pages = Snapshots(1.0, 1 << 20, clock=clock)
        first = await pages.get("", read)
        read.release.clear()
        clock.now += 0.85  # still fresh, but due: served as it is, and read again in the background
        assert await pages.get("", read) is first
        assert await pages.get("", read) is first
        await asyncio.sleep(0)
        assert read.calls == 2
        read.release.set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert (await pages.get("", read)).body == b"page 2"

    asyncio.run(scenario())
