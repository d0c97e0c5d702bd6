"""make bench-ingest: end-to-end ingest rate with a backlog next to the raw COPY rate of the same
orders, and freshness at everyday offered rates.

1. Raw COPY reference: the same orders, already decoded, written with the writer's COPY statements
   in transactions of 500 on one connection - the database's own ceiling for this schema.
2. End to end (a backlog): N orders are in the topic before the service starts; the rate is N
   divided by the time from the partitions being assigned (first poll) to the last offset committed,
   with the service process's CPU per order (/proc/<pid>/stat) and its PostgreSQL backends' over
   the same window (found by the application name; the server is shared), and the host's steal.
   BENCH_SERVICE_ROOT=<checkout> measures another tree's service with this benchmark (alternated
   runs against a base commit).
3. The essential work (bench/essential.py): the same backlog consumed, validated, encoded and stored
   with nothing else (no cache, metrics, commits, lanes, retries): where between the service and
   the raw COPY the gap lies.
4. Freshness at 1,000 and 5,000 orders/s offered (bench/freshness.py): per order, from its Kafka
   timestamp to its transaction's commit, seen from outside; p50, p99 and max after a lead-in.
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from time import perf_counter

import psycopg

from bench import essential, freshness
from bench.common import (
    SERVICE_ROOT,
    CpuMeter,
    backend_pids,
    backends_cpu_s,
    cpu_spent,
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
RESERVE_IDS = "SELECT nextval('orders_id_seq') FROM generate_series(1, %s)"  # as the writer takes them
# Column names are constants of the store, never input.
# date_created_text: the text as sent, next to the instant (sql/0004), as the writer stores it.
COPY_ORDERS = f"COPY orders (id, {', '.join(ORDER_COLUMNS)}, date_created_text, content_hash) FROM STDIN"
COPY_DELIVERIES = f"COPY deliveries (order_id, {', '.join(DELIVERY_COLUMNS)}) FROM STDIN"
COPY_PAYMENTS = f"COPY payments (order_id, {', '.join(PAYMENT_COLUMNS)}) FROM STDIN"
COPY_ITEMS = f"COPY items (order_id, position, {', '.join(ITEM_COLUMNS)}) FROM STDIN"


Decoded = tuple[Order, OrderRecord]  # the reference keeps the models the service lets go


def copy_rows(cur: psycopg.Cursor[tuple[object, ...]], rows: list[tuple[int, Decoded]]) -> None:
    """The reference write: COPY of already decoded orders, row by row, into the four tables."""
    with cur.copy(COPY_ORDERS) as copy:
        for order_id, (order, rec) in rows:
            copy.write_row(
                (order_id, *(getattr(order, c) for c in ORDER_COLUMNS), order.date_created, rec.content_hash)
            )
    with cur.copy(COPY_DELIVERIES) as copy:
        for order_id, (order, _) in rows:
            copy.write_row((order_id, *(getattr(order.delivery, c) for c in DELIVERY_COLUMNS)))
    with cur.copy(COPY_PAYMENTS) as copy:
        for order_id, (order, _) in rows:
            copy.write_row((order_id, *(getattr(order.payment, c) for c in PAYMENT_COLUMNS)))
    with cur.copy(COPY_ITEMS) as copy:
        for order_id, (order, _) in rows:
            for position, item in enumerate(order.items):
                copy.write_row((order_id, position, *(getattr(item, c) for c in ITEM_COLUMNS)))


@dataclass(frozen=True)
class RawCopy:
    rate: float  # orders/s
    postgres_cpu_us: float  # the CPU of the COPY's backend per order
    cpu: str  # the machine's steal and idle share over the COPY

    def line(self, orders: int) -> str:
        return (
            f"raw COPY reference:   {self.rate:,.0f} orders/s ({orders:,} orders, batches of {BATCH})"
            f"\n  PostgreSQL CPU {self.postgres_cpu_us:.1f} us/order ({self.cpu})"
        )


def raw_copy(dsn: str, values: list[bytes]) -> RawCopy:
    orders = [Order.model_validate_json(v) for v in values]
    records = [(order, OrderRecord.of(order)) for order in orders]
    with psycopg.connect(dsn) as conn:
        backend = [conn.info.backend_pid]
        pg0, meter = backends_cpu_s(backend), CpuMeter()
        started = perf_counter()
        for start in range(0, len(records), BATCH):
            chunk = records[start : start + BATCH]
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(RESERVE_IDS, (len(chunk),))
                ids = [row[0] for row in cur.fetchall()]
                copy_rows(cur, list(zip(ids, chunk, strict=True)))
        rate = len(records) / (perf_counter() - started)
        spent = cpu_spent(pg0, backends_cpu_s(backend))
        return RawCopy(rate, spent / len(records) * 1e6, meter.line())


@dataclass(frozen=True)
class Drain:
    rate: float  # orders/s, from the partitions being assigned to the last offset committed
    service_cpu_us: float  # the service process's CPU per order over the drain
    postgres_cpu_us: float  # the CPU of the service's backends per order over the drain
    seconds: float
    cpu: str  # the machine's steal and idle share over the drain

    def line(self, copy: float) -> str:
        return (
            f"end-to-end ingest:    {self.rate:,.0f} orders/s  = {self.rate / copy:.2f} x raw COPY"
            f"\n  service CPU {self.service_cpu_us:.1f} us/order, PostgreSQL CPU {self.postgres_cpu_us:.1f}"
            f" us/order over {self.seconds:.1f} s ({self.cpu})"
        )


def end_to_end(dsn: str, topic: str, n: int, port: int) -> Drain:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    service = start_service(dsn, topic, port, group)
    try:
        # CPU from the assignment on: the start (imports, migrations check, connections) is not
        # the drain's. Read within one poll (10 ms) of the log line; the drain takes seconds.
        service.wait_event("partitions_assigned", poll_s=0.005)
        backends = backend_pids(group)  # the writer pool's connections, open since the start
        cpu0, pg0, meter = service.cpu_s(), backends_cpu_s(backends), CpuMeter()
        finished = wait_committed(topic, group, n, poll_s=0.02)
        # A connection the pool opened during the drain counts from its start.
        cpu1, pg1, cpu = service.cpu_s(), backends_cpu_s(backends + backend_pids(group)), meter.line(n)
        finished_wall = time.time() - (time.monotonic() - finished)
        assigned = service.wait_event("partitions_assigned")
        started_wall = datetime.fromisoformat(str(assigned["timestamp"])).timestamp()
        seconds = finished_wall - started_wall
        return Drain(n / seconds, (cpu1 - cpu0) / n * 1e6, cpu_spent(pg0, pg1) / n * 1e6, seconds, cpu)
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
    parser.add_argument("--rounds", type=int, default=1, help="raw COPY + drain pairs, one after the other")
    parser.add_argument(
        "--essential",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after each drain, the essential work alone on the same backlog (bench/essential.py)",
    )
    parser.add_argument(
        "--essential-writers",
        type=int,
        default=2,
        help="connections (batches in flight) of the essential work",
    )
    args = parser.parse_args()

    path = orders_file(args.n)
    values = list(read_orders(path))
    say(f"machine: {machine()}")
    say(f"service: {SERVICE_ROOT}")
    for _ in range(args.rounds):
        with scratch() as (dsn, _topic):
            copy = raw_copy(dsn, values)
        say(copy.line(len(values)))
        with scratch() as (dsn, topic):
            produce(path, topic)
            say(end_to_end(dsn, topic, len(values), args.port).line(copy.rate))
        if args.essential:
            with scratch() as (dsn, topic):
                produce(path, topic)
                say(essential.drain(dsn, topic, len(values), args.essential_writers).line(copy.rate))
    for rps in (int(r) for r in args.freshness_rates.split(",") if r.strip()):
        with scratch_topic() as topic:
            floor = freshness.kafka_alone(topic, rps, args.freshness_seconds)
        with scratch() as (dsn, topic):
            say(freshness.measure(dsn, topic, rps, args.freshness_seconds, args.port).line(floor))


if __name__ == "__main__":
    main()
