"""Reads orders back in the message's shape: by uid, and the latest N (cache warm-up, recent list)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from internal.domain.errors import TransientError
from internal.domain.order import Order
from internal.domain.records import OrderRecord
from internal.store.errors import translate

# The scalar fields of each part, in the message's key order.
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

SELECT_ORDERS = """
SELECT o.order_uid, o.track_number, o.entry, o.locale, o.internal_signature, o.customer_id,
       o.delivery_service, o.shardkey, o.sm_id, o.date_created, o.oof_shard,
       d.name AS d_name, d.phone AS d_phone, d.zip AS d_zip, d.city AS d_city, d.address AS d_address,
       d.region AS d_region, d.email AS d_email,
       p.transaction AS p_transaction, p.request_id AS p_request_id, p.currency AS p_currency,
       p.provider AS p_provider, p.amount AS p_amount, p.payment_dt AS p_payment_dt, p.bank AS p_bank,
       p.delivery_cost AS p_delivery_cost, p.goods_total AS p_goods_total, p.custom_fee AS p_custom_fee,
       (SELECT json_agg(json_build_object(
                 'chrt_id', i.chrt_id, 'track_number', i.track_number, 'price', i.price, 'rid', i.rid,
                 'name', i.name, 'sale', i.sale, 'size', i.size, 'total_price', i.total_price,
                 'nm_id', i.nm_id, 'brand', i.brand, 'status', i.status) ORDER BY i.position)
          FROM items i WHERE i.order_id = o.id) AS items
  FROM orders o
  JOIN deliveries d ON d.order_id = o.id
  JOIN payments p ON p.order_id = o.id
"""
BY_UID = SELECT_ORDERS + " WHERE o.order_uid = %s"
LATEST = SELECT_ORDERS + " ORDER BY o.id DESC LIMIT %s"  # newest first, by the primary key


class PostgresOrderReader:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def get(self, order_uid: str, timeout_s: float | None = None) -> OrderRecord | None:
        """The stored order, or None when no order has this uid. Raises TransientError when the
        database cannot answer (within ``timeout_s`` for getting a connection)."""
        try:
            with self._pool.connection(timeout=timeout_s) as conn, conn.cursor(row_factory=dict_row) as cur:
                cur.execute(BY_UID, (order_uid,))
                row = cur.fetchone()
        except psycopg.Error as exc:
            raise translate(exc) or TransientError(str(exc)) from exc
        return _record(row) if row else None

    def latest(self, limit: int) -> Iterator[OrderRecord]:
        """The newest ``limit`` orders, newest first, streamed from a server-side cursor."""
        try:
            with (
                self._pool.connection() as conn,
                conn.transaction(),
                conn.cursor(name="latest_orders", row_factory=dict_row) as cur,
            ):
                cur.execute(LATEST, (limit,))
                for row in cur:
                    yield _record(row)
        except psycopg.Error as exc:
            raise translate(exc) or TransientError(str(exc)) from exc


def _record(row: dict[str, Any]) -> OrderRecord:
    document: dict[str, Any] = {column: row[column] for column in ORDER_COLUMNS}
    document["delivery"] = {column: row[f"d_{column}"] for column in DELIVERY_COLUMNS}
    document["payment"] = {column: row[f"p_{column}"] for column in PAYMENT_COLUMNS}
    document["items"] = row["items"]
    return OrderRecord.of(Order.model_validate(document))
