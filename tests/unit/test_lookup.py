"""OrderLookup's back-fill on a miss, with a fake order source (the database side of a miss is proven
against PostgreSQL in tests/e2e/test_api.py and tests/integration/test_async_reader.py)."""

from __future__ import annotations

import asyncio

import pytest

from internal.api.lookup import OrderLookup, Unavailable
from internal.api.orders import find
from internal.cache.lru import OrderCache, make_entry
from internal.domain.errors import TransientError
from internal.store.reader import StoredOrder
from tests.orders import order_bytes

BIG = 10**9


class FakeSource:
    def __init__(self, orders: dict[str, bytes], fail: bool = False) -> None:
        self._orders = orders
        self._fail = fail
        self.reads = 0

    async def get(self, order_uid: str, timeout_s: float) -> StoredOrder | None:
        self.reads += 1
        if self._fail:
            raise TransientError("database unavailable")
        body = self._orders.get(order_uid)
        return None if body is None else StoredOrder(order_uid, body)


def test_a_miss_answers_with_the_entry_it_back_fills() -> None:
    body = order_bytes(3)
    cache, source = OrderCache(BIG, BIG, BIG), FakeSource({"uid3": body})
    lookup = OrderLookup(cache, source, timeout_s=1.0)
    loaded = asyncio.run(lookup.load("uid3"))
    assert loaded is not None
    assert loaded == make_entry(body)
    assert cache.get("uid3") is loaded  # one entry built (one SHA-256) for the answer and the cache
    again = asyncio.run(find(lookup, "uid3"))
    assert (again.status, again.entry, again.from_cache, source.reads) == (200, loaded, True, 1)


def test_a_miss_with_caching_off_still_answers() -> None:
    body = order_bytes(4)
    lookup = OrderLookup(OrderCache(0, BIG, BIG), FakeSource({"uid4": body}), timeout_s=1.0)
    assert asyncio.run(lookup.load("uid4")) == make_entry(body)


def test_unknown_is_none_and_a_failing_store_is_unavailable() -> None:
    cache = OrderCache(BIG, BIG, BIG)
    assert asyncio.run(OrderLookup(cache, FakeSource({}), timeout_s=1.0).load("nope")) is None
    assert len(cache) == 0
    with pytest.raises(Unavailable):
        asyncio.run(OrderLookup(cache, FakeSource({}, fail=True), timeout_s=1.0).load("nope"))
