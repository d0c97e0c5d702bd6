"""How cost grows: ingest rate into an empty database versus one already holding 1M orders, ingest
with one versus two instances, and warm-up time and memory for 10k and 100k cached orders.

Each figure is printed next to its same-run reference (the empty database, the single instance).
The 1M comparison alternates runs (empty, full, empty, full), each with orders of its own, because
one pair of runs on this machine differs by more than the 10 % it is meant to show.

``--scale-out-rounds N`` runs only the scale-out comparison, alternated (one instance, two, one,
two ...), each run with orders of its own; in a two-instance run the second instance joins while the
first drains (a rebalance under load), and every run counts the stored rows: nothing may be lost.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import datetime
from time import perf_counter

import psycopg
from psycopg_pool import ConnectionPool

from bench.common import (
    CpuMeter,
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
from internal.cache.lru import OrderCache
from internal.config.settings import CacheSettings
from internal.domain.order import Order
from internal.domain.records import OrderRecord
from internal.store.reader import PostgresOrderReader
from internal.store.writer import insert_new

PREFILL_BATCH = 2000


def prefill(dsn: str, n: int) -> float:
    """Insert ``n`` orders straight through the writer's statement; returns the seconds it took."""
    started = perf_counter()
    with ConnectionPool(dsn, min_size=1, max_size=1) as pool, pool.connection() as conn:
        batch: list[OrderRecord] = []
        for value in read_orders(orders_file(n, seed=3)):
            batch.append(OrderRecord.of(Order.model_validate_json(value)))
            if len(batch) == PREFILL_BATCH:
                with conn.transaction(), conn.cursor() as cur:
                    insert_new(cur, batch)
                batch = []
        if batch:
            with conn.transaction(), conn.cursor() as cur:
                insert_new(cur, batch)
        conn.execute("ANALYZE")
    return perf_counter() - started


def ingest_rate(dsn: str, topic: str, n: int, instances: int, port: int, *, seed: int = 1) -> float:
    """Orders/s from the first partition assignment to the last offset committed."""
    produce(orders_file(n, seed=seed), topic)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    services = [start_service(dsn, topic, port + i, group) for i in range(instances)]
    try:
        finished = wait_committed(topic, group, n)
        finished_wall = time.time() - (time.monotonic() - finished)
        assigned = [
            datetime.fromisoformat(str(e["timestamp"])).timestamp()
            for s in services
            for e in s.events()
            if e.get("event") == "partitions_assigned"
        ]
        return n / (finished_wall - min(assigned))
    finally:
        for service in services:
            service.stop()


def scale_out_run(dsn: str, topic: str, n: int, instances: int, *, port: int, seed: int) -> tuple[float, int]:
    """Orders/s of ``instances`` services draining ``n`` orders, and the orders stored at the end.
    The second and later instances join once the first has its partitions: a rebalance under load."""
    produce(orders_file(n, seed=seed), topic)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    services = [start_service(dsn, topic, port, group)]
    try:
        services[0].wait_event("partitions_assigned")
        services += [start_service(dsn, topic, port + i, group) for i in range(1, instances)]
        finished = wait_committed(topic, group, n)
        finished_wall = time.time() - (time.monotonic() - finished)
        first = services[0].wait_event("partitions_assigned")
        started_wall = datetime.fromisoformat(str(first["timestamp"])).timestamp()
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM orders").fetchone()
        return n / (finished_wall - started_wall), int(row[0]) if row else 0
    finally:
        for service in services:
            service.stop()


def scale_out(n: int, rounds: int, port: int) -> None:
    ones: list[float] = []
    twos: list[float] = []
    for round_no in range(rounds):
        for instances, rates in ((1, ones), (2, twos)):
            meter = CpuMeter()
            with scratch() as (dsn, topic):
                rate, rows = scale_out_run(
                    dsn, topic, n, instances, port=port, seed=20 + 2 * round_no + instances
                )
            rates.append(rate)
            lost = "nothing lost" if rows == n else f"{n - rows:,} LOST"
            say(
                f"  round {round_no + 1}, {instances} instance(s): {rate:,.0f} orders/s, {rows:,} of {n:,} "
                f"stored ({lost}; {meter.line()})"
            )
    one, two = statistics.median(ones), statistics.median(twos)
    say(f"ingest with 2 instances: {two:,.0f} orders/s = {two / one:.2f} x one ({one:,.0f}), medians")


def warm(dsn: str, count: int) -> tuple[float, float]:
    """Seconds to warm ``count`` orders and bytes per cached order."""
    defaults = CacheSettings()
    with ConnectionPool(dsn, min_size=1, max_size=2) as pool:
        reader = PostgresOrderReader(pool)
        sum(1 for _ in reader.latest(count))  # warms PostgreSQL's buffers first
        cache = OrderCache(max(defaults.max_entries, count), defaults.max_bytes, defaults.max_entry_bytes)
        started = perf_counter()
        cache.warm(reader.latest(count))
        seconds = perf_counter() - started
        stats = cache.stats()
    return seconds, stats.bytes / max(1, stats.entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=100_000, help="orders per ingest run")
    parser.add_argument(
        "--stored", type=int, default=1_000_000, help="orders already stored for the second run"
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternated empty/full ingest runs")
    parser.add_argument("--port", type=int, default=18100)
    parser.add_argument(
        "--scale-out-rounds", type=int, default=0, help="only the alternated 1 vs 2 instances comparison"
    )
    args = parser.parse_args()
    say(f"machine: {machine()}")
    if args.scale_out_rounds:
        scale_out(args.n, args.scale_out_rounds, args.port)
        return
    with scratch() as (dsn, topic):
        empty = ingest_rate(dsn, topic, args.n, 1, args.port)
        say(f"ingest into an empty database:          {empty:,.0f} orders/s (reference)")
        warm_10k = warm(dsn, 10_000)
        warm_100k = warm(dsn, min(100_000, args.n))
    with scratch() as (dsn, topic):
        two = ingest_rate(dsn, topic, args.n, 2, args.port)
        say(
            f"ingest with 2 instances:                 {two:,.0f} orders/s = {two / empty:.2f} x one instance"
        )
    with scratch() as (full_dsn, _topic):
        seconds = prefill(full_dsn, args.stored)
        say(f"  ({args.stored:,} orders prefilled in {seconds:.0f} s)")
        empties: list[float] = []
        fulls: list[float] = []
        for round_no in range(args.rounds):
            seed = 10 + round_no  # new orders every run: each one inserts, none is a duplicate
            with scratch() as (dsn, topic):
                empties.append(ingest_rate(dsn, topic, args.n, 1, args.port, seed=seed))
            with scratch_topic() as topic:
                fulls.append(ingest_rate(full_dsn, topic, args.n, 1, args.port, seed=seed + 100))
            empty_rate, full_rate = empties[-1], fulls[-1]
            stored = f"{args.stored:,}+ stored"
            say(f"  round {round_no + 1}: empty {empty_rate:,.0f}, {stored} {full_rate:,.0f} orders/s")
        full, reference = statistics.mean(fulls), statistics.mean(empties)
        say(
            f"ingest with {args.stored:,}+ already stored: {full:,.0f} orders/s = {full / reference:.2f} x "
            f"empty ({reference:,.0f}), means of {args.rounds} alternated rounds"
        )
    say(f"warm-up 10,000:  {warm_10k[0]:.2f} s, {warm_10k[1]:,.0f} bytes per cached order")
    say(f"warm-up 100,000: {warm_100k[0]:.2f} s, {warm_100k[1]:,.0f} bytes per cached order")


if __name__ == "__main__":
    main()
