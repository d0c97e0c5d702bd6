"""The essential work of a drain: the work every order needs and nothing more, measured in the same run as the
raw COPY reference and the service.

One thread consumes the backlog with the service's consumer settings, runs ``decode_order`` (every
rule) and ``OrderRecord.of`` on each message, and hands batches of 500 to one writer thread that
runs the writer's statement on one connection: the next batch is decoded while the last is
written. No cache, no metrics, no offset commits or transactions, no retries, no lanes. What the
service spends beyond this is its own overhead; what this spends beyond the raw COPY is the price
of the path itself (JSON validated in Python, then parsed again by PostgreSQL). docs/performance.md
has what it showed.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from confluent_kafka import Consumer

from bench.common import BROKERS, CpuMeter, backends_cpu_s, cpu_spent
from internal.consumer.loop import consumer_config
from internal.domain.records import OrderRecord
from internal.domain.validation import ValidationPolicy, decode_order
from internal.store.writer import insert_new

BATCH = 500  # the service's default batch_max_messages


@dataclass(frozen=True)
class Essential:
    rate: float  # orders/s, from the first message consumed to the last batch written
    process_cpu_us: float  # this process's CPU per order (all its threads, librdkafka's too)
    postgres_cpu_us: float  # its backend's CPU per order
    cpu: str  # the machine's steal and idle share

    def line(self, copy: float) -> str:
        return (
            f"essential work alone: {self.rate:,.0f} orders/s  = {self.rate / copy:.2f} x raw COPY"
            f"\n  process CPU {self.process_cpu_us:.1f} us/order, PostgreSQL CPU"
            f" {self.postgres_cpu_us:.1f} us/order ({self.cpu})"
        )


def drain(dsn: str, topic: str, n: int, stall_s: float = 30) -> Essential:
    """Consume, validate, encode and store the ``n`` orders of ``topic`` (all valid and distinct: the
    benchmark's own input; a refused or unstored one raises, and so does no message for ``stall_s``)."""
    group = f"essential-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(consumer_config(BROKERS, group, "bench-essential", 10_000, "earliest"))
    policy = ValidationPolicy()
    try:
        consumer.subscribe([topic])
        pending = consumer.consume(BATCH, stall_s)  # the wait for the assignment is not the drain's
        with psycopg.connect(dsn, autocommit=True) as conn, ThreadPoolExecutor(1) as writer:
            backend = [conn.info.backend_pid]
            pg0, cpu0, meter = backends_cpu_s(backend), time.process_time(), CpuMeter()
            started = last_message = time.perf_counter()
            writing: Future[set[str]] | None = None
            decoded = stored = 0
            while decoded < n:
                if len(pending) < BATCH:
                    pending += consumer.consume(min(BATCH - len(pending), n - decoded - len(pending)), 0.1)
                if not pending:
                    if time.perf_counter() - last_message > stall_s:
                        raise RuntimeError(f"{decoded:,} of {n:,} orders came from {topic}, then none")
                    continue
                last_message, now = time.perf_counter(), datetime.now(UTC)
                records = [OrderRecord.of(decode_order(m.value(), policy, now)) for m in pending]
                decoded += len(records)
                pending = []
                if writing is not None:
                    stored += len(writing.result())
                writing = writer.submit(_write, conn, records)
            if writing is not None:
                stored += len(writing.result())
            rate = n / (time.perf_counter() - started)
            cpu = time.process_time() - cpu0
            pg = cpu_spent(pg0, backends_cpu_s(backend))
        if stored != n:
            raise RuntimeError(f"{stored:,} of {n:,} orders stored")
        return Essential(rate, cpu / n * 1e6, pg / n * 1e6, meter.line())
    finally:
        consumer.close()


def _write(conn: psycopg.Connection[tuple[object, ...]], records: list[OrderRecord]) -> set[str]:
    with conn.cursor() as cur:
        return insert_new(cur, records)
