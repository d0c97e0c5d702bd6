"""The batch writer: many orders in ONE transaction with set-based SQL, idempotently.

Per batch:
1. one INSERT ... SELECT statement - one transaction, committed by itself on the pool's autocommit
   connection - unpacks the orders from a JSON array into orders, deliveries, payments and items;
   ``ON CONFLICT (order_uid) DO NOTHING`` skips uids that are already stored and the statement
   returns the uids it did insert;
2. only if some were skipped (a replay, a conflict), one SELECT fetches their stored content hashes
   (stored orders never change, so reading them after the commit gives the same answer).
Never one statement per row (one transaction per order manages about 820 orders/s here);
docs/performance.md has the figures.

Idempotency, first write wins:
* a uid already stored with the same content hash -> DUPLICATE (nothing written);
* a uid already stored with another hash -> CONFLICT (the stored order stays);
* the same uid twice in one batch -> the first occurrence decides, the later ones are DUPLICATE or
  CONFLICT against it.
Two writers racing on one new uid (only possible around a rebalance) need no special case: the second
INSERT waits for the first transaction, then skips the row and classifies it like any stored uid.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from internal.domain.outcomes import Outcome
from internal.domain.records import OrderRecord
from internal.store.errors import translate
from internal.store.observe import DbObserver

# The orders travel as one JSON array of the exact bytes the API serves (built by the consumer
# anyway); PostgreSQL parses it once into jsonb and unpacks it in C. Measured on 2 cores this is as
# fast as COPY fed row by row from Python, without spending Python's core on per-value formatting.
# Ids come from the sequence in the materialized "batch" CTE, so children need no RETURNING join
# back by uid; a skipped (conflicting) row only leaves a gap in the sequence. The sequence is named
# (BIGSERIAL's, sql/0001), a constant resolved once per plan: pg_get_serial_sequence() ran its catalog
# look-up for every row (docs/performance.md). The content hashes travel as ONE bytea, 32 bytes per
# order in the array's order: a bytea[] parameter cost psycopg about 3 % of the service's GIL time to
# format. date_created is kept twice: the text as sent (the
# reader serves it) and its instant, with fraction digits past microseconds cut first - the
# validator's instant truncates them, and timestamptz would round.
INSERT_BATCH = """
WITH batch AS MATERIALIZED (
    SELECT nextval('orders_id_seq') AS id, doc.o,
           substring(%(hashes)s::bytea FROM doc.n::integer * 32 - 31 FOR 32) AS h
      FROM jsonb_array_elements(%(orders)s::jsonb) WITH ORDINALITY AS doc (o, n)
), new_orders AS (
    INSERT INTO orders (id, order_uid, track_number, entry, locale, internal_signature, customer_id,
                        delivery_service, shardkey, sm_id, date_created, date_created_text, oof_shard,
                        content_hash)
    SELECT id, o->>'order_uid', o->>'track_number', o->>'entry', o->>'locale', o->>'internal_signature',
           o->>'customer_id', o->>'delivery_service', o->>'shardkey', (o->>'sm_id')::bigint,
           regexp_replace(o->>'date_created', '(\\.[0-9]{6})[0-9]+', '\\1')::timestamptz,
           o->>'date_created', o->>'oof_shard', h
      FROM batch
        ON CONFLICT (order_uid) DO NOTHING
    RETURNING id, order_uid
), new_deliveries AS (
    INSERT INTO deliveries (order_id, name, phone, zip, city, address, region, email)
    SELECT id, d->>'name', d->>'phone', d->>'zip', d->>'city', d->>'address', d->>'region', d->>'email'
      FROM new_orders JOIN batch USING (id), LATERAL (SELECT o->'delivery') AS delivery (d)
), new_payments AS (
    INSERT INTO payments (order_id, transaction, request_id, currency, provider, amount, payment_dt, bank,
                          delivery_cost, goods_total, custom_fee)
    SELECT id, p->>'transaction', p->>'request_id', p->>'currency', p->>'provider', (p->>'amount')::bigint,
           (p->>'payment_dt')::bigint, p->>'bank', (p->>'delivery_cost')::bigint,
           (p->>'goods_total')::bigint, (p->>'custom_fee')::bigint
      FROM new_orders JOIN batch USING (id), LATERAL (SELECT o->'payment') AS payment (p)
), new_items AS (
    INSERT INTO items (order_id, position, chrt_id, track_number, price, rid, name, sale, size, total_price,
                       nm_id, brand, status)
    SELECT id, item.n - 1, (i->>'chrt_id')::bigint, i->>'track_number', (i->>'price')::bigint, i->>'rid',
           i->>'name', (i->>'sale')::integer, i->>'size', (i->>'total_price')::bigint, (i->>'nm_id')::bigint,
           i->>'brand', (i->>'status')::integer
      FROM new_orders JOIN batch USING (id), jsonb_array_elements(o->'items') WITH ORDINALITY AS item (i, n)
)
SELECT order_uid FROM new_orders
"""
STORED_HASHES = "SELECT order_uid, content_hash FROM orders WHERE order_uid = ANY(%s)"
HASH_BYTES = 32  # SHA-256


class PostgresOrderWriter:
    """Implements ``internal.consumer.ports.OrderStore`` on a psycopg connection pool."""

    def __init__(self, pool: ConnectionPool, observer: DbObserver | None = None) -> None:
        self._pool = pool
        self._observer = observer or DbObserver()

    def write_batch(self, records: Sequence[OrderRecord]) -> list[Outcome]:
        with self._observer.op("write_batch"):
            try:
                # No explicit transaction: INSERT_BATCH is one statement, atomic on its own, and on
                # the pool's autocommit connections it commits by itself - one round trip instead of
                # BEGIN, INSERT, COMMIT. Each round trip is a wait for the GIL on return as well.
                with self._pool.connection() as conn, conn.cursor() as cur:
                    return self._write(cur, records)
            except psycopg.Error as exc:
                known = translate(exc)
                if known is None:
                    raise  # not known to pass with time: the consumer retries it a bounded number of times
                raise known from exc

    def _write(
        self, cur: psycopg.Cursor[tuple[object, ...]], records: Sequence[OrderRecord]
    ) -> list[Outcome]:
        first: dict[str, OrderRecord] = {}
        for record in records:
            first.setdefault(record.uid, record)  # a later copy in this batch compares to the first
        inserted = insert_new(cur, list(first.values()))
        skipped = [uid for uid in first if uid not in inserted]
        stored = stored_hashes(cur, skipped) if skipped else {}
        results: list[Outcome] = []
        for record in records:
            if first[record.uid] is record and record.uid in inserted:
                results.append(Outcome.STORED)
                continue
            reference = stored.get(record.uid, first[record.uid].content_hash)
            same = reference == record.content_hash
            results.append(Outcome.DUPLICATE if same else Outcome.CONFLICT)
        return results


def insert_new(cur: psycopg.Cursor[tuple[object, ...]], records: Sequence[OrderRecord]) -> set[str]:
    """Insert the orders whose uid is not stored yet (one statement); returns the uids inserted.
    The records must have distinct uids."""
    if any(len(r.content_hash) != HASH_BYTES for r in records):
        raise ValueError(f"every content hash must be {HASH_BYTES} bytes (SHA-256)")
    orders = Jsonb(b"[" + b",".join(r.json for r in records) + b"]", dumps=_already_json)
    cur.execute(INSERT_BATCH, {"orders": orders, "hashes": b"".join(r.content_hash for r in records)})
    return {str(row[0]) for row in cur.fetchall()}


def stored_hashes(cur: psycopg.Cursor[tuple[object, ...]], uids: Sequence[str]) -> dict[str, bytes]:
    """The content hashes of those of ``uids`` that are stored (the writer's conflict check, and the
    DLQ tool's "already stored" check before a replay)."""
    cur.execute(STORED_HASHES, (list(uids),))
    return {str(uid): _as_bytes(digest) for uid, digest in cur.fetchall()}


def _already_json(document: bytes) -> bytes:
    """psycopg's ``dumps`` for a document that is JSON bytes already: sent as is, never re-encoded.
    A module-level function, not a lambda: psycopg caches one dumper class per function."""
    return document


def _as_bytes(value: object) -> bytes:
    assert isinstance(value, bytes | memoryview), f"bytea came back as {type(value).__name__}"
    return bytes(value)
