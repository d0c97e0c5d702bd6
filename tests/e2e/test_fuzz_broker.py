"""10,000 hostile messages through the real broker: the service stays up and every one of them is
dead-lettered with a reason (and none is stored)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.conftest import Topics
from tests.e2e.helpers import headers, read_topic, table_counts, wait_committed_to_end
from tests.service_proc import StartService

pytestmark = pytest.mark.e2e
CANONICAL = (Path(__file__).resolve().parents[1] / "fixtures" / "order-canonical.json").read_bytes().strip()
# Values no field of an order may hold (wrong type, out of range, NUL, a lone surrogate, too long).
ODD: list[object] = ["\x00", "\ud800", "x" * 1000, None, True, 1.5, -1, 2**70, [], {}]


def hostile(rng: random.Random) -> bytes:
    """One message no valid order can come from: random bytes, a cut, or a canonical order with a
    field replaced by something it may not hold."""
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randint(0, 300))
    if kind == 1:
        return CANONICAL[: rng.randrange(len(CANONICAL))]
    doc = json.loads(CANONICAL)
    doc["order_uid"] = f"fuzz{rng.getrandbits(64):x}"
    target = doc if kind == 2 else doc[rng.choice(["delivery", "payment"])]
    key = rng.choice(list(target))
    target[key] = rng.choice(ODD) if key != "items" else []
    return json.dumps(doc).encode()  # ensure_ascii: NUL and lone surrogates travel as \\u escapes


def test_ten_thousand_hostile_messages_are_all_dead_lettered(
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    # Every message here is hostile: the drift guard (on by default) would rightly pause after the
    # first 500; this test is about each message being dead-lettered, so the guard is off.
    service = start_service({**service_env, "CONSUMER_DRIFT_WINDOW": "0"})
    rng = random.Random(2026)
    producer = Producer({"bootstrap.servers": kafka_brokers, "acks": "all", "linger.ms": 20})
    for _ in range(10_000):
        producer.produce(topics.orders, hostile(rng))
        producer.poll(0)
    assert producer.flush(60) == 0
    wait_committed_to_end(
        kafka_brokers, topics.orders, topics.group, 10_000, timeout_s=180, services=[service]
    )

    service.assert_alive()
    assert service.get("/healthz").status == 200
    letters = read_topic(kafka_brokers, topics.dlq)
    origins = {(headers(m)["dlq.original.partition"], headers(m)["dlq.original.offset"]) for m in letters}
    assert len(origins) == 10_000  # every hostile message, each once by its origin
    reasons = Counter(headers(m)["dlq.reason"] for m in letters)
    assert set(reasons) <= {"undecodable", "invalid"}, reasons  # no processing_error, no db_rejected
    assert all(headers(m)["dlq.error"] for m in letters)
    assert table_counts(schema_dsn)["orders"] == 0
    assert service.stop() == 0
