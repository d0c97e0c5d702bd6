"""Freshness at an offered rate: from an order's Kafka timestamp to the moment a reader can see it.

Measured from outside the service: in the benchmark's scratch schema a trigger notifies a channel for
each order row, and PostgreSQL delivers a notification when - and only when - the writing transaction
commits; a listener in this process takes the wall-clock time of each. The service feeds its cache
right after that commit, so this is "committed and in the cache" within microseconds. The trigger is
the benchmark's, never part of the project's schema.

Orders are offered at R/s by one producer process (the project's CLI, which lingers up to 5 ms, as a
client would); the first LEAD_IN_SECONDS of it are not measured. The same-run reference is Kafka
alone: the same stream, offered the same way to a topic of its own, read by a bare consumer that
takes each message the moment librdkafka has it - the floor no consumer of this broker can beat.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from dataclasses import dataclass

import psycopg
from confluent_kafka import Consumer, TopicPartition

from bench.common import (
    BROKERS,
    CACHE,
    orders_file,
    produce,
    read_orders,
    start_service,
    wait_committed,
)
from internal.pkg.kafka_offsets import partition_ends

WARMUP_ORDERS = 200  # an unmeasured first round: leaders elected, connections made
# A new idempotent producer sometimes waits ~0.5-0.7 s before its first delivery (its producer id),
# and the message timestamps count that wait; the first seconds are left out.
LEAD_IN_SECONDS = 2
CHANNEL = "bench_visible"
TRIGGER = """
CREATE FUNCTION bench_notify_visible() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_visible', NEW.order_uid);
    RETURN NULL;
END $$;
CREATE TRIGGER bench_visible AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION bench_notify_visible();
"""


@dataclass(frozen=True)
class Freshness:
    rps: int
    orders: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def line(self, reference: Freshness | None = None) -> str:
        text = (
            f"freshness at {self.rps:,}/s:  p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"max {self.max_ms:.1f} ms ({self.orders:,} orders; Kafka timestamp -> committed)"
        )
        if reference is not None:
            text += (
                f"\n  Kafka alone, same offer:  p50 {reference.p50_ms:.1f} ms, p99 "
                f"{reference.p99_ms:.1f} ms, max {reference.max_ms:.1f} ms (timestamp -> in a bare consumer)"
            )
        return text


class VisibilityListener:
    """LISTENs on the channel in a thread of its own; ``seen`` maps order_uid -> epoch ms."""

    def __init__(self, dsn: str) -> None:
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._conn.execute(f"LISTEN {CHANNEL}")
        self._thread = threading.Thread(target=self._run, name="visibility", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for note in self._conn.notifies(timeout=0.2):
                self.seen.setdefault(note.payload, time.time() * 1000)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._conn.close()


def measure(dsn: str, topic: str, rps: int, seconds: int, port: int) -> Freshness:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TRIGGER)
    listener = VisibilityListener(dsn)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    service = start_service(dsn, topic, port, group)
    try:
        # Offer load only once the partitions are assigned: messages sent before would wait for the
        # group to form.
        service.wait_event("partitions_assigned")
        produce(orders_file(WARMUP_ORDERS, seed=5), topic)
        wait_committed(topic, group, WARMUP_ORDERS)
        measured = _offer(topic, rps, seconds)
        wait_committed(topic, group, WARMUP_ORDERS + (LEAD_IN_SECONDS + seconds) * rps)
    finally:
        service.stop()
        listener.close()
    return _figures(rps, measured, listener.seen, _message_times(topic))


def kafka_alone(topic: str, rps: int, seconds: int) -> Freshness:
    """The reference: the same offer, read by a bare consumer; the time a message is in our hands."""
    received: dict[str, float] = {}
    stop = threading.Event()
    consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": f"floor-{uuid.uuid4().hex}"})
    assigned = threading.Event()
    consumer.subscribe([topic], on_assign=lambda _c, _p: assigned.set())

    def read() -> None:
        while not stop.is_set():
            # As the service's loop polls: what is queued, else wait for the first message only.
            for message in consumer.consume(500, 0) or consumer.consume(1, 0.01):
                if message.error() is None:
                    received.setdefault((message.key() or b"").decode(), time.time() * 1000)

    reader = threading.Thread(target=read, name="floor", daemon=True)
    reader.start()
    try:
        if not assigned.wait(60):
            raise TimeoutError("the reference consumer got no partitions in 60 s")
        produce(orders_file(WARMUP_ORDERS, seed=5), topic)
        measured = _offer(topic, rps, seconds)
        total = WARMUP_ORDERS + (LEAD_IN_SECONDS + seconds) * rps
        deadline = time.monotonic() + 120
        while len(received) < total and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join(5)
        consumer.close()
    return _figures(rps, measured, received, _message_times(topic))


def _offer(topic: str, rps: int, seconds: int) -> set[str]:
    """Produce LEAD_IN_SECONDS + seconds of orders at rps; the uids of the measured part."""
    lead_in = list(read_orders(orders_file(LEAD_IN_SECONDS * rps, seed=6)))
    measured = list(read_orders(orders_file(seconds * rps, seed=2)))
    stream = CACHE / f"freshness-stream-{len(lead_in)}-{len(measured)}.jsonl"
    stream.write_bytes(b"\n".join(lead_in + measured) + b"\n")
    produce(stream, topic, rps=rps)
    return {str(json.loads(value)["order_uid"]) for value in measured}


def _figures(rps: int, uids: set[str], seen_ms: dict[str, float], sent_ms: dict[str, float]) -> Freshness:
    delays = sorted(seen_ms[uid] - sent_ms[uid] for uid in uids if uid in seen_ms)
    if len(delays) != len(uids):
        raise RuntimeError(f"{len(uids) - len(delays)} measured orders were never seen")
    return Freshness(
        rps, len(delays), statistics.median(delays), delays[int(len(delays) * 0.99) - 1], delays[-1]
    )


def _message_times(topic: str) -> dict[str, float]:
    """Each message's Kafka timestamp (ms), by key (the order_uid)."""
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
