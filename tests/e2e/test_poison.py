"""No single message can stall a partition, and when work stops moving the service says so.

Against the real broker and database: a near-limit undecodable message between valid orders; the
same with a dead-letter topic too small for its letter (a stub goes); an unexpected exception for one
order (bounded, then processing_error); a partition held on purpose by a row lock (readiness and the
gauge name it, and recover); an exception on the poll thread (the process ends, nothing committed
past unfinished work). The faults that need a bug come from tests/e2e/faulty_service.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Message, Producer

from internal.pkg.kafka_offsets import committed_offsets, partition_ends
from internal.pkg.kafka_topics import TopicSpec, delete_topics, ensure_topics
from tests.conftest import Topics
from tests.e2e.helpers import headers, read_topic, stored_orders, table_counts
from tests.orders import order_bytes, order_doc
from tests.service_proc import ROOT, ServiceProcess, StartService
from tests.support import wait_until

pytestmark = pytest.mark.e2e
FAULTY = ROOT / "tests" / "e2e" / "faulty_service.py"
NEAR_LIMIT = 1_040_000  # under consumer.max_message_bytes (1 MiB) and under the broker's limit
PASS_S = 30  # the offsets must pass a poison message within seconds; this bounds the wait


def send(brokers: str, topic: str, values: list[bytes], partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": brokers, "message.max.bytes": 2_000_000, "linger.ms": 5})
    for value in values:
        producer.produce(topic, value=value, partition=partition)
    assert producer.flush(30) == 0


def committed_to_end(brokers: str, topics: Topics, partition: int, service: ServiceProcess) -> bool:
    service.assert_alive()
    end = partition_ends(brokers, topics.orders)[partition]
    return committed_offsets(brokers, topics.orders, topics.group, [partition])[partition] == end


def letters_by_origin(brokers: str, dlq: str) -> dict[tuple[int, int], list[Message]]:
    found: dict[tuple[int, int], list[Message]] = {}
    for m in read_topic(brokers, dlq):
        h = headers(m)
        found.setdefault((int(h["dlq.original.partition"]), int(h["dlq.original.offset"])), []).append(m)
    return found


def test_a_near_limit_undecodable_message_is_dead_lettered_once_and_the_offsets_pass_it(
    kafka_brokers: str,
    topics: Topics,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    service = start_service(service_env)
    poison = b"\xff" * NEAR_LIMIT
    values = (
        [order_bytes(i, seed=91) for i in range(3)]
        + [poison]
        + [order_bytes(i, seed=91) for i in range(3, 6)]
    )
    started = time.monotonic()
    send(kafka_brokers, topics.orders, values)
    wait_until(
        lambda: committed_to_end(kafka_brokers, topics, 0, service), timeout_s=PASS_S, what="offsets past it"
    )
    print(f"\npoison: offsets at the end of the partition {time.monotonic() - started:.2f}s after producing")
    letters = letters_by_origin(kafka_brokers, topics.dlq)
    assert list(letters) == [(0, 3)]  # exactly one letter, for the poison message; none repeated
    (letter,) = letters[(0, 3)]
    assert letter.value() == poison  # a full letter: the dead-letter topic and producer are sized for it
    assert headers(letter)["dlq.reason"] == "undecodable"
    assert "dlq.truncated" not in headers(letter)
    assert len(stored_orders(schema_dsn)) == 6
    assert service.get("/readyz").status == 200
    assert service.stop() == 0


def test_a_letter_too_large_for_the_dead_letter_topic_goes_as_a_stub_and_the_offsets_move(
    kafka_brokers: str,
    topics: Topics,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
    small_dlq: str,
) -> None:
    service = start_service({**service_env, "KAFKA_DLQ_TOPIC": small_dlq})
    assert any('"dlq_topic_too_small"' in line for line in service.log_lines())  # said at start
    poison = b"\xfe" * NEAR_LIMIT
    send(kafka_brokers, topics.orders, [order_bytes(1, seed=92), poison, order_bytes(2, seed=92)])
    wait_until(
        lambda: committed_to_end(kafka_brokers, topics, 0, service), timeout_s=PASS_S, what="offsets past it"
    )
    letters = letters_by_origin(kafka_brokers, small_dlq)
    assert list(letters) == [(0, 1)]
    (stub,) = letters[(0, 1)]
    h = headers(stub)
    assert (h["dlq.truncated"], h["dlq.original.size"], h["dlq.reason"]) == (
        "true",
        str(NEAR_LIMIT),
        "undecodable",
    )
    assert "MSG_SIZE_TOO_LARGE" in h["dlq.truncated.cause"]
    assert len(stub.value() or b"") == 1024
    assert len(stored_orders(schema_dsn)) == 2
    metrics = service.get("/metrics").body.decode()
    assert "dlq_truncated_letters_total 1.0" in metrics
    assert service.stop() == 0


def test_an_unexpected_exception_for_one_order_is_bounded_then_dead_lettered(
    kafka_brokers: str,
    topics: Topics,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    docs = [order_doc(i, seed=93) for i in range(20)]
    bad = docs[7]["order_uid"]
    env = {**service_env, "L0_TEST_FAULT": f"store:{bad}", "CONSUMER_MAX_ATTEMPTS": "3"}
    service = start_service(env, script=FAULTY)
    send(kafka_brokers, topics.orders, [order_bytes(i, seed=93) for i in range(20)])
    wait_until(
        lambda: committed_to_end(kafka_brokers, topics, 0, service), timeout_s=PASS_S, what="offsets past it"
    )
    letters = letters_by_origin(kafka_brokers, topics.dlq)
    assert list(letters) == [(0, 7)]
    (letter,) = letters[(0, 7)]
    h = headers(letter)
    assert h["dlq.reason"] == "processing_error"
    assert h["dlq.error"] == f"RuntimeError: injected failure for {bad}"
    assert int(h["dlq.attempts"]) >= 3  # max_attempts for its batch, then one per split level
    stored = stored_orders(schema_dsn)
    assert set(stored) == {d["order_uid"] for d in docs} - {bad}
    assert table_counts(schema_dsn)["items"] == sum(len(d["items"]) for d in docs if d["order_uid"] != bad)
    metrics = service.get("/metrics").body.decode()
    assert 'consumer_messages_total{outcome="stored"} 19.0' in metrics  # once each: never written again
    assert 'consumer_messages_total{outcome="duplicate"}' not in metrics
    assert service.stop() == 0


def test_a_partition_held_stuck_fails_readiness_by_name_and_recovers_by_itself(
    kafka_brokers: str,
    topics: Topics,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    env = {**service_env, "CONSUMER_STUCK_AFTER_S": "2", "POSTGRES_STATEMENT_TIMEOUT_MS": "120000"}
    service = start_service(env)
    held = order_doc(0, seed=94)
    with psycopg.connect(schema_dsn) as blocker:  # an uncommitted row with the same uid: the writer waits
        blocker.execute(
            "INSERT INTO orders (order_uid, track_number, entry, locale, internal_signature, customer_id,"
            " delivery_service, shardkey, sm_id, date_created, date_created_text, oof_shard, content_hash)"
            " VALUES (%s, 'T', 'E', 'en', '', 'c', 'd', '1', 1, now(), '2021-11-26T06:22:19Z', '1', '\\x00')",
            (held["order_uid"],),
        )
        send(kafka_brokers, topics.orders, [order_bytes(0, seed=94)], partition=0)
        began = time.monotonic()

        def stuck() -> str | None:
            answer = service.get("/readyz")
            detail: str = answer.json()["components"]["partitions"]["detail"]
            return detail if answer.status == 503 and f"{topics.orders}[0] stuck" in detail else None

        detail = wait_until(stuck, timeout_s=30, what="readiness naming the stuck partition")
        print(f"\nstuck: reported {time.monotonic() - began:.1f}s after the message arrived: {detail}")
        gauge = f'consumer_partition_stuck{{partition="0",topic="{topics.orders}"}} 1.0'
        assert gauge in service.get("/metrics").body.decode()
        blocker.rollback()
    wait_until(lambda: service.get("/readyz").status == 200, timeout_s=30, what="readiness back")
    gauge = f'consumer_partition_stuck{{partition="0",topic="{topics.orders}"}} 0.0'
    assert gauge in service.get("/metrics").body.decode()
    assert set(stored_orders(schema_dsn)) == {held["order_uid"]}
    assert service.stop() == 0


def test_an_exception_on_the_poll_thread_ends_the_process_without_committing_unfinished_work(
    tmp_path: Path,
    kafka_brokers: str,
    topics: Topics,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    producer = Producer({"bootstrap.servers": kafka_brokers, "linger.ms": 5})
    for i in range(3000):
        producer.produce(topics.orders, value=order_bytes(i, seed=95), partition=i % 6)
    assert producer.flush(30) == 0
    env = {**service_env, "L0_TEST_FAULT": "poll:3", "SHUTDOWN_TIMEOUT_S": "10"}
    service = start_service(env, script=FAULTY, ready=False)
    code = service.proc.wait(timeout=120)
    ended = datetime.now(UTC)
    assert code == 1, service.log_tail()
    events = [json.loads(line) for line in service.log_lines() if '"consumer_crashed"' in line]
    assert events, service.log_tail()
    assert "injected failure on the poll thread" in events[0]["error"]
    crashed = datetime.fromisoformat(events[0]["timestamp"].replace("Z", "+00:00"))
    assert (ended - crashed).total_seconds() < 10, "the ordered stop outlived shutdown.timeout_s"
    # Everything below a committed offset is stored: nothing was committed past unfinished work.
    uid_at = {
        (i % 6, i // 6): order_doc(i, seed=95)["order_uid"] for i in range(3000)
    }  # one producer, in order
    stored = set(stored_orders(schema_dsn))
    committed = committed_offsets(kafka_brokers, topics.orders, topics.group, list(range(6)))
    for partition, position in committed.items():
        below = {uid for (p, o), uid in uid_at.items() if p == partition and o < max(position, 0)}
        assert below <= stored, f"partition {partition}: committed {position} past unstored work"
    assert sum(max(p, 0) for p in committed.values()) < 3000  # it stopped early, as injected


@pytest.fixture
def big_topics(kafka_brokers: str) -> Iterator[Topics]:
    """An orders topic that takes messages of up to 4 MiB (an operator's setting), and its
    dead-letter topic sized by the service."""
    suffix = uuid.uuid4().hex[:10]
    names = Topics(f"test-big-{suffix}", f"test-big-{suffix}.dlq", f"test-big-{suffix}")
    ensure_topics(kafka_brokers, [TopicSpec(names.orders, 6, config=(("max.message.bytes", str(4 << 20)),))])
    yield names
    delete_topics(kafka_brokers, [names.orders, names.dlq])


def test_messages_at_and_past_every_limit_end_stored_or_dead_lettered_once(
    kafka_brokers: str,
    big_topics: Topics,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    topics = big_topics
    env = {
        **service_env,
        "KAFKA_TOPIC": topics.orders,
        "KAFKA_DLQ_TOPIC": topics.dlq,
        "KAFKA_GROUP_ID": topics.group,
    }
    service = start_service(env)
    limit = 1_048_576  # consumer.max_message_bytes
    big_order = order_doc(1, seed=96, items=1000)
    many_headers: list[tuple[str, str | bytes | None]] = [(f"h{i}", b"0123456789") for i in range(20_000)]
    cases: list[tuple[str, bytes | None, bytes | None, list[tuple[str, str | bytes | None]], str]] = [
        # name, key, value, headers, expected: stored | full | stub
        ("at the limit", None, b"\xff" * limit, [], "full"),
        ("one byte past it", None, b"\xff" * (limit + 1), [], "full"),
        ("three times it", None, b"\xff" * 3_000_000, [], "stub"),
        ("a 600 KB key", b"k" * 600_000, b"\xff", [], "full"),
        ("a 1.2 MB key", b"k" * 1_200_000, b"\xff", [], "stub"),
        ("20,000 headers", None, b"\xff", many_headers, "full"),
        (
            "a 1.5 MB header, valid order",
            None,
            order_bytes(2, seed=96),
            [("big", b"h" * 1_500_000)],
            "stored",
        ),
        ("a 1.5 MB header, bad value", None, b"\xff", [("big", b"h" * 1_500_000)], "stub"),
        ("no value at all", b"tombstone", None, [], "full"),
        ("a 1,000-item order", None, json.dumps(big_order).encode(), [], "stored"),
    ]
    producer = Producer({"bootstrap.servers": kafka_brokers, "message.max.bytes": 8 << 20, "linger.ms": 5})
    for _name, key, value, hs, _expected in cases:
        producer.produce(topics.orders, value=value, key=key, headers=hs, partition=0)
    assert producer.flush(60) == 0
    wait_until(
        lambda: committed_to_end(kafka_brokers, topics, 0, service), timeout_s=60, what="offsets at the end"
    )
    letters = letters_by_origin(kafka_brokers, topics.dlq)
    for offset, (name, key, value, _hs, expected) in enumerate(cases):
        got = letters.get((0, offset), [])
        if expected == "stored":
            assert got == [], name
            continue
        assert len(got) == 1, f"{name}: {len(got)} letters"
        (letter,) = got
        truncated = headers(letter).get("dlq.truncated") == "true"
        assert truncated == (expected == "stub"), name
        if expected == "full":
            assert (letter.key(), letter.value()) == (key, value), name
        else:
            assert len(letter.key() or b"") <= 1024, name
            assert len(letter.value() or b"") <= 1024, name
    assert set(stored_orders(schema_dsn)) == {big_order["order_uid"], order_doc(2, seed=96)["order_uid"]}
    assert service.get("/readyz").status == 200
    assert service.stop() == 0
