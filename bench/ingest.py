"""make bench-ingest: end-to-end ingest rate with a backlog next to the raw COPY rate of the same
orders, and freshness at everyday offered rates.

1. Raw COPY reference: the same orders, already decoded, written with the writer's COPY statements
   in transactions of 500 on one connection - the database's own ceiling for this schema.
2. End to end (a backlog): N orders are in the topic before the service starts; the rate is N
   divided by the time from the partitions being assigned (first poll) to the last offset committed.
3. Freshness at 1,000 and 5,000 orders/s offered (bench/freshness.py): per order, from its Kafka
   timestamp to its transaction's commit, seen from outside; p50, p99 and max after a lead-in.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import datetime
from time import perf_counter

import psycopg

from bench import freshness
from bench.common import (
    machine,
    orders_file,
    produce,
    read_orders,
    say,
    scratch,
    scratch_topic,
    start_service,
    wait_committed,
)
from internal.domain.order import Order
from internal.domain.records import OrderRecord

BATCH = 500
# The scalar fields of each part in the schema's column names (the reference writes them row by row).
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
RESERVE_IDS = "SELECT nextval(pg_get_serial_sequence('orders', 'id')) FROM generate_series(1, %s)"
# Column names are constants of the store, never input.
# date_created_text: the text as sent, next to the instant (sql/0004), as the writer stores it.
COPY_ORDERS = f"COPY orders (id, {', '.join(ORDER_COLUMNS)}, date_created_text, content_hash) FROM STDIN"
COPY_DELIVERIES = f"COPY deliveries (order_id, {', '.join(DELIVERY_COLUMNS)}) FROM STDIN"
COPY_PAYMENTS = f"COPY payments (order_id, {', '.join(PAYMENT_COLUMNS)}) FROM STDIN"
COPY_ITEMS = f"COPY items (order_id, position, {', '.join(ITEM_COLUMNS)}) FROM STDIN"


def copy_rows(cur: psycopg.Cursor[tuple[object, ...]], rows: list[tuple[int, OrderRecord]]) -> None:
    """The reference write: COPY of already decoded orders, row by row, into the four tables."""
    with cur.copy(COPY_ORDERS) as copy:
        for order_id, rec in rows:
            order = rec.order
            copy.write_row(
                (order_id, *(getattr(order, c) for c in ORDER_COLUMNS), order.date_created, rec.content_hash)
            )
    with cur.copy(COPY_DELIVERIES) as copy:
        for order_id, rec in rows:
            copy.write_row((order_id, *(getattr(rec.order.delivery, c) for c in DELIVERY_COLUMNS)))
    with cur.copy(COPY_PAYMENTS) as copy:
        for order_id, rec in rows:
            copy.write_row((order_id, *(getattr(rec.order.payment, c) for c in PAYMENT_COLUMNS)))
    with cur.copy(COPY_ITEMS) as copy:
        for order_id, rec in rows:
            for position, item in enumerate(rec.order.items):
                copy.write_row((order_id, position, *(getattr(item, c) for c in ITEM_COLUMNS)))


def raw_copy_rate(dsn: str, values: list[bytes]) -> float:
    records = [OrderRecord.of(Order.model_validate_json(v)) for v in values]
    with psycopg.connect(dsn) as conn:
        started = perf_counter()
        for start in range(0, len(records), BATCH):
            chunk = records[start : start + BATCH]
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(RESERVE_IDS, (len(chunk),))
                ids = [row[0] for row in cur.fetchall()]
                copy_rows(cur, list(zip(ids, chunk, strict=True)))
        return len(records) / (perf_counter() - started)


def end_to_end_rate(dsn: str, topic: str, n: int, path_n: str, port: int) -> float:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    service = start_service(dsn, topic, port, group)
    try:
        finished = wait_committed(topic, group, n)
        finished_wall = time.time() - (time.monotonic() - finished)
        assigned = service.wait_event("partitions_assigned")
        started_wall = datetime.fromisoformat(str(assigned["timestamp"])).timestamp()
        return n / (finished_wall - started_wall)
    finally:
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=100_000, help="orders for the rate run")
    parser.add_argument(
        "--freshness-rates", default="1000,5000", help="offered rates (orders/s), comma-separated; '' = none"
    )
    parser.add_argument("--freshness-seconds", type=int, default=10, help="measured seconds per rate")
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()

    path = orders_file(args.n)
    values = list(read_orders(path))
    say(f"machine: {machine()}")
    with scratch() as (dsn, _topic):
        copy = raw_copy_rate(dsn, values)
    say(f"raw COPY reference:   {copy:,.0f} orders/s ({len(values):,} orders, batches of {BATCH})")
    with scratch() as (dsn, topic):
        produce(path, topic)
        rate = end_to_end_rate(dsn, topic, len(values), str(path), args.port)
    say(f"end-to-end ingest:    {rate:,.0f} orders/s  = {rate / copy:.2f} x raw COPY")
    for rps in (int(r) for r in args.freshness_rates.split(",") if r.strip()):
        with scratch_topic() as topic:
            floor = freshness.kafka_alone(topic, rps, args.freshness_seconds)
        with scratch() as (dsn, topic):
            say(freshness.measure(dsn, topic, rps, args.freshness_seconds, args.port).line(floor))


if __name__ == "__main__":
    main()
