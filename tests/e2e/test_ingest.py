"""The whole service against the real broker and database: what goes in is exactly what is stored,
and everything refused is in the dead-letter topic with the right reason."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from internal.consumer.letters import DLQ_HEADERS
from tests.conftest import Topics
from tests.e2e.helpers import (
    final_outcomes,
    headers,
    make_input,
    produce,
    read_topic,
    stored_orders,
    table_counts,
    wait_committed_to_end,
)
from tests.service_proc import StartService

pytestmark = pytest.mark.e2e


def test_ingest_stores_exactly_the_valid_orders_and_dead_letters_the_rest(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    data = make_input(tmp_path, 600, invalid_rate=0.1)
    produce(data.path, topics.orders, kafka_brokers, "-invalid-json", "5", "-gibberish", "5")
    service = start_service(service_env)
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 610, timeout_s=90, services=[service])

    stored = stored_orders(schema_dsn)
    assert stored == data.valid  # every field of all four tables, field by field, nothing more
    assert table_counts(schema_dsn) == {
        "orders": len(data.valid),
        "deliveries": len(data.valid),
        "payments": len(data.valid),
        "items": data.item_count,
    }

    letters = read_topic(kafka_brokers, topics.dlq)
    reasons = Counter(headers(m)["dlq.reason"] for m in letters)
    assert reasons == {"invalid": len(data.invalid), "undecodable": 10}
    invalid_values = {
        json.dumps(o, ensure_ascii=False, separators=(",", ":")).encode() for o, _ in data.invalid
    }
    assert {m.value() for m in letters if headers(m)["dlq.reason"] == "invalid"} == invalid_values
    origins = set()
    for message in letters:
        h = headers(message)
        assert set(DLQ_HEADERS) <= set(h), f"missing headers in {sorted(h)}"
        assert h["dlq.original.topic"] == topics.orders
        assert h["dlq.consumer.group"] == topics.group
        assert int(h["dlq.attempts"]) >= 1
        assert datetime.fromisoformat(h["dlq.failed.at"]).tzinfo is not None
        assert h["dlq.error"]
        assert "created-at-ms" in h  # the producer's own header travels unchanged
        origins.add((int(h["dlq.original.partition"]), int(h["dlq.original.offset"])))
    assert len(origins) == len(letters)  # one letter per refused message

    assert service.stop() == 0
    outcomes = final_outcomes(service)
    assert outcomes["stored"] == len(data.valid)
    assert outcomes["invalid"] == len(data.invalid)
    assert outcomes["undecodable"] == 10


def test_replay_adds_nothing_and_a_changed_copy_is_a_conflict(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    data = make_input(tmp_path, 200, invalid_rate=0.0, seed=12)
    produce(data.path, topics.orders, kafka_brokers)
    service = start_service(service_env)
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 200, timeout_s=60, services=[service])
    before = table_counts(schema_dsn)

    produce(data.path, topics.orders, kafka_brokers)  # the same file again
    uid, original = next(iter(data.valid.items()))
    changed = json.loads(original.model_dump_json())
    changed["delivery"]["city"] = "Changed City"
    changed_path = tmp_path / "changed.json"
    changed_path.write_text(json.dumps(changed), encoding="utf-8")
    produce(changed_path, topics.orders, kafka_brokers)
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 401, timeout_s=60, services=[service])

    assert table_counts(schema_dsn) == before
    assert stored_orders(schema_dsn)[uid] == original  # first write wins
    letters = read_topic(kafka_brokers, topics.dlq)
    assert [headers(m)["dlq.reason"] for m in letters] == ["conflict"]
    assert json.loads(letters[0].value() or b"")["order_uid"] == uid
    assert service.stop() == 0
    assert final_outcomes(service) == {"stored": 200, "duplicate": 200, "conflict": 1}
