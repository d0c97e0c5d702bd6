"""The home page: the look-up form and the most recent orders, from a snapshot at most 1 s old.

The recent orders come from PostgreSQL, not from this instance's write-through: several instances
share the topic's partitions, and each sees only its own partitions' commits. One query per second
at most serves any number of requests:

* a snapshot younger than ``max_age_s`` (from the start of the query that made it) is served as it
  is: the page is rendered once per snapshot, so such a request costs nothing but the send;
* an older one (or none yet) is replaced: the first request starts ONE refresh, every request that
  comes while it runs waits for the same one (bounded by the request's time budget). So a page
  never lists orders older than ``max_age_s`` plus one query: an order committed before a request
  minus ``max_age_s`` is on it. Serving the stale page while refreshing in the background would
  break that after any idle period, for the one query it saves;
* when the database does not answer, the page still answers 200 with the form and "recent orders
  unavailable", and that page is the snapshot for the next ``max_age_s``: an outage costs one query
  timeout per second, not one per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from internal.domain.errors import ServiceError
from internal.store.reader import OrderSummary

log = structlog.get_logger(component="api")
UNAVAILABLE = "the order store did not answer in time"


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken: float  # monotonic time the query that made it started
    body: bytes


class RecentOrdersPage:
    def __init__(
        self,
        read: Callable[[], Awaitable[Sequence[OrderSummary]]],
        render: Callable[[Sequence[OrderSummary], str | None], bytes],
        max_age_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._render = render
        self._max_age_s = max_age_s
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._refresh: asyncio.Future[Snapshot] | None = None

    async def body(self) -> bytes:
        snapshot = self._snapshot
        if snapshot is not None and self._clock() - snapshot.taken < self._max_age_s:
            return snapshot.body
        if self._refresh is None:
            self._refresh = asyncio.ensure_future(self._take())
        # Shielded: a request that goes away does not cancel the refresh the others wait for.
        return (await asyncio.shield(self._refresh)).body

    async def _take(self) -> Snapshot:
        started = self._clock()
        try:
            try:
                recent, problem = await self._read(), None
            except (ServiceError, TimeoutError) as exc:
                log.warning("recent_orders_unavailable", error=str(exc) or type(exc).__name__)
                recent, problem = [], UNAVAILABLE
            snapshot = Snapshot(started, self._render(recent, problem))
            self._snapshot = snapshot
            return snapshot
        finally:
            self._refresh = None
