"""Pages that are read from PostgreSQL but need not be read per request: the home page (the most
recent orders) and search result pages, each kept as a ready answer at most ``max_age_s`` old.

The recent orders come from PostgreSQL, not from this instance's write-through: several instances
share the topic's partitions, and each sees only its own partitions' commits. Per page (key):

* an answer younger than ``max_age_s`` (from the start of the query that made it) is served as it
  is: rendered once, so such a request costs nothing but the send. Past ``REFRESH_AHEAD`` of that
  age one read starts in the background, so a page asked for steadily is read at most every 0.8 s
  and no request waits for it;
* an older one (or none yet) is replaced: the first request starts ONE read, and every request that
  comes while it runs waits for that same read (bounded by the request's time budget, which the read
  runs under). So a page never lists what is older than ``max_age_s`` plus one query: an order
  committed before a request minus ``max_age_s`` is on it. Serving the stale page while refreshing
  in the background would break that after any idle period, for the one query it saves;
* a failed read is an answer too (the home page says "recent orders unavailable", a search 503s),
  kept as long: an outage costs one query timeout per page per second, not one per request.

A search is 0.8-1.4 ms of the service's core and ~1.2 ms of PostgreSQL's; a popular search asked
50 times at once is now one of each (docs/performance.md). Memory is bounded by ``max_bytes``:
least recently used pages go first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cachetools import LRUCache

# A page read at least this share of its maximum age ago is read again in the background while it is
# still served, so under steady load no request waits for a read (they did, every second, for each
# page: the p99 of a popular search was 100-160 ms).
REFRESH_AHEAD = 0.8
SNAPSHOT_OVERHEAD = 300  # bytes per kept page besides its body: key, snapshot object, LRU tables


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken: float  # monotonic time the read that made it started
    status: int
    body: bytes


def _cost(snapshot: Snapshot) -> int:
    return len(snapshot.body) + SNAPSHOT_OVERHEAD


class Snapshots:
    def __init__(self, max_age_s: float, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age_s = max_age_s
        self._refresh_after_s = max_age_s * REFRESH_AHEAD
        self._clock = clock
        self._kept: LRUCache[str, Snapshot] = LRUCache(maxsize=max(1, max_bytes), getsizeof=_cost)
        self._enabled = max_bytes > 0
        self._reading: dict[str, asyncio.Future[Snapshot]] = {}

    async def get(self, key: str, read: Callable[[], Awaitable[tuple[int, bytes]]]) -> Snapshot:
        """The page ``key``: kept, or made by ``read`` (status, body), which runs once for all the
        requests that want it meanwhile."""
        kept = self._kept.get(key)
        age = self._max_age_s if kept is None else self._clock() - kept.taken
        if age < self._refresh_after_s:
            return kept  # type: ignore[return-value]  # age < max age only when kept
        reading = self._reading.get(key)
        if reading is None:
            reading = self._reading[key] = asyncio.ensure_future(self._take(key, read))
        if kept is not None and age < self._max_age_s:
            return kept  # still fresh: the read replaces it for the next requests
        # Shielded: a request that goes away does not cancel the read the others wait for.
        return await asyncio.shield(reading)

    async def _take(self, key: str, read: Callable[[], Awaitable[tuple[int, bytes]]]) -> Snapshot:
        started = self._clock()
        try:
            status, body = await read()
            snapshot = Snapshot(started, status, body)
            if self._enabled and _cost(snapshot) <= self._kept.maxsize:
                self._kept[key] = snapshot
            return snapshot
        finally:
            del self._reading[key]
