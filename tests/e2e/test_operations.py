"""Operations promises of the running service: an ordered, bounded stop, and logs a machine can read."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import Topics, app_name
from tests.e2e.helpers import (
    final_outcomes,
    make_input,
    produce,
    stored_orders,
    table_counts,
    wait_committed_to_end,
    wait_stored,
)
from tests.service_proc import StartService
from tests.support import wait_until

pytestmark = pytest.mark.e2e


def test_sigterm_during_busy_ingest_loses_nothing_and_repeats_nothing(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    data = make_input(tmp_path, 6000, seed=51)
    # At most 500 messages polled and not committed: the stop finishes what it holds, and with the
    # default budget (10,000) it could hold the whole file by the time the signal comes.
    first = start_service({**service_env, "CONSUMER_MAX_IN_FLIGHT_MESSAGES": "500"}, name="first")
    produce(data.path, topics.orders, kafka_brokers)
    wait_stored(schema_dsn, 500, [first])
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=40) == 0  # a clean stop: batches finished, offsets committed
    stored_at_stop = table_counts(schema_dsn)["orders"]
    assert stored_at_stop < len(data.valid), "the stop must interrupt the ingest"

    second = start_service(service_env, name="second")
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 6000, timeout_s=120, services=[second])
    assert stored_orders(schema_dsn) == data.valid
    assert second.stop() == 0
    together = final_outcomes(first) + final_outcomes(second)
    assert together["stored"] == len(data.valid)
    assert together["duplicate"] == 0  # everything finished before the stop was committed by it


def test_a_hung_database_cannot_keep_the_process_alive_past_the_timeout(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    timeout_s = 5
    service = start_service({**service_env, "SHUTDOWN_TIMEOUT_S": str(timeout_s)})
    data = make_input(tmp_path, 50, seed=52, invalid_rate=0.0)
    with psycopg.connect(schema_dsn) as locker:
        locker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")  # every write now hangs
        produce(data.path, topics.orders, kafka_brokers)

        def writer_waiting() -> bool:
            row = locker.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND application_name = %s",
                (f"{app_name(topics)}-writer",),
            ).fetchone()
            return bool(row and row[0] > 0)

        wait_until(writer_waiting, timeout_s=30, what="the writer to hang on the lock")
        started = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        code = service.proc.wait(timeout=timeout_s + 10)
        elapsed = time.monotonic() - started
    assert elapsed <= timeout_s + 3, f"stopping took {elapsed:.1f}s with shutdown.timeout_s={timeout_s}"
    assert code == 1  # not a clean stop: the hung batch was not finished (and not committed)
    assert any('"exit_with_threads_stuck"' in line for line in service.log_lines())


def test_every_log_line_is_json_with_its_context(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    service = start_service({**service_env, "LOG_ACCESS_LOG": "true"})
    data = make_input(tmp_path, 40, seed=53, invalid_rate=0.25)
    produce(data.path, topics.orders, kafka_brokers, "-gibberish", "2")
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 42, timeout_s=60, services=[service])
    uid = next(iter(data.valid))
    assert service.get(f"/api/orders/{uid}", headers={"X-Request-ID": "lookup-1"}).status == 200
    assert service.get("/api/orders/missing1", headers={"X-Request-ID": "lookup-2"}).status == 404
    assert service.stop() == 0

    lines = [json.loads(line) for line in service.log_lines()]  # any non-JSON line fails here
    for line in lines:
        assert {"timestamp", "level", "event", "component"} <= set(line), line
        assert line["component"] in {"api", "consumer", "store", "cache", "app"}, line
    access = [line for line in lines if line["event"] == "http_request"]
    assert {(a["request_id"], a["status"]) for a in access} >= {("lookup-1", 200), ("lookup-2", 404)}
    letters = [line for line in lines if line["event"] == "dead_lettered"]
    assert len(letters) == len(data.invalid) + 2
    for letter in letters:
        assert {"topic", "partition", "offset", "order_uid", "reason"} <= set(letter), letter
    keyed = [letter for letter in letters if letter["reason"] == "invalid"]
    assert {letter["order_uid"] for letter in keyed} == {o["order_uid"] for o, _ in data.invalid}
