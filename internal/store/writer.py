"""The batch writer: many orders in ONE transaction with set-based SQL (COPY), idempotently.

Per batch: one SELECT finds which uids exist already (and their content hashes), one statement reserves
ids for the new orders, then four COPYs fill orders, deliveries, payments and items, then COMMIT.
Measured on a 2-core machine, one transaction per order manages about 820 orders/s; COPY batches
about 14k (docs/performance.md).

Idempotency, first write wins:
* a uid already stored with the same content hash -> DUPLICATE (nothing written);
* a uid already stored with another hash -> CONFLICT (the stored order stays);
* the same uid twice in one batch -> the first occurrence decides, the later ones are DUPLICATE or
  CONFLICT against it.
Two writers racing on the same new uid (only possible around a rebalance) make one COPY fail on the
unique constraint; the batch is then classified again and retried once more.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import errors as pg
from psycopg_pool import ConnectionPool

from internal.domain.errors import TransientError
from internal.domain.records import OrderRecord, WriteResult
from internal.store.errors import translate

FIND_EXISTING = "SELECT order_uid, content_hash FROM orders WHERE order_uid = ANY(%s)"
RESERVE_IDS = "SELECT nextval(pg_get_serial_sequence('orders', 'id')) FROM generate_series(1, %s)"
ORDER_COLUMNS = (
    "order_uid", "track_number", "entry", "locale", "internal_signature", "customer_id",
    "delivery_service", "shardkey", "sm_id", "date_created", "oof_shard",
)  # fmt: skip
DELIVERY_COLUMNS = ("name", "phone", "zip", "city", "address", "region", "email")
PAYMENT_COLUMNS = (
    "transaction", "request_id", "currency", "provider", "amount", "payment_dt", "bank",
    "delivery_cost", "goods_total", "custom_fee",
)  # fmt: skip
ITEM_COLUMNS = (
    "chrt_id", "track_number", "price", "rid", "name", "sale", "size", "total_price", "nm_id", "brand",
    "status",
)  # fmt: skip
# Column names are constants of this module, never input: joining them builds no SQL from data.
COPY_ORDERS = f"COPY orders (id, {', '.join(ORDER_COLUMNS)}, content_hash) FROM STDIN"
COPY_DELIVERIES = f"COPY deliveries (order_id, {', '.join(DELIVERY_COLUMNS)}) FROM STDIN"
COPY_PAYMENTS = f"COPY payments (order_id, {', '.join(PAYMENT_COLUMNS)}) FROM STDIN"
COPY_ITEMS = f"COPY items (order_id, position, {', '.join(ITEM_COLUMNS)}) FROM STDIN"
UID_CONSTRAINT = "orders_order_uid_key"
RACE_RETRIES = 3


class PostgresOrderWriter:
    """Implements ``internal.consumer.ports.OrderStore`` on a psycopg connection pool."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def write_batch(self, records: Sequence[OrderRecord]) -> list[WriteResult]:
        for attempt in range(1, RACE_RETRIES + 1):
            try:
                return self._write_once(records)
            except pg.UniqueViolation as exc:
                if exc.diag.constraint_name != UID_CONSTRAINT or attempt == RACE_RETRIES:
                    raise _translated(exc) from exc
            except psycopg.Error as exc:
                raise _translated(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _write_once(self, records: Sequence[OrderRecord]) -> list[WriteResult]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(FIND_EXISTING, ([r.uid for r in records],))
            known: dict[str, bytes] = {uid: bytes(digest) for uid, digest in cur.fetchall()}
            results: list[WriteResult] = []
            new: list[OrderRecord] = []
            for record in records:
                stored_hash = known.get(record.uid)
                if stored_hash is None:
                    known[record.uid] = record.content_hash  # later copies in this batch compare to it
                    new.append(record)
                    results.append(WriteResult.STORED)
                elif stored_hash == record.content_hash:
                    results.append(WriteResult.DUPLICATE)
                else:
                    results.append(WriteResult.CONFLICT)
            if new:
                cur.execute(RESERVE_IDS, (len(new),))
                ids = [row[0] for row in cur.fetchall()]
                _copy_new(cur, list(zip(ids, new, strict=True)))
            return results


def _copy_new(cur: psycopg.Cursor[tuple[object, ...]], rows: list[tuple[int, OrderRecord]]) -> None:
    with cur.copy(COPY_ORDERS) as copy:
        for order_id, rec in rows:
            copy.write_row((order_id, *_values(rec.order, ORDER_COLUMNS), rec.content_hash))
    with cur.copy(COPY_DELIVERIES) as copy:
        for order_id, rec in rows:
            copy.write_row((order_id, *_values(rec.order.delivery, DELIVERY_COLUMNS)))
    with cur.copy(COPY_PAYMENTS) as copy:
        for order_id, rec in rows:
            copy.write_row((order_id, *_values(rec.order.payment, PAYMENT_COLUMNS)))
    with cur.copy(COPY_ITEMS) as copy:
        for order_id, rec in rows:
            for position, item in enumerate(rec.order.items):
                copy.write_row((order_id, position, *_values(item, ITEM_COLUMNS)))


def _values(model: object, columns: tuple[str, ...]) -> tuple[object, ...]:
    return tuple(getattr(model, column) for column in columns)


def _translated(exc: psycopg.Error) -> Exception:
    return translate(exc) or TransientError(str(exc))
