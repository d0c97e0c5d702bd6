"""Reads orders back as the exact JSON bytes the API serves: the latest N (the warm-up) and summaries;
the API reads by uid through ``BY_UIDS`` (async_reader.py).

PostgreSQL assembles each order's JSON itself (``row_to_json`` and ``array_to_json`` are compact and
keep column order; ``json_agg`` would add spaces), in the byte-for-byte form of
``internal.domain.order.order_to_json_bytes``: same key order, no spaces, ``date_created`` as the
text the producer sent (kept in ``date_created_text``, sql/0004). So a cache entry warmed from the
database, one back-filled on a miss and one written through by the consumer are the same bytes with
the same ETag; tests/integration/test_store.py checks the identity, odd characters and every spelling
of date_created included. Python neither parses nor re-encodes: warming 100,000 orders is one
streamed query (docs/performance.md).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from psycopg_pool import ConnectionPool

from internal.domain.errors import TransientError
from internal.store.errors import translate
from internal.store.observe import DbObserver
from internal.store.sessions import set_transaction_statement_timeout

ORDER_JSON = """
SELECT o.order_uid, row_to_json(doc)::text
  FROM orders o
  JOIN deliveries d ON d.order_id = o.id
  JOIN payments p ON p.order_id = o.id
 CROSS JOIN LATERAL (
    SELECT o.order_uid, o.track_number, o.entry,
           (SELECT row_to_json(x)
              FROM (SELECT d.name, d.phone, d.zip, d.city, d.address, d.region, d.email) x) AS delivery,
           (SELECT row_to_json(x)
              FROM (SELECT p.transaction, p.request_id, p.currency, p.provider, p.amount, p.payment_dt,
                           p.bank, p.delivery_cost, p.goods_total, p.custom_fee) x) AS payment,
           (SELECT array_to_json(array_agg(r ORDER BY i.position))
              FROM items i
             CROSS JOIN LATERAL (SELECT i.chrt_id, i.track_number, i.price, i.rid, i.name, i.sale, i.size,
                                        i.total_price, i.nm_id, i.brand, i.status) r
             WHERE i.order_id = o.id) AS items,
           o.locale, o.internal_signature, o.customer_id, o.delivery_service, o.shardkey, o.sm_id,
           o.date_created_text AS date_created, o.oof_shard
 ) AS doc
"""
BY_UIDS = ORDER_JSON + " WHERE o.order_uid = ANY(%s)"  # the API's shared miss queries (async_reader.py)
# Newest first: ids follow insertion order. Two id ranges let two connections build the JSON on two
# cores at once (warm-up), the newer range first.
LATEST = ORDER_JSON + " ORDER BY o.id DESC LIMIT %s"
LATEST_FROM = ORDER_JSON + " WHERE o.id <= %s ORDER BY o.id DESC LIMIT %s"
LATEST_ABOVE = ORDER_JSON + " WHERE o.id > %s ORDER BY o.id DESC"
NTH_NEWEST_ID = "SELECT id FROM orders ORDER BY id DESC OFFSET %s LIMIT 1"
PARALLEL_FROM = 20_000  # below this, one query is as fast
STREAM_ROWS = 500  # rows per chunk of a streamed result (libpq's chunked-rows mode)
CHUNKED_ROWS_LIBPQ = 170000  # libpq 17 brought the chunked-rows mode
# The warm-up's reads run in the reader pool, whose sessions carry a request's budget (2 s by default,
# http.request_timeout_ms). Each is one statement reading up to the whole warm set, so it gets its
# own, for its transaction only: generous, but a read stuck behind a lock still ends, is logged and
# retried.
WARMUP_STATEMENT_TIMEOUT_MS = 600_000

# One line per order for lists (recent orders, search results): no items, no JSON assembly, the time
# formatted here (the page shows it as text). The id is the search's keyset cursor (store/search.py).
SUMMARIES = """
SELECT o.order_uid, o.track_number, o.customer_id,
       to_char(o.date_created AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"') AS date_created,
       p.amount, p.currency,
       (SELECT count(*) FROM items i WHERE i.order_id = o.id) AS item_count, o.id
  FROM orders o JOIN payments p ON p.order_id = o.id
"""
RECENT = SUMMARIES + " ORDER BY o.id DESC LIMIT %(limit)s"


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """An order as stored: its uid and its JSON, ready to send or cache."""

    uid: str
    json: bytes


@dataclass(frozen=True, slots=True)
class OrderSummary:
    order_uid: str
    track_number: str
    customer_id: str
    date_created: str  # "2021-11-26 06:22 UTC"
    amount: int
    currency: str
    item_count: int
    id: int


class PostgresOrderReader:
    def __init__(self, pool: ConnectionPool, observer: DbObserver | None = None) -> None:
        self._pool = pool
        self._observer = observer or DbObserver()

    def latest(self, limit: int) -> Generator[StoredOrder, None, None]:
        """The newest ``limit`` orders, newest first. For large counts the older half is read on a
        second connection while the newer half streams, so PostgreSQL assembles JSON on two cores."""
        with self._observer.op("latest_orders"):
            try:
                if limit < PARALLEL_FROM:
                    yield from self._stream(LATEST, (limit,))
                    return
                with self._pool.connection() as conn:
                    row = conn.execute(NTH_NEWEST_ID, (limit // 2,)).fetchone()
                if row is None:  # fewer orders than half the limit: one query reads them all
                    yield from self._stream(LATEST, (limit,))
                    return
                boundary = int(str(row[0]))
                stop = threading.Event()  # set when the caller stops reading: the older half stops too
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="warmup-read") as helper:
                    older = helper.submit(
                        lambda: list(self._stream(LATEST_FROM, (boundary, limit - limit // 2), stop))
                    )
                    try:
                        yield from self._stream(LATEST_ABOVE, (boundary,))
                        yield from older.result()
                    finally:
                        stop.set()
            except psycopg.Error as exc:
                raise translate(exc) or TransientError(str(exc)) from exc

    def _stream(
        self, statement: str, params: tuple[int, ...], stop: threading.Event | None = None
    ) -> Iterator[StoredOrder]:
        """The rows of ``statement``; ends early (cancelling the query) once ``stop`` is set."""
        # Streamed, not a server-side cursor: PostgreSQL keeps building rows while this side decodes
        # and caches the ones already sent; a cursor's FETCH leaves one side idle while the other
        # works (warm-up of 100k on one connection: 3.9-4.1 s with FETCH 5000, 3.1-3.4 s streamed).
        # Memory stays bounded: chunks of STREAM_ROWS rows (one row at a time with a libpq older
        # than 17, which has no chunked mode). Closing early cancels the query.
        chunk = STREAM_ROWS if psycopg.pq.version() >= CHUNKED_ROWS_LIBPQ else 1
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # One statement reads the whole set, for seconds: the session's budget is a request's.
            set_transaction_statement_timeout(cur, WARMUP_STATEMENT_TIMEOUT_MS)
            # Closed explicitly (cancelling the query) before the transaction ends, however it ends.
            # (psycopg types stream() as an Iterator; it is a generator, whose close() cancels.)
            streamed = cast(
                "Generator[tuple[Any, ...], None, None]", cur.stream(statement, params, size=chunk)
            )
            with closing(streamed) as rows:
                for uid, body in rows:
                    if stop is not None and stop.is_set():
                        return
                    yield StoredOrder(str(uid), str(body).encode())

    def recent(self, limit: int, timeout_s: float | None = None) -> list[OrderSummary]:
        """One line per order for the newest ``limit`` orders, newest first."""
        return self._summaries("recent_orders", RECENT, {"limit": limit}, timeout_s)

    def _summaries(
        self, op: str, statement: str, params: dict[str, Any], timeout_s: float | None
    ) -> list[OrderSummary]:
        with self._observer.op(op):
            try:
                with self._pool.connection(timeout=timeout_s) as conn, conn.cursor() as cur:
                    cur.execute(statement, params)
                    return [OrderSummary(*row) for row in cur.fetchall()]
            except psycopg.Error as exc:
                raise translate(exc) or TransientError(str(exc)) from exc
