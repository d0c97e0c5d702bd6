"""Transactions end to end, on the real broker and database: an upstream producer that writes the
orders topic in transactions (committed messages stored, aborted ones never, and the markers after
them hold back no commit, show no lag and make no partition stuck); and the switch off
(``KAFKA_TRANSACTIONS=false``): the at-least-once mode through the same commit path."""

from __future__ import annotations

import re
import time

import pytest
from confluent_kafka import Producer

from internal.pkg.kafka_offsets import CommittedOffsets, partition_ends
from tests.conftest import Topics
from tests.e2e.helpers import headers, log_events, read_topic, stored_orders
from tests.orders import order_bytes, order_doc
from tests.service_proc import StartService
from tests.support import wait_until

pytestmark = pytest.mark.e2e

SEED = 94
STUCK_AFTER_S = 3


def lag_of(metrics: str, topic: str, partition: int) -> float | None:
    found = re.search(rf'consumer_lag{{partition="{partition}",topic="{topic}"}} ([0-9.e+]+)', metrics)
    return float(found.group(1)) if found else None


def test_a_transactional_upstream_producer_committed_stored_aborted_never_offsets_settle(
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    env = {**service_env, "CONSUMER_STUCK_AFTER_S": str(STUCK_AFTER_S)}
    service = start_service(env)
    producer = Producer({"bootstrap.servers": kafka_brokers, "transactional.id": f"{topics.group}-upstream"})
    producer.init_transactions(30)
    committed: set[str] = set()
    aborted: set[str] = set()
    for round_, commit in enumerate((True, False, True, False)):
        producer.begin_transaction()
        for i in range(round_ * 10, round_ * 10 + 10):
            producer.produce(topics.orders, order_bytes(i, seed=SEED), partition=0)
            (committed if commit else aborted).add(order_doc(i, seed=SEED)["order_uid"])
        producer.produce(topics.orders, f"not json {round_}".encode(), partition=0)
        assert producer.flush(30) == 0  # in the log, aborted or not (an abort purges unsent messages)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    # The partition ends with an abort marker: only the consumer's position gets past it.
    # 44 messages, 4 markers; the coordinator writes a marker after answering the commit or abort.
    end = 4 * 11 + 4
    wait_until(
        lambda: partition_ends(kafka_brokers, topics.orders)[0] == end, timeout_s=30, what="every marker"
    )

    with CommittedOffsets(kafka_brokers, topics.group) as positions:  # one client for every question

        def settled() -> bool:
            service.assert_alive()
            return positions(topics.orders, [0])[0] == end

        wait_until(settled, timeout_s=60, what="the committed offset at the end, past the markers")
    assert set(stored_orders(schema_dsn)) == committed  # aborted orders never stored
    letters = read_topic(kafka_brokers, topics.dlq)
    assert sorted(m.value() or b"" for m in letters) == [b"not json 0", b"not json 2"]  # once, none aborted

    def lag() -> str | None:
        text = service.get("/metrics").body.decode()
        return None if lag_of(text, topics.orders, 0) != 0 else text

    # Counted from the tracker's confirmed commits: librdkafka's statistics never see a
    # transactional one.
    wait_until(lag, timeout_s=30, what="consumer_lag 0 for partition 0")
    time.sleep(STUCK_AFTER_S + 1)  # past the stuck threshold: the markers must not look like waiting work
    assert service.get("/readyz").status == 200
    metrics = service.get("/metrics").body.decode()
    assert f'consumer_partition_stuck{{partition="0",topic="{topics.orders}"}} 0.0' in metrics
    assert 'dlq_messages_total{reason="undecodable"} 2.0' in metrics
    assert "consumer_transaction_commit_seconds_count" in metrics
    assert service.stop() == 0


def test_the_switch_off_runs_at_least_once_through_the_same_commit_path(
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    service = start_service({**service_env, "KAFKA_TRANSACTIONS": "false"})
    producer = Producer({"bootstrap.servers": kafka_brokers})
    for i in range(20):
        producer.produce(topics.orders, order_bytes(i, seed=SEED + 1), partition=0)
    producer.produce(topics.orders, b"not json", partition=0)
    assert producer.flush(30) == 0

    with CommittedOffsets(kafka_brokers, topics.group) as positions:

        def done() -> bool:
            service.assert_alive()
            return positions(topics.orders, [0])[0] == 21

        wait_until(done, timeout_s=60, what="every message committed")
    assert len(stored_orders(schema_dsn)) == 20
    (letter,) = read_topic(kafka_brokers, topics.dlq)
    assert headers(letter)["dlq.original.offset"] == "20"
    events = {e.get("event") for e in log_events(service)}
    assert "transactions_ready" not in events  # no transactional producer in this mode
    metrics = service.get("/metrics").body.decode()
    assert 'dlq_messages_total{reason="undecodable"} 1.0' in metrics
    assert "consumer_transaction_commit_seconds_count 0.0" in metrics
    assert service.stop() == 0
