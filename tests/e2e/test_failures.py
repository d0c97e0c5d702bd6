"""Failure modes of the running service: crash, database outage, broker restart, a second consumer
joining and leaving, and the dead-letter storm guard. Each ends with the same proof: the database
holds exactly the valid orders of the input, and every refused message is dead-lettered."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from internal.pkg.kafka_offsets import committed_offsets, partition_ends
from tests.conftest import Topics
from tests.e2e.helpers import (
    BackgroundProducer,
    InputFile,
    final_outcomes,
    headers,
    make_input,
    produce,
    read_topic,
    stack,
    stored_orders,
    table_counts,
    wait_committed_to_end,
    wait_stored,
)
from tests.service_proc import ServiceProcess, StartService, free_port
from tests.support import wait_until

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def assert_exact_result(data: InputFile, dsn: str, brokers: str, topics: Topics) -> None:
    assert stored_orders(dsn) == data.valid  # nothing lost, nothing extra
    assert table_counts(dsn)["items"] == data.item_count  # nothing stored twice or half
    letters = read_topic(brokers, topics.dlq)
    assert {headers(m)["dlq.reason"] for m in letters} <= {"invalid"}
    # At-least-once to the DLQ: a crash may repeat a letter, never lose one.
    assert len({(m.value()) for m in letters}) == len(data.invalid)


def test_kill_9_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    data = make_input(tmp_path, 3000, seed=31)
    producer = BackgroundProducer(data.path, topics.orders, kafka_brokers, rps=600)
    first = start_service(service_env, name="first")
    wait_stored(schema_dsn, 300, [first])
    first.kill()  # SIGKILL: no commit, no goodbye to the group
    assert table_counts(schema_dsn)["orders"] < len(data.valid), "the crash must happen mid-stream"
    second = start_service(service_env, name="second")
    producer.finish()
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 3000, timeout_s=120, services=[second])
    assert_exact_result(data, schema_dsn, kafka_brokers, topics)
    assert second.stop() == 0


def test_postgres_outage_of_20s_dead_letters_nothing_and_recovers_by_itself(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
    postgres_restorer: None,
    pg_dsn: str,
) -> None:
    data = make_input(tmp_path, 2000, seed=32)
    service = start_service(service_env)
    producer = BackgroundProducer(data.path, topics.orders, kafka_brokers, rps=100)  # ~20 s of traffic
    wait_stored(schema_dsn, 100, [service])
    stack("postgres.sh", "stop", pg_dsn)
    outage_began = time.monotonic()

    def not_ready_naming_the_database() -> bool:
        answer = service.get("/readyz")
        body = answer.json()
        return answer.status == 503 and body["components"]["database"]["ok"] is False

    wait_until(not_ready_naming_the_database, timeout_s=30, what="readiness 503 naming the database")
    assert service.get("/healthz").status == 200  # alive: an outage must not get the process restarted
    time.sleep(max(0.0, 20 - (time.monotonic() - outage_began)))  # the outage itself lasts 20 s
    stack("postgres.sh", "start", pg_dsn)
    producer.finish()
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 2000, timeout_s=120, services=[service])
    wait_until(lambda: service.get("/readyz").status == 200, timeout_s=30, what="readiness back to 200")
    assert_exact_result(data, schema_dsn, kafka_brokers, topics)
    assert service.stop() == 0
    assert final_outcomes(service)["stored"] == len(data.valid)


def test_broker_restart_mid_stream_loses_nothing(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    data = make_input(tmp_path, 2000, seed=33)
    service = start_service(service_env)
    producer = BackgroundProducer(data.path, topics.orders, kafka_brokers, rps=300)
    wait_stored(schema_dsn, 200, [service])
    stack("kafka.sh", "restart", kafka_brokers)
    producer.finish()
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 2000, timeout_s=120, services=[service])
    assert_exact_result(data, schema_dsn, kafka_brokers, topics)
    assert service.stop() == 0


def test_second_consumer_joining_and_leaving_loses_and_repeats_nothing(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    data = make_input(tmp_path, 3000, seed=34)
    first = start_service(service_env, name="first")
    # 20 s of traffic, so that the second instance joins well before the end even on a loaded machine.
    producer = BackgroundProducer(data.path, topics.orders, kafka_brokers, rps=150)
    wait_stored(schema_dsn, 300, [first])
    second = start_service({**service_env, "HTTP_PORT": str(free_port())}, name="second")  # ready = assigned

    def split(service: ServiceProcess) -> int:
        detail: str = service.get("/readyz").json()["components"]["consumer"]["detail"]
        return int(detail.split(maxsplit=1)[0]) if detail[0].isdigit() else 0

    wait_until(
        lambda: split(first) + split(second) == 6 and split(second) > 0,
        timeout_s=30,
        what="6 partitions shared",
    )
    stored_while_both = table_counts(schema_dsn)["orders"]
    # Some orders stored while both run (all that are left, when the rebalance took most of the traffic).
    wait_stored(schema_dsn, min(stored_while_both + 300, len(data.valid)), [first, second])
    assert second.stop() == 0  # leaves the group; its partitions go back to the first
    producer.finish()
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 3000, timeout_s=120, services=[first])
    assert_exact_result(data, schema_dsn, kafka_brokers, topics)
    assert first.stop() == 0
    together = final_outcomes(first) + final_outcomes(second)
    assert together["stored"] == len(data.valid)
    assert together["duplicate"] == 0  # a clean hand-over processes no message twice


def test_dead_letter_storm_stops_consumption_loudly(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    service = start_service({**service_env, "DLQ_MAX_CONSECUTIVE": "5"})
    empty = tmp_path / "empty.json"
    empty.write_text("[]", encoding="utf-8")
    produce(empty, topics.orders, kafka_brokers, "-gibberish", "10")

    def stopped() -> bool:
        answer = service.get("/readyz")
        consumer = answer.json()["components"]["consumer"]
        return answer.status == 503 and "dead-letters in a row" in consumer["detail"]

    wait_until(stopped, timeout_s=30, what="readiness 503 naming the dead-letter storm")
    # The guard acts per batch, so the batch that crossed the limit is dead-lettered whole; what
    # arrives after the stop is not touched.
    produce(empty, topics.orders, kafka_brokers, "-gibberish", "20")
    assert service.get("/healthz").status == 200
    assert service.stop() == 1  # a service whose consumer stopped on a fatal condition exits non-zero
    letters = read_topic(kafka_brokers, topics.dlq)
    assert Counter(headers(m)["dlq.reason"] for m in letters) == {"undecodable": 10}
    ends = partition_ends(kafka_brokers, topics.orders)
    done = committed_offsets(kafka_brokers, topics.orders, topics.group, list(ends))
    assert sum(max(0, o) for o in done.values()) == 10  # the 20 later messages stay for after the fix
