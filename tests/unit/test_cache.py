"""The order cache (docs/cache.md): LRU order, both bounds, real byte accounting, warm-up and threads."""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import random
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import pytest
from structlog.testing import capture_logs

from internal.cache.lru import ENTRY_OVERHEAD, CacheStats, OrderCache, entry_cost, make_entry
from internal.domain.order import Order, order_to_json_bytes
from internal.domain.records import OrderRecord
from tests.orders import order_bytes

BIG = 10**9  # a bound that never binds


@dataclass(frozen=True)
class StoredJson:
    """A record without a content hash, like the reader's ``StoredOrder``."""

    uid: str
    json: bytes


@functools.cache
def record(index: int, items: int = 2) -> OrderRecord:
    return OrderRecord.of(Order.model_validate_json(order_bytes(index, items=items)))


def cost(r: OrderRecord) -> int:
    return entry_cost(make_entry(r.json))


def cached_uids(cache: OrderCache, candidates: Sequence[OrderRecord]) -> list[str]:
    return [r.uid for r in candidates if r.uid in cache]


def test_get_returns_the_bytes_put_and_a_strong_etag_of_them() -> None:
    cache = OrderCache(BIG, BIG, BIG)
    r = record(0)
    assert cache.put(r) is True
    entry = cache.get(r.uid)
    assert entry is not None
    assert entry.json is r.json  # stored as given: pydantic's bytes are right-sized (see below)
    assert entry.etag == '"' + hashlib.sha256(r.json).hexdigest()[:16] + '"'
    assert cache.get("absent") is None
    assert r.uid in cache
    assert len(cache) == 1


def test_least_recently_used_goes_first_and_get_refreshes_recency() -> None:
    cache = OrderCache(3, BIG, BIG)
    r0, r1, r2, r3, r4 = (record(i) for i in range(5))
    for r in (r0, r1, r2):
        cache.put(r)
    assert cache.get(r0.uid) is not None  # r0 is now the most recently used, r1 the least
    cache.put(r3)
    assert cached_uids(cache, [r0, r1, r2, r3]) == [r0.uid, r2.uid, r3.uid]
    cache.put(r4)
    assert cached_uids(cache, [r0, r1, r2, r3, r4]) == [r0.uid, r3.uid, r4.uid]


def test_contains_does_not_refresh_recency() -> None:
    cache = OrderCache(2, BIG, BIG)
    r0, r1, r2 = (record(i) for i in range(3))
    cache.put(r0)
    cache.put(r1)
    assert r0.uid in cache
    cache.put(r2)
    assert cached_uids(cache, [r0, r1, r2]) == [r1.uid, r2.uid]


def test_count_bound_keeps_the_most_recent_entries() -> None:
    cache = OrderCache(5, BIG, BIG)
    records = [record(i) for i in range(20)]
    for r in records:
        cache.put(r)
    assert cached_uids(cache, records) == [r.uid for r in records[-5:]]
    assert cache.stats().evictions == 15


def test_putting_the_same_uid_again_neither_duplicates_nor_double_counts() -> None:
    cache = OrderCache(BIG, BIG, BIG)
    r = record(0)
    cache.put(r)
    cache.put(r)
    assert cache.stats() == CacheStats(
        entries=1, bytes=cost(r), hits=0, misses=0, evictions=0, oversize_skipped=0
    )


def test_byte_bound_one_big_order_evicts_as_many_small_ones_as_it_needs() -> None:
    smalls = [record(i, items=1) for i in range(10)]
    big = record(100, items=60)
    max_bytes = cost(big) + cost(smalls[-1]) + cost(smalls[-2])
    assert sum(cost(r) for r in smalls) <= max_bytes, "precondition: all small orders fit"
    cache = OrderCache(BIG, max_bytes, BIG)
    for r in smalls:
        cache.put(r)
    assert len(cache) == 10

    assert cache.put(big) is True
    remaining = cached_uids(cache, smalls)
    assert remaining == [r.uid for r in smalls[-len(remaining) :]], "only the least recently used go"
    assert 1 <= len(remaining) <= 2
    stats = cache.stats()
    assert stats.bytes == cost(big) + sum(cost(r) for r in smalls if r.uid in cache) <= max_bytes
    assert stats.evictions == 10 - len(remaining)


def test_bytes_are_charged_at_the_real_cost_of_an_entry() -> None:
    cache = OrderCache(BIG, BIG, BIG)
    records = [record(i, items=1 + i % 5) for i in range(10)]
    for r in records:
        cache.put(r)
    assert cache.stats().bytes == sum(sys.getsizeof(r.json) + ENTRY_OVERHEAD for r in records)
    assert all(cost(r) > len(r.json) + 400 for r in records)


def test_the_charged_bytes_cover_what_the_entries_really_allocate() -> None:
    """tracemalloc over 1000 entries with the longest valid uid (64 characters): the charge is an upper
    bound and not a gross one. If this fails after a Python upgrade, re-measure ENTRY_OVERHEAD."""
    templates = [record(i, items=1 + i % 5) for i in range(1000)]
    cache = OrderCache(BIG, BIG, BIG)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, t in enumerate(templates):
            # a fresh uid and a fresh, exact-size copy of the JSON, so that all the cache keeps is traced
            uid = f"{i:064d}"
            cache.put(OrderRecord(uid=uid, content_hash=t.content_hash, json=bytes(memoryview(t.json))))
            del uid
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    charged = cache.stats().bytes
    assert 0.85 * charged <= traced <= charged


def test_the_project_encoder_returns_right_sized_bytes() -> None:
    """A bytes object from an over-allocating encoder would keep its slack alive in the cache; pydantic's
    dump_json allocates exactly getsizeof (len + 33) per result, so the cache stores it without a copy."""
    order = Order.model_validate_json(order_bytes(0, items=3))
    order_to_json_bytes(order)  # any lazy set-up of the serializer happens outside the measurement
    kept = [b""] * 200  # allocated beforehand: only the results are traced
    tracemalloc.start()
    try:
        for i in range(len(kept)):
            kept[i] = order_to_json_bytes(order)
        traced = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert sys.getsizeof(kept[0]) == len(kept[0]) + 33
    # A few hundred bytes of one-off allocations (interpreter caches) may appear once, not per result.
    assert traced <= len(kept) * sys.getsizeof(kept[0]) + 1024


def test_oversize_orders_are_not_cached_and_are_counted() -> None:
    r, small = record(0, items=5), record(1, items=1)
    cache = OrderCache(BIG, BIG, max_entry_bytes=cost(r) - 1)
    assert cache.put(r) is False
    assert cache.put(small) is True
    assert r.uid not in cache
    assert cache.get(r.uid) is None
    assert cache.stats().oversize_skipped == 1


def test_an_order_larger_than_max_bytes_is_skipped_not_an_error() -> None:
    r = record(0)
    cache = OrderCache(BIG, max_bytes=cost(r) - 1, max_entry_bytes=BIG)
    assert cache.put(r) is False
    assert cache.stats().oversize_skipped == 1
    assert len(cache) == 0


@pytest.mark.parametrize(("max_entries", "max_bytes"), [(0, BIG), (BIG, 0), (0, 0)])
def test_zero_entries_or_zero_bytes_turns_caching_off(max_entries: int, max_bytes: int) -> None:
    cache = OrderCache(max_entries, max_bytes, BIG)
    r = record(0)
    assert cache.put(r) is False
    cache.put_many([r, record(1)])
    assert cache.warm([r]) == 0
    assert cache.get(r.uid) is None
    assert r.uid not in cache
    assert cache.stats() == CacheStats(entries=0, bytes=0, hits=0, misses=1, evictions=0, oversize_skipped=0)


class Counted:
    """A newest-first stream that counts how far the cache read it."""

    def __init__(self, records: Sequence[OrderRecord]) -> None:
        self.records = records
        self.read = 0

    def __iter__(self) -> Iterator[OrderRecord]:
        for r in self.records:
            self.read += 1
            yield r


def test_warm_keeps_exactly_the_newest_and_the_newest_is_most_recently_used() -> None:
    oldest_first = [record(i) for i in range(8)]
    cache = OrderCache(5, BIG, BIG)
    stream = Counted(oldest_first[::-1])
    assert cache.warm(stream) == 5
    assert stream.read == 5, "older orders would only be evicted again: not even read"
    assert cached_uids(cache, oldest_first) == [r.uid for r in oldest_first[3:]]
    evicted: list[str] = []
    for i in range(5):  # new orders push the warm ones out oldest first, the newest last
        cache.put(record(100 + i))
        evicted += [r.uid for r in oldest_first[3:] if r.uid not in cache and r.uid not in evicted]
    assert evicted == [r.uid for r in oldest_first[3:]]
    assert cache.stats().evictions == 5


def test_warm_stops_at_the_byte_bound() -> None:
    oldest_first = [record(i) for i in range(8)]
    newest_three = oldest_first[-3:]
    cache = OrderCache(BIG, sum(cost(r) for r in newest_three), BIG)
    stream = Counted(oldest_first[::-1])
    assert cache.warm(stream) == 3
    assert stream.read == 4
    assert cached_uids(cache, oldest_first) == [r.uid for r in newest_three]
    assert cache.stats().evictions == 0


def test_warm_skips_oversize_and_broken_records_and_keeps_cached_ones() -> None:
    small, big, other, fresh = record(0, items=1), record(1, items=40), record(2, items=1), record(3)
    cache = OrderCache(BIG, BIG, max_entry_bytes=max(cost(small), cost(other), cost(fresh)))
    cache.put(fresh)
    broken = OrderRecord(uid=record(4).uid, content_hash=b"", json=cast(bytes, "not bytes"))
    with capture_logs() as logs:
        assert cache.warm([other, broken, big, small, fresh]) == 2
    assert [e["event"] for e in logs] == ["cache_warm_record_failed"]
    assert cached_uids(cache, [small, big, other, fresh, broken]) == [small.uid, other.uid, fresh.uid]
    assert cache.stats().oversize_skipped == 1


def test_write_through_etag_from_the_content_hash_equals_the_etag_of_the_bytes() -> None:
    # put_many takes the ETag from OrderRecord.json_sha256 (the content hash for orders sent in UTC
    # with "Z"); a look-up that reads the database hashes the bytes: both must give one ETag, or a
    # client's If-None-Match breaks after a restart - whatever the spelling of date_created.
    records = [record(i, items=1 + i % 4) for i in range(8)]
    for n, sent in enumerate(["2021-11-26T09:22:19+03:00", "2021-11-26T06:22:19.5Z", "2021-11-26t06:22:19z"]):
        doc = json.loads(order_bytes(20 + n))
        doc["date_created"] = sent
        records.append(OrderRecord.of(Order.model_validate_json(json.dumps(doc))))
        assert records[-1].json_sha256 is None  # its content hash is not the digest of its bytes
    by_hash, by_bytes = OrderCache(BIG, BIG, BIG), OrderCache(BIG, BIG, BIG)
    by_hash.put_many(records)
    for r in records:
        by_bytes.put(StoredJson(r.uid, r.json))
    for r in records:
        hashed, plain = by_hash.get(r.uid), by_bytes.get(r.uid)
        assert hashed is not None
        assert plain is not None
        assert hashed.etag == plain.etag == '"' + hashlib.sha256(r.json).hexdigest()[:16] + '"'


def test_put_many_counts_an_oversize_record_and_caches_the_rest() -> None:
    small, big = record(0, items=1), record(1, items=40)
    cache = OrderCache(BIG, BIG, cost(small))
    cache.put_many([big, small])
    assert cached_uids(cache, [small, big]) == [small.uid]
    assert cache.stats().oversize_skipped == 1


def test_stats_count_hits_misses_and_evictions() -> None:
    cache = OrderCache(2, BIG, BIG)
    r0, r1, r2 = (record(i) for i in range(3))
    cache.put_many([r0, r1, r2])
    cache.get(r0.uid)
    cache.get(r1.uid)
    cache.get(r2.uid)
    cache.get(r2.uid)
    assert cache.stats() == CacheStats(
        entries=2, bytes=cost(r1) + cost(r2), hits=3, misses=1, evictions=1, oversize_skipped=0
    )


def test_put_many_never_raises_and_caches_the_good_records() -> None:
    good, other = record(0), record(1)
    not_bytes = OrderRecord(uid=record(2).uid, content_hash=b"", json=cast(bytes, "not bytes"))
    not_a_record = cast(OrderRecord, object())
    cache = OrderCache(BIG, BIG, BIG)
    with capture_logs() as logs:
        cache.put_many([good, not_bytes, not_a_record, other])
    assert cached_uids(cache, [good, not_bytes, other]) == [good.uid, other.uid]
    assert [(e["event"], e["uid"], e["log_level"]) for e in logs] == [
        ("cache_put_failed", not_bytes.uid, "error"),
        ("cache_put_failed", None, "error"),
    ]


def run_interleaved(targets: Sequence[tuple[Callable[[int], None], int]]) -> None:
    """Run each target(seed) in a thread of its own, switching threads every 10 us so that they
    interleave inside the cache's methods; fails with every thread's failure."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[int], None], seed: int) -> None:
        try:
            target(seed)
        except BaseException as exc:  # every failure of every thread is reported, not lost
            errors.append(exc)

    workers = [threading.Thread(target=guarded, args=pair) for pair in targets]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for t in workers:
            t.start()
        for t in workers:
            t.join(timeout=60)
    finally:
        sys.setswitchinterval(switch)
    assert not any(t.is_alive() for t in workers)
    assert errors == []


def test_writers_and_readers_in_many_threads_keep_every_invariant() -> None:
    pool = [record(i, items=1 + i % 5) for i in range(64)]
    expected = {r.uid: r.json for r in pool}
    max_entries, max_bytes = 16, 12 * cost(pool[2])  # both bounds bind, depending on the mix of sizes
    cache = OrderCache(max_entries, max_bytes, BIG)
    iterations, threads = 3000, 8
    start = threading.Barrier(2 * threads)

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for i in range(iterations):
            if i % 10 == 0:
                cache.put_many(rng.sample(pool, 3))
            else:
                cache.put(rng.choice(pool))

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for i in range(iterations):
            uid = rng.choice(pool).uid
            entry = cache.get(uid)
            assert entry is None or entry.json == expected[uid], f"wrong bytes for {uid}"
            if i % 50 == 0:
                stats = cache.stats()
                assert stats.bytes <= max_bytes
                assert stats.entries <= max_entries

    run_interleaved([(writer, n) for n in range(threads)] + [(reader, 100 + n) for n in range(threads)])
    stats = cache.stats()
    assert stats.bytes <= max_bytes
    assert stats.entries == len(cache) <= max_entries
    assert stats.bytes == sum(cost(r) for r in pool if r.uid in cache), "byte accounting drifted"
    assert stats.hits + stats.misses == threads * iterations
    assert stats.hits > 0
    assert stats.evictions > 0


# --- The order page on the entry (attach_page) ---

PAGE = b"<html>" + b"p" * 3000 + b"</html>"


def test_a_page_attached_to_the_entry_is_served_with_it_and_charged() -> None:
    cache = OrderCache(BIG, BIG, BIG)
    r = record(0)
    cache.put(r)
    entry = cache.get(r.uid)
    assert entry is not None
    assert entry.page is None
    assert cache.attach_page(r.uid, entry, PAGE) is True
    paged = cache.get(r.uid)
    assert paged is not None
    assert (paged.json, paged.etag, paged.page) == (entry.json, entry.etag, PAGE)
    assert cache.stats().bytes == cost(r) + sys.getsizeof(PAGE) == entry_cost(paged)
    assert cache.attach_page(r.uid, paged, b"<html>other</html>") is False  # one page per entry
    assert cache.stats().entries == 1


def test_write_through_replaces_the_entry_and_so_drops_its_page() -> None:
    cache = OrderCache(BIG, BIG, BIG)
    old, new = record(0), record(1)
    changed = OrderRecord(old.uid, new.content_hash, new.json)
    cache.put(old)
    entry = cache.get(old.uid)
    assert entry is not None
    cache.attach_page(old.uid, entry, PAGE)
    cache.put_many([changed])  # another JSON for the uid (the cache does not judge; the store does)
    replaced = cache.get(old.uid)
    assert replaced is not None
    assert (replaced.json, replaced.page) == (new.json, None)
    assert cache.stats().bytes == entry_cost(replaced)


def test_a_page_rendered_from_a_replaced_entry_is_not_attached() -> None:
    """A page view read the entry, a write-through replaced it while the page was rendered: the page
    of the old JSON must not land on the new entry."""
    cache = OrderCache(BIG, BIG, BIG)
    r = record(0)
    cache.put(r)
    stale = cache.get(r.uid)
    assert stale is not None
    cache.put_many([OrderRecord(r.uid, record(1).content_hash, record(1).json)])
    assert cache.attach_page(r.uid, stale, PAGE) is False
    current = cache.get(r.uid)
    assert current is not None
    assert current.page is None
    assert current.json == record(1).json


def test_the_same_bytes_again_keep_the_entry_and_its_page() -> None:
    """A second back-fill of the same order (two concurrent misses), or a replay, is not a change:
    the cached entry stays, page included. (A conflict never reaches the cache: first write wins,
    the consumer writes through only what it stored.)"""
    cache = OrderCache(BIG, BIG, BIG)
    r = record(0)
    cache.put(r)
    entry = cache.get(r.uid)
    assert entry is not None
    cache.attach_page(r.uid, entry, PAGE)
    assert cache.put_entry(r.uid, make_entry(bytes(memoryview(r.json)))) is True
    cache.put(r)
    kept = cache.get(r.uid)
    assert kept is not None
    assert kept.page == PAGE


def test_eviction_takes_the_page_with_its_json() -> None:
    a, b = record(0), record(1)
    cache = OrderCache(BIG, cost(a) + sys.getsizeof(PAGE) + cost(b), BIG)
    cache.put(a)
    entry = cache.get(a.uid)
    assert entry is not None
    cache.attach_page(a.uid, entry, PAGE)
    cache.put(b)
    assert cached_uids(cache, [a, b]) == [a.uid, b.uid]
    cache.put(record(2))  # a and its page are the least recently used: both go
    assert a.uid not in cache
    assert cache.stats().bytes == cost(b) + cost(record(2))


def test_attaching_a_page_evicts_others_by_bytes_not_the_entry_itself() -> None:
    a, b = record(0), record(1)
    cache = OrderCache(BIG, cost(a) + sys.getsizeof(PAGE) + 100, BIG)  # a and b fit, a with its page alone
    cache.put(b)
    cache.put(a)
    entry = cache.get(a.uid)
    assert entry is not None
    assert cache.attach_page(a.uid, entry, PAGE) is True
    assert cached_uids(cache, [a, b]) == [a.uid]
    assert cache.stats().evictions == 1


def test_a_page_over_the_per_entry_cap_is_not_kept_and_the_json_stays() -> None:
    r = record(0)
    cache = OrderCache(BIG, BIG, cost(r) + 100)
    cache.put(r)
    entry = cache.get(r.uid)
    assert entry is not None
    assert cache.attach_page(r.uid, entry, PAGE) is False
    kept = cache.get(r.uid)
    assert kept is entry
    assert kept.page is None
    assert cache.stats().pages_oversize == 1


def test_pages_and_caching_off() -> None:
    cache = OrderCache(0, BIG, BIG)
    assert cache.attach_page("x", make_entry(b"{}"), PAGE) is False
    with pytest.raises(TypeError):
        OrderCache(BIG, BIG, BIG).attach_page("x", make_entry(b"{}"), cast(bytes, "text"))


def test_page_views_and_write_through_in_threads_never_pair_a_page_with_other_json() -> None:
    pool = [record(i, items=1 + i % 3) for i in range(16)]
    versions = [record(100 + i) for i in range(16)]  # another JSON for each uid
    cache = OrderCache(BIG, 40 * cost(pool[0]), BIG)
    start = threading.Barrier(4)

    def page_of(json: bytes) -> bytes:
        return b"<page of " + hashlib.sha256(json).digest() + b">"

    def viewer(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(3000):
            uid = rng.choice(pool).uid
            entry = cache.get(uid)
            if entry is None:
                continue
            assert entry.page is None or entry.page == page_of(entry.json), "a page of other JSON"
            cache.attach_page(uid, entry, page_of(entry.json))

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(3000):
            i = rng.randrange(len(pool))
            r = pool[i] if rng.random() < 0.5 else versions[i]
            cache.put_many([OrderRecord(pool[i].uid, r.content_hash, r.json)])

    run_interleaved([(viewer, 1), (viewer, 2), (writer, 3), (writer, 4)])
    live = [cache.get(r.uid) for r in pool]
    assert cache.stats().bytes == sum(entry_cost(e) for e in live if e is not None), "byte accounting drifted"
