"""make bench-ingest: end-to-end ingest rate next to the raw COPY rate of the same orders, and
message-to-row latency at a fixed offered rate.

1. Raw COPY reference: the same orders, already decoded, written with the writer's COPY statements
   in transactions of 500 on one connection - the database's own ceiling for this schema.
2. End to end: N orders are in the topic before the service starts; the rate is N divided by the
   time from the partitions being assigned (first poll) to the last offset committed.
3. Latency: after an unmeasured round of 200 orders, orders offered at R/s to a running service
   by one producer process, whose first 2 s are a lead-in left out of the figures; per measured
   order, the row's created_at (the writing transaction's start) minus the Kafka message
   timestamp; p50 and p99.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from datetime import datetime
from time import perf_counter

import psycopg
from confluent_kafka import Consumer, TopicPartition

from bench.common import (
    BROKERS,
    CACHE,
    machine,
    orders_file,
    produce,
    read_orders,
    say,
    scratch,
    start_service,
    wait_committed,
)
from internal.domain.order import Order
from internal.domain.records import OrderRecord
from internal.pkg.kafka_offsets import partition_ends

BATCH = 500
WARMUP_ORDERS = 200  # the latency run's unmeasured first round
# The first seconds of the latency run's producer, not measured. A new idempotent producer sometimes
# waits ~0.5-0.7 s before its first delivery (its producer id), and the message timestamps, taken
# when each message is handed to it, count that wait: the p99 of a 10 s run was then 0.5 s whatever
# the service did (with the broker's LogAppendTime instead, the stall at the start was gone).
LEAD_IN_SECONDS = 2
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


def latency(dsn: str, topic: str, n: int, rps: int, port: int) -> tuple[float, float]:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    service = start_service(dsn, topic, port, group)
    try:
        # Offer load only once the partitions are assigned: messages sent before would wait for the
        # group to form, and that wait (the first ~0.5 s of a 10 s run) would be the p99.
        service.wait_event("partitions_assigned")
        # A small unmeasured round first: a topic created a moment ago may still be electing its
        # leaders, and the first connections (producer, broker, database) are made here, not in
        # the measured run.
        produce(orders_file(WARMUP_ORDERS, seed=5), topic)
        wait_committed(topic, group, WARMUP_ORDERS)
        lead_in = list(read_orders(orders_file(LEAD_IN_SECONDS * rps, seed=6)))
        measured = list(read_orders(orders_file(n, seed=2)))
        stream = CACHE / f"latency-stream-{len(lead_in)}-{n}.jsonl"
        stream.write_bytes(b"\n".join(lead_in + measured) + b"\n")
        produce(stream, topic, rps=rps)
        wait_committed(topic, group, WARMUP_ORDERS + len(lead_in) + n)
    finally:
        service.stop()
    uids = {str(json.loads(value)["order_uid"]) for value in measured}
    sent_at = _message_times(topic)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT order_uid, extract(epoch FROM created_at) * 1000 FROM orders").fetchall()
    delays = sorted(float(created) - sent_at[uid] for uid, created in rows if uid in uids)
    return statistics.median(delays), delays[int(len(delays) * 0.99) - 1]


def _message_times(topic: str) -> dict[str, float]:
    ends = partition_ends(BROKERS, topic)
    consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": f"read-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    times: dict[str, float] = {}
    seen = 0
    while seen < sum(ends.values()):
        for message in consumer.consume(1000, 1.0):
            if message.error() is None:
                seen += 1
                times[(message.key() or b"").decode()] = float(message.timestamp()[1])
    consumer.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=100_000, help="orders for the rate run")
    parser.add_argument("--latency-orders", type=int, default=10_000)
    parser.add_argument("--latency-rps", type=int, default=1000)
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
    with scratch() as (dsn, topic):
        p50, p99 = latency(dsn, topic, args.latency_orders, args.latency_rps, args.port)
    say(f"latency at {args.latency_rps}/s:     p50 {p50:.0f} ms, p99 {p99:.0f} ms (message timestamp -> row)")


if __name__ == "__main__":
    main()
