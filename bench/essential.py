"""The essential work of a drain: the work every order needs and nothing more, measured in the same
run as the raw COPY reference and the service.

The calling thread consumes the backlog with the service's consumer settings and runs
``decode_order`` (every rule) and ``OrderRecord.of`` on each message; batches of up to the service's
``batch_max_messages`` go to ``writers`` threads, each with a connection of its own set up like the
service's (``configure_session``), running the writer's statement - as many batches in flight as
writers, the next one decoded meanwhile. Left out, and so the service's own overhead: the cache
feed, metrics and librdkafka's statistics callback, offsets and their commits or transactions,
lanes and per-partition ordering, retries and the connection pool. Both clocks start when the
partitions are assigned, as the service's drain does. docs/performance.md has what it showed.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer

from bench.common import BROKERS, CpuMeter, backends_cpu_s, cpu_spent
from internal.config.settings import ConsumerSettings, PostgresSettings
from internal.consumer.loop import consumer_config
from internal.domain.records import OrderRecord
from internal.domain.validation import ValidationPolicy, decode_order
from internal.store.sessions import configure_session
from internal.store.writer import insert_new

BATCH = ConsumerSettings().batch_max_messages
STATEMENT_TIMEOUT_MS = PostgresSettings().statement_timeout_ms


@dataclass(frozen=True)
class Essential:
    writers: int
    rate: float  # orders/s, from the assignment to the last batch written
    process_cpu_us: float  # this process's CPU per order (all its threads, librdkafka's too)
    postgres_cpu_us: float | None  # its backends' CPU per order (None: not readable here)
    cpu: str  # the machine's steal and idle share

    def line(self, copy: float) -> str:
        backend = "unknown" if self.postgres_cpu_us is None else f"{self.postgres_cpu_us:.1f} us/order"
        return (
            f"essential work alone: {self.rate:,.0f} orders/s  = {self.rate / copy:.2f} x raw COPY"
            f" ({self.writers} connection{'s' if self.writers > 1 else ''})"
            f"\n  process CPU {self.process_cpu_us:.1f} us/order, PostgreSQL CPU {backend} ({self.cpu})"
        )


class _Start:
    """The clocks, started by the first assignment (inside consume(), on the calling thread)."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.at: tuple[float, float, dict[int, float], CpuMeter] | None = None

    def __call__(self, consumer: Any, partitions: list[Any]) -> None:
        consumer.assign(partitions)
        if self.at is None:
            self.at = (time.perf_counter(), time.process_time(), backends_cpu_s(self.backends), CpuMeter())


def drain(dsn: str, topic: str, n: int, writers: int = 2, stall_s: float = 30) -> Essential:
    """Consume, validate, encode and store the ``n`` orders of ``topic`` (all valid and distinct: the
    benchmark's own input; a refused or unstored one raises, and so does no message for ``stall_s``)."""
    connections = [psycopg.connect(dsn, autocommit=True) for _ in range(writers)]
    idle: queue.SimpleQueue[psycopg.Connection[tuple[Any, ...]]] = queue.SimpleQueue()
    for conn in connections:
        configure_session(conn, STATEMENT_TIMEOUT_MS)
        idle.put(conn)
    start = _Start([conn.info.backend_pid for conn in connections])
    group = f"essential-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(consumer_config(BROKERS, group, "bench-essential", 10_000, "earliest"))
    policy = ValidationPolicy()
    try:
        consumer.subscribe([topic], on_assign=start)
        with ThreadPoolExecutor(writers, thread_name_prefix="essential-writer") as pool:
            in_flight: deque[Future[int]] = deque()
            decoded = stored = 0
            last_message = time.perf_counter()
            while decoded < n:
                messages = consumer.consume(min(BATCH, n - decoded), 0.1)
                if not messages:
                    if time.perf_counter() - last_message > stall_s:
                        raise RuntimeError(f"{decoded:,} of {n:,} orders came from {topic}, then none")
                    continue
                last_message, now = time.perf_counter(), datetime.now(UTC)
                records = [OrderRecord.of(decode_order(_value(m), policy, now)) for m in messages]
                decoded += len(records)
                if len(in_flight) == writers:
                    stored += in_flight.popleft().result()
                in_flight.append(pool.submit(_write, idle, records))
            while in_flight:
                stored += in_flight.popleft().result()
        finished = time.perf_counter()
        if start.at is None:  # cannot be: a message came, so a partition was assigned
            raise RuntimeError("messages came without an assignment")
        started, cpu0, pg0, meter = start.at
        cpu = time.process_time() - cpu0
        after = backends_cpu_s(start.backends)
        pg = cpu_spent(pg0, after) / n * 1e6 if len(after) == writers else None
        if stored != n:
            raise RuntimeError(f"{stored:,} of {n:,} orders stored")
        return Essential(writers, n / (finished - started), cpu / n * 1e6, pg, meter.line(n))
    finally:
        consumer.close()
        for conn in connections:
            conn.close()


def _value(message: Any) -> bytes | None:
    error = message.error()
    if error is not None:
        raise RuntimeError(f"kafka: {error.str()}")
    value: bytes | None = message.value()
    return value


def _write(
    idle: queue.SimpleQueue[psycopg.Connection[tuple[Any, ...]]], records: Sequence[OrderRecord]
) -> int:
    """One batch on whichever connection is free (each is used by one thread at a time)."""
    conn = idle.get()
    try:
        with conn.cursor() as cur:
            return len(insert_new(cur, records))
    finally:
        idle.put(conn)
