"""The look-up of orders on the event loop: the API's cache-miss path.

A miss is the API's only database call per request; with psycopg's async pool it runs on uvicorn's
event loop instead of hopping to a worker thread and back. Same JSON as the sync reader.

Concurrent misses share queries. While fewer than ``pool.max_size`` look-up queries run, a miss
starts its own query at once (a lone request waits for nothing). When all of them are busy, the uids
that arrive queue here, and the next free connection reads up to ``max_batch`` of them with ONE
``WHERE order_uid = ANY(...)`` query. Under load each query then serves several requests, so the
per-query costs (psycopg's async round trip, about 130 us of the service's only core, and
PostgreSQL's per-statement work) are paid once per batch rather than per request;
docs/performance.md measures it. A uid asked for twice while queued is read once.

Generic plans: PostgreSQL plans a prepared statement afresh for each execution ("custom plans")
while it estimates that to pay off, and for ``order_uid = ANY($1)`` it always does: planning this
query cost about 0.45 ms of PostgreSQL's CPU per execution, three times its execution (0.16 ms).
The look-up connections run nothing but this query, so they are told to plan it once
(``plan_cache_mode = force_generic_plan``, set by ``sessions.configure_lookup_session``); the generic plan is
the same index scan on ``order_uid``. docs/performance.md measures the difference.

Time budget: a request still queued when its ``timeout_s`` is up leaves with ``TransientError``; a
query runs under the earliest deadline of the requests it serves, so it never outlives their budget,
and its outcome (an error recorded by the metrics first) is what its requests answer with.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import psycopg
from psycopg_pool import AsyncConnectionPool

from internal.domain.errors import TransientError
from internal.store.errors import translate
from internal.store.observe import DbObserver
from internal.store.reader import BY_UIDS, StoredOrder

Answer = asyncio.Future[StoredOrder | None]
# How long a request whose query is past its deadline waits for psycopg to cancel that query and
# report; a bound in case the cancellation itself hangs (a dead network path).
CANCEL_GRACE_S = 1.0


@dataclass(frozen=True, slots=True, eq=False)  # compared by identity
class _Waiter:
    answer: Answer
    deadline: float  # event-loop time by which the request must have its answer


class AsyncOrderReader:
    def __init__(
        self, pool: AsyncConnectionPool, observer: DbObserver | None = None, max_batch: int = 64
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._pool = pool
        self._observer = observer or DbObserver()
        self._max_batch = max_batch
        self._queued: dict[str, list[_Waiter]] = {}  # uid -> the requests waiting for it, oldest first
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()  # strong references: the loop keeps only weak ones

    async def get(self, order_uid: str, timeout_s: float) -> StoredOrder | None:
        """The stored order, or None; ``TransientError`` when the database cannot answer within
        ``timeout_s`` (queueing, waiting for a connection and the query together)."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), loop.time() + timeout_s)
        self._queued.setdefault(order_uid, []).append(waiter)
        self._start_queries()
        try:
            async with asyncio.timeout_at(waiter.deadline):
                return await asyncio.shield(waiter.answer)
        except TimeoutError:
            queued = self._queued.get(order_uid, [])
            if waiter not in queued:
                # Its query runs, under a deadline no later than this request's: its outcome (the
                # order, or the failure the metrics record first) arrives in a moment.
                try:
                    async with asyncio.timeout(CANCEL_GRACE_S):
                        return await waiter.answer
                except TimeoutError:
                    raise TransientError(f"database did not answer within {timeout_s}s") from None
            queued.remove(waiter)
            if not queued:
                del self._queued[order_uid]
            raise TransientError(f"database did not answer within {timeout_s}s") from None

    def _start_queries(self) -> None:
        while self._queued and self._running < self._pool.max_size:
            uids = list(itertools.islice(self._queued, self._max_batch))
            batch = {uid: self._queued.pop(uid) for uid in uids}
            deadline = min(w.deadline for waiters in batch.values() for w in waiters)
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._answer(batch, deadline))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, batch: dict[str, list[_Waiter]], deadline: float) -> None:
        try:
            found = await self._fetch(list(batch), deadline)
        except Exception as exc:  # every request of the batch learns why, each with its own exception
            for waiters in batch.values():
                for w in waiters:
                    w.answer.set_exception(
                        TransientError(str(exc)) if isinstance(exc, TransientError) else exc
                    )
        else:
            for uid, waiters in batch.items():
                for w in waiters:
                    if not w.answer.done():
                        w.answer.set_result(found.get(uid))
        finally:
            self._running -= 1
            self._start_queries()

    async def _fetch(self, uids: list[str], deadline: float) -> dict[str, StoredOrder]:
        with self._observer.op("get_order"):
            budget = max(0.0, deadline - asyncio.get_running_loop().time())
            try:
                # asyncio's own timeout, not anyio's cancel scope: the service runs on asyncio (uvicorn),
                # and this one costs ~10-20 us less per query.
                async with asyncio.timeout_at(deadline):
                    async with self._pool.connection(timeout=budget) as conn:
                        cur = await conn.execute(BY_UIDS, (uids,))
                        rows = await cur.fetchall()
            except TimeoutError as exc:  # the pool discards a connection cancelled mid-query
                raise TransientError(f"database did not answer within {budget:.3g}s") from exc
            except psycopg.Error as exc:
                raise translate(exc) or TransientError(str(exc)) from exc
        return {str(uid): StoredOrder(str(uid), str(doc).encode()) for uid, doc in rows}
