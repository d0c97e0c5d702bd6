"""Freshness at an offered rate: from an order's Kafka timestamp to the moment a reader can see it.

The service's figure is its own histogram, consumer_order_freshness_seconds (taken in the worker
right after the commit and the cache feed), read from /metrics before and after the measured part:
the quantiles are interpolated within its buckets, and "max" is the upper bound of the highest bucket
reached. The targets (10, 50, 100 ms) are bucket bounds, so the share of orders within each is exact.
(A first version read commit times from outside, with a NOTIFY trigger: PostgreSQL serializes the
commits of transactions that notify, which made the service slower than the figure it measured.)

Orders are offered at R/s by one producer process (the project's CLI, which lingers up to 5 ms, as a
client would); the first LEAD_IN_SECONDS of it are not measured. The same-run reference is Kafka
alone: the same stream, offered the same way to a topic of its own, read by a bare consumer that
takes each message the moment librdkafka has it - the floor no consumer of this broker can beat.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, replace

from confluent_kafka import Consumer, TopicPartition

from bench.common import (
    BROKERS,
    CACHE,
    CpuMeter,
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
HISTOGRAM = "consumer_order_freshness_seconds"
WITHIN_MS = (10, 50, 100)  # the targets, bounds of the histogram's buckets
Buckets = dict[float, float]  # le (seconds) -> cumulative count


@dataclass(frozen=True)
class Freshness:
    rps: int
    orders: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    within: tuple[tuple[int, float], ...] = ()  # (ms, share of orders visible within it)
    cpu: str = ""  # the machine's CPU steal and idle share in the measured part

    def line(self, reference: Freshness | None = None) -> str:
        shares = ", ".join(f"{share:.1%} within {ms} ms" for ms, share in self.within)
        text = (
            f"freshness at {self.rps:,}/s:  p50 ~{self.p50_ms:.1f} ms, p99 ~{self.p99_ms:.1f} ms, "
            f"max <= {self.max_ms:.0f} ms; {shares} ({self.orders:,} orders, the service's histogram)"
            f"\n  ({self.cpu})"
        )
        if reference is not None:
            text += (
                f"\n  Kafka alone, same offer:  p50 {reference.p50_ms:.1f} ms, p99 "
                f"{reference.p99_ms:.1f} ms, max {reference.max_ms:.1f} ms (timestamp -> in a bare consumer)"
                f"\n  ({reference.cpu})"
            )
        return text


def measure(dsn: str, topic: str, rps: int, seconds: int, port: int) -> Freshness:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    service = start_service(dsn, topic, port, group)
    try:
        # Offer load only once the partitions are assigned: messages sent before would wait for the
        # group to form.
        service.wait_event("partitions_assigned")
        produce(orders_file(WARMUP_ORDERS, seed=5), topic)
        wait_committed(topic, group, WARMUP_ORDERS)
        offer = threading.Thread(target=_offer, args=(topic, rps, seconds), name="offer")
        offer.start()
        # The measured part starts when the lead-in is committed (a few measured orders committed
        # before that are left out, a slightly pessimistic cut).
        wait_committed(topic, group, WARMUP_ORDERS + LEAD_IN_SECONDS * rps, poll_s=0.01)
        before, meter = _scrape(port), CpuMeter()
        offer.join()
        wait_committed(topic, group, WARMUP_ORDERS + (LEAD_IN_SECONDS + seconds) * rps)
        after, cpu = _scrape(port), meter.line()
    finally:
        service.stop()
    counts = {le: after[le] - before.get(le, 0.0) for le in after}
    return replace(_from_buckets(rps, counts), cpu=cpu)


def _scrape(port: int) -> Buckets:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    pattern = re.compile(HISTOGRAM + r'_bucket\{le="([^"]+)"\} (\S+)')
    return {float(m.group(1)): float(m.group(2)) for m in pattern.finditer(text)}


def _from_buckets(rps: int, counts: Buckets) -> Freshness:
    bounds = sorted(counts)
    total = counts[math.inf]
    if total <= 0:
        raise RuntimeError("the service observed no stored order in the measured part")

    def quantile(q: float) -> float:
        rank, lower, below = q * total, 0.0, 0.0
        for le in bounds:
            if counts[le] >= rank:
                if le == math.inf:
                    return lower * 1000
                return (lower + (le - lower) * (rank - below) / max(counts[le] - below, 1e-9)) * 1000
            lower, below = le, counts[le]
        return lower * 1000

    highest = next(le for le in bounds if counts[le] >= total)
    within = tuple((ms, counts[ms / 1000] / total) for ms in WITHIN_MS if ms / 1000 in counts)
    return Freshness(rps, int(total), quantile(0.5), quantile(0.99), highest * 1000, within)


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
        meter = CpuMeter()
        measured = _offer(topic, rps, seconds)
        cpu = meter.line()
        total = WARMUP_ORDERS + (LEAD_IN_SECONDS + seconds) * rps
        deadline = time.monotonic() + 120
        while len(received) < total and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join(5)
        consumer.close()
    return replace(_figures(rps, measured, received, _message_times(topic)), cpu=cpu)


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
