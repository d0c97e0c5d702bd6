"""An order produced to an idle service is readable at once: nothing waits for a batch to fill.

The service runs with a batch wait bound of 10 s (``consumer.batch_max_wait_ms``). Under the old
policy every message of a quiet topic waited for it; now an idle lane writes what it has, so the order
must be readable through the API long before the bound - the deadline below is a fifth of it, and
generous on purpose: this proves the policy, the figures are docs/performance.md's.
"""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Producer

from tests.conftest import Topics
from tests.orders import order_bytes
from tests.service_proc import ServiceProcess, StartService
from tests.support import wait_until

pytestmark = pytest.mark.e2e

WAIT_BOUND_MS = 10_000
DEADLINE_S = 2.0


def _send(brokers: str, topic: str, value: bytes) -> str:
    uid = str(json.loads(value)["order_uid"])
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 0})
    producer.produce(topic, value, key=uid.encode())
    assert producer.flush(10) == 0, "the broker did not acknowledge the order"
    return uid


def _readable(service: ServiceProcess, uid: str) -> bool:
    return service.get(f"/api/orders/{uid}").status == 200


def test_a_single_order_is_readable_long_before_the_batch_wait_bound(
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    service = start_service({**service_env, "CONSUMER_BATCH_MAX_WAIT_MS": str(WAIT_BOUND_MS)})
    service.wait_ready()
    # A first order brings the group, the fetches and the database connections up; not measured.
    first = _send(kafka_brokers, topics.orders, order_bytes(1))
    wait_until(lambda: _readable(service, first), timeout_s=60, what="the first order readable")

    for index in (2, 3, 4):  # each alone on an idle service, one after the other
        started = time.monotonic()
        uid = _send(kafka_brokers, topics.orders, order_bytes(index))
        wait_until(
            lambda uid=uid: _readable(service, uid),  # type: ignore[misc]
            timeout_s=DEADLINE_S,
            what=f"order {index} readable within {DEADLINE_S} s (the wait bound is {WAIT_BOUND_MS} ms)",
            interval_s=0.005,
        )
        assert time.monotonic() - started < WAIT_BOUND_MS / 1000 / 5
