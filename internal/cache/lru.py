"""The in-process order cache: ready-to-send JSON per ``order_uid``, bounded by entries AND bytes.

A look-up answers with the exact bytes and ETag the API sends, so a hit costs no encoding and no hashing.
The entry also carries the order's HTML page once it has been rendered (``attach_page``): one entry, two
representations of the same bytes, evicted and replaced together. Bytes are charged at their real
cost, not ``len(json)``: ``sys.getsizeof`` of the JSON bytes (and of the page, when attached) plus
``ENTRY_OVERHEAD``, 456 bytes measured with tracemalloc (docs/cache.md): the ``CachedOrder`` (56), its
ETag string (67), a key of up to 64 ASCII characters (113, the longest valid ``order_uid``) and the
entry's share of cachetools' three tables (data dict, size dict and its int, LRU OrderedDict), taken at
its worst, right after the tables grew; it is 300-450 bytes depending on fill and uid length, so
``max_bytes`` bounds the real memory. 10,000 cached orders of 1-5 items take ~1.6 KB each (JSON ~1.3
KB), 4.5 times less than the same orders as dict-of-dicts (~7.3 KB).

The JSON comes from pydantic's ``TypeAdapter.dump_json``, whose result is right-sized (``getsizeof`` is
``len + 33`` and tracemalloc sees no slack), so it is stored as given, shared with the ``OrderRecord``.
``bytes(b)`` returns ``b`` itself; an encoder that over-allocates would need ``bytes(memoryview(b))``,
which copies into an exact-size object (tests/unit/test_cache.py checks the encoder stays right-sized).

Bounds: cachetools' ``LRUCache`` enforces ``max_bytes`` through its ``getsizeof``; ``max_entries`` is
enforced here by evicting the least recently used while the count is over it. One ``threading.Lock``
guards every cachetools call, ``get`` included, because a hit moves the entry in the LRU order.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import structlog
from cachetools import LRUCache

log = structlog.get_logger(component="cache")

WARM_CHUNK: Final = 1000  # entries per lock hold during the warm-up: few acquisitions, short holds
ENTRY_OVERHEAD: Final = 456  # bytes per entry besides the JSON and page bytes: see the module docstring


class Cacheable(Protocol):
    """What the cache takes: the consumer's ``OrderRecord`` and the reader's ``StoredOrder`` both are."""

    @property
    def uid(self) -> str: ...

    @property
    def json(self) -> bytes: ...


class HashedCacheable(Cacheable, Protocol):
    """A record that may already carry ``json_sha256`` = SHA-256 of exactly its ``json`` (the consumer's
    ``OrderRecord``): the ETag is taken from it instead of hashing the bytes a second time."""

    @property
    def json_sha256(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class CachedOrder:
    """What a hit serves: the response body and its strong ETag (a hash of exactly these bytes), and
    the order's rendered HTML page once a page view attached it (``OrderCache.attach_page``). The
    page is a function of the JSON alone, so it shares the entry's ETag and lifetime."""

    json: bytes
    etag: str
    page: bytes | None = None


@dataclass(frozen=True, slots=True)
class CacheStats:
    entries: int
    bytes: int
    hits: int
    misses: int
    evictions: int
    oversize_skipped: int
    pages_oversize: int = 0  # pages served but not kept: JSON and page over the per-entry cap


def entry_cost(entry: CachedOrder) -> int:
    """Bytes one cached order occupies: the JSON object as allocated, the page's when it has one, and
    the fixed per-entry overhead."""
    page = 0 if entry.page is None else sys.getsizeof(entry.page)
    return sys.getsizeof(entry.json) + page + ENTRY_OVERHEAD


def make_entry(json: bytes, sha256: bytes | None = None) -> CachedOrder:
    """The cache entry for ``json``; ``sha256`` is its digest when the caller already has it.

    A strong ETag is a hash of exactly these bytes (the body served), computed once per entry."""
    if type(json) is not bytes:
        raise TypeError(f"order JSON must be bytes, not {type(json).__name__}")
    digest = hashlib.sha256(json).digest() if sha256 is None else sha256
    return CachedOrder(json, '"' + digest.hex()[:16] + '"')


class _CountingLRU(LRUCache[str, CachedOrder]):
    """cachetools' LRU that counts evictions: every eviction, by size or by count, goes through popitem."""

    evictions = 0

    def popitem(self) -> tuple[str, CachedOrder]:
        item = super().popitem()
        self.evictions += 1
        return item


class OrderCache:
    """Thread-safe LRU of ``CachedOrder`` by ``order_uid``; 0 entries or 0 bytes turns caching off."""

    def __init__(self, max_entries: int, max_bytes: int, max_entry_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._enabled = max_entries > 0 and max_bytes > 0
        self._entry_limit = min(max_entry_bytes, max_bytes)
        self._lru = _CountingLRU(maxsize=max_bytes, getsizeof=entry_cost)
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._oversize = 0
        self._pages_oversize = 0

    def get(self, uid: str) -> CachedOrder | None:
        """The cached order, now the most recently used, or None (the caller reads the database)."""
        with self._lock:
            entry = self._lru.get(uid) if self._enabled else None
            if entry is not None:
                self._hits += 1
            else:
                self._misses += 1
        return entry

    def put(self, record: Cacheable) -> bool:
        """Cache the record's JSON as the most recently used; False when caching is off or it is too big.

        Raises ``TypeError`` when the record's JSON is not ``bytes``. Only orders whose transaction has
        committed may be put: the cache must never answer with an order the database does not have.
        """
        if not self._enabled:
            return False
        return self.put_entry(record.uid, make_entry(record.json))  # hashing happens outside the lock

    def put_entry(self, uid: str, entry: CachedOrder) -> bool:
        """``put`` for an entry the caller built already (the API's back-fill answers with the same
        entry, so the JSON is hashed once per miss)."""
        if not self._enabled:
            return False
        return self._insert_all([(uid, entry)]) == 1

    def attach_page(self, uid: str, entry: CachedOrder, page: bytes) -> bool:
        """Memoize ``page``, rendered from ``entry``, on that entry; True when it is now cached.

        Only the very entry the page was rendered from takes it: if a write-through or an eviction
        replaced or removed it meanwhile, the page is dropped (the caller still serves it), so a cached
        page is always the page of the cached JSON. The entry's cost grows by the page; an order
        whose JSON and page together exceed the per-entry cap keeps its JSON entry without a page."""
        if type(page) is not bytes:
            raise TypeError(f"an order page must be bytes, not {type(page).__name__}")
        with self._lock:
            current = self._lru.get(uid) if self._enabled else None
            if current is not entry or current.page is not None:
                return False
            paged = CachedOrder(current.json, current.etag, page)
            if entry_cost(paged) > self._entry_limit:
                self._pages_oversize += 1
                return False
            # Delete, then insert: the count stays, and cachetools evicts others for the page's bytes only.
            del self._lru[uid]
            self._lru[uid] = paged
        return True

    def put_many(self, records: Sequence[HashedCacheable]) -> None:
        """The consumer's write-through after a commit. Never raises: a failed put is logged and skipped,
        because a cache problem must not hold back or undo a durable write (``StoredOrderSink``).

        Entries are built outside the lock, with the ETag taken from the record's digest of its JSON
        (for most orders its content hash: no second SHA-256 of the bytes), and inserted under ONE
        lock hold per batch rather than one per order; readers wait at most one batch's inserts
        (~1 us each)."""
        if not self._enabled:
            return
        entries: list[tuple[str, CachedOrder]] = []
        for record in records:
            try:
                entries.append((record.uid, make_entry(record.json, record.json_sha256)))
            except Exception:  # whatever went wrong, the order stays servable from the database
                log.exception("cache_put_failed", uid=_uid_of(record))
        self._insert_all(entries)

    def warm(self, records_newest_first: Iterable[Cacheable]) -> int:
        """Load orders read newest first so that the newest ends as the most recently used; the count cached.

        Only the newest orders that fit both bounds are kept from the stream, as ready entries (the
        record, with its decoded ``Order``, is dropped at once), and reading stops at the first order
        that would not fit: inserting the rest oldest first would only evict it again. Closing a partly
        read iterator is the caller's business. Meant to run before the consumer starts; a uid already
        cached is left as it is. Bad records are logged and skipped, like in ``put_many``.
        """
        if not self._enabled:
            return 0
        kept: list[tuple[str, CachedOrder]] = []
        total = 0
        for record in records_newest_first:
            try:
                uid, entry = record.uid, make_entry(record.json)
            except Exception:
                log.exception("cache_warm_record_failed")
                continue
            cost = entry_cost(entry)
            if cost > self._entry_limit:
                with self._lock:
                    self._oversize += 1
                continue
            if total + cost > self._max_bytes:
                break
            kept.append((uid, entry))
            total += cost
            if len(kept) >= self._max_entries:
                break
        cached = 0
        while kept:  # oldest first, a chunk per lock hold; cutting the buffer's tail releases it as it goes
            chunk = kept[-WARM_CHUNK:]
            del kept[-WARM_CHUNK:]
            chunk.reverse()
            cached += self._insert_all(chunk, replace=False)
        return cached

    def _insert_all(self, entries: list[tuple[str, CachedOrder]], *, replace: bool = True) -> int:
        """Insert under one lock hold, each as the most recently used, evicting by bytes, then by count;
        entries over the per-entry cap are counted, not cached. ``replace=False`` leaves a cached uid as it
        is. An entry of the same bytes as the cached one (a concurrent back-fill of the same order) keeps
        the cached one, and with it the page rendered for it. Returns how many went in."""
        fitting = [(uid, entry) for uid, entry in entries if entry_cost(entry) <= self._entry_limit]
        inserted = 0
        with self._lock:
            self._oversize += len(entries) - len(fitting)
            for uid, entry in fitting:
                if uid in self._lru:
                    if not replace:
                        continue
                    if self._lru[uid].etag == entry.etag:  # the look-up makes it the most recently used
                        inserted += 1
                        continue
                self._lru[uid] = entry
                while len(self._lru) > self._max_entries:
                    self._lru.popitem()
                inserted += 1
        return inserted

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                entries=len(self._lru),
                bytes=int(self._lru.currsize),
                hits=self._hits,
                misses=self._misses,
                evictions=self._lru.evictions,
                oversize_skipped=self._oversize,
                pages_oversize=self._pages_oversize,
            )

    def __len__(self) -> int:
        with self._lock:
            return len(self._lru)

    def __contains__(self, uid: object) -> bool:
        """Membership without touching the LRU order (unlike ``get``)."""
        with self._lock:
            return uid in self._lru


def _uid_of(record: Cacheable) -> str | None:
    try:
        return record.uid
    except Exception:  # the record that just failed may be broken in any way
        return None
