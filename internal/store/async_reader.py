"""The look-up of one order on the event loop: the API's cache-miss path.

A miss is the API's only database call per request; with psycopg's async pool it runs on uvicorn's
event loop instead of hopping to a worker thread and back (docs/performance.md measured the hop and
the thread hand-offs as most of a miss's cost). Same statement and same bytes as the sync reader.
"""

from __future__ import annotations

import asyncio

import psycopg
from psycopg_pool import AsyncConnectionPool

from internal.domain.errors import TransientError
from internal.store.errors import translate
from internal.store.observe import DbObserver
from internal.store.reader import BY_UID, StoredOrder


class AsyncOrderReader:
    def __init__(self, pool: AsyncConnectionPool, observer: DbObserver | None = None) -> None:
        self._pool = pool
        self._observer = observer or DbObserver()

    async def get(self, order_uid: str, timeout_s: float) -> StoredOrder | None:
        """The stored order, or None; ``TransientError`` when the database cannot answer within
        ``timeout_s`` (waiting for a connection and the query together)."""
        with self._observer.op("get_order"):
            try:
                # asyncio's own timeout, not anyio's cancel scope: the service runs on asyncio (uvicorn),
                # and this one costs ~10-20 us less per miss (measured in docs/performance.md).
                async with asyncio.timeout(timeout_s):
                    async with self._pool.connection(timeout=timeout_s) as conn:
                        cur = await conn.execute(BY_UID, (order_uid,))
                        row = await cur.fetchone()
            except TimeoutError as exc:  # the pool discards a connection cancelled mid-query
                raise TransientError(f"database did not answer within {timeout_s}s") from exc
            except psycopg.Error as exc:
                raise translate(exc) or TransientError(str(exc)) from exc
        return StoredOrder(str(row[0]), str(row[1]).encode()) if row else None
