"""What the end-to-end tests need to drive and inspect the running service: a generated input file,
the producer, the committed offsets, the dead-letter topic and the database contents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from psycopg_pool import ConnectionPool

import gen_orders
from internal.domain.order import Order
from internal.pkg.kafka_offsets import CommittedOffsets, partition_ends
from internal.store.reader import PostgresOrderReader
from internal.tools import producer
from tests.service_proc import ROOT, ServiceProcess
from tests.support import wait_until

if TYPE_CHECKING:  # conftest imports this module
    from tests.conftest import Topics


@dataclass(frozen=True)
class InputFile:
    path: Path
    valid: dict[str, Order]  # order_uid -> the order as sent
    invalid: list[tuple[dict[str, Any], str]]  # (order, defect kind)

    @property
    def item_count(self) -> int:
        return sum(len(o.items) for o in self.valid.values())


def make_input(tmp_path: Path, n: int, invalid_rate: float = 0.1, seed: int = 11) -> InputFile:
    generated = list(gen_orders.generate(n, 1, 5, invalid_rate, seed))
    path = tmp_path / f"orders-{seed}-{n}.json"
    with path.open("w", encoding="utf-8") as out:
        gen_orders.write_orders(iter(generated), out, len(generated))
    valid = {
        o["order_uid"]: Order.model_validate_json(json.dumps(o)) for o, kind in generated if kind is None
    }
    return InputFile(path, valid, [(o, kind) for o, kind in generated if kind is not None])


def produce(path: Path, topic: str, brokers: str, *extra: str, rps: int = 0) -> None:
    code = producer.main(["-file", str(path), "-topic", topic, "-brokers", brokers, "-rps", str(rps), *extra])
    assert code == 0, f"producer exited with {code}"


class BackgroundProducer:
    """The producer CLI as its own process at a fixed rate, so that faults can hit mid-stream."""

    def __init__(
        self, path: Path, topic: str, brokers: str, rps: int, *, message_timeout_ms: int | None = None
    ) -> None:
        # message_timeout_ms: how long the producer keeps retrying a message (its default is 30 s).
        timeout = [] if message_timeout_ms is None else ["-message-timeout-ms", str(message_timeout_ms)]
        self._proc = subprocess.Popen(
            [sys.executable, str(ROOT / "cmd" / "producer.py"), "-file", str(path), "-topic", topic,
             "-brokers", brokers, "-rps", str(rps), *timeout],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def finish(self, timeout_s: float = 120) -> None:
        output, _ = self._proc.communicate(timeout=timeout_s)
        assert self._proc.returncode == 0, f"producer exited with {self._proc.returncode}: {output[-2000:]!r}"


def ingest(
    tmp_path: Path, topics: Topics, brokers: str, service: ServiceProcess, n: int = 30, seed: int = 41
) -> InputFile:
    """``n`` valid orders produced to the test's topic and committed by ``service``."""
    data = make_input(tmp_path, n, invalid_rate=0.0, seed=seed)
    produce(data.path, topics.orders, brokers)
    wait_committed_to_end(brokers, topics.orders, topics.group, n, timeout_s=60, services=[service])
    return data


def wait_committed_to_end(
    brokers: str,
    topic: str,
    group: str,
    expected_total: int,
    *,
    timeout_s: float,
    services: list[ServiceProcess],
) -> None:
    """Wait until the group's committed offsets reach the end of every partition (and the topic holds
    ``expected_total`` messages, so the producer is done); fail early if a service died."""

    with CommittedOffsets(brokers, group) as committed:  # one client for every question

        def done() -> bool:
            for service in services:
                service.assert_alive()
            ends = committed.ends(topic)
            if sum(ends.values()) < expected_total:
                return False
            done = committed(topic, list(ends))
            # An empty partition has nothing to commit: its position stays "none" (negative).
            return all(done[p] == end or (end == 0 and done[p] < 0) for p, end in ends.items())

        what = f"group {group} to commit every message of {topic}"
        wait_until(done, timeout_s=timeout_s, what=what, interval_s=0.5)


def read_topic(brokers: str, topic: str) -> list[Message]:
    """Every committed message of a topic (``read_committed``: the service writes dead letters in
    transactions), from the beginning to the current end. A partition's end is reached when the
    consumer says so (partition EOF at or past the end asked for): its last offsets may be
    transaction markers, never delivered."""
    ends = partition_ends(brokers, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    messages: list[Message] = []
    reached = {p: end == 0 for p, end in ends.items()}

    def caught_up() -> bool:
        for message in consumer.consume(500, 0.5):
            error, p = message.error(), message.partition() or 0
            if error is None:
                messages.append(message)
                reached[p] = reached[p] or (message.offset() or 0) + 1 >= ends[p]
            elif error.code() == KafkaError._PARTITION_EOF and (message.offset() or 0) >= ends[p]:
                reached[p] = True
        return all(reached.values())

    try:
        wait_until(caught_up, timeout_s=60, what=f"reading {topic} to its end")
    finally:
        consumer.close()
    return messages


def headers(message: Message) -> dict[str, str]:
    raw = message.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    return {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in items}


def stored_orders(dsn: str) -> dict[str, Order]:
    with ConnectionPool(dsn, min_size=1, max_size=1) as pool:
        return {r.uid: Order.model_validate_json(r.json) for r in PostgresOrderReader(pool).latest(10**9)}


def table_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in ("orders", "deliveries", "payments", "items")
        }


def final_outcomes(service: ServiceProcess) -> Counter[str]:
    """The outcome counts the service logs when its consumer closes (after a clean stop)."""
    for line in reversed(service.log_lines()):
        if '"consumer_closed"' in line:
            return Counter(json.loads(line)["outcomes"])
    raise AssertionError(f"no consumer_closed line in the log:\n{service.log_tail()}")


def log_events(service: ServiceProcess) -> Iterator[dict[str, Any]]:
    for line in service.log_lines():
        yield json.loads(line)


STACK_ADDRESS = {"kafka.sh": "KAFKA_BROKERS", "postgres.sh": "POSTGRES_DSN"}


def stack(script: str, action: str, address: str) -> None:
    """Drive the local stack (scripts/kafka.sh, scripts/postgres.sh) from a test: stop, start, restart
    the server at ``address`` - the broker list or DSN the test was given. The scripts act on that
    server only, and refuse one they do not run, so a test never stops a server it was not given."""
    result = subprocess.run(
        [str(ROOT / "scripts" / script), action],
        env={**os.environ, STACK_ADDRESS[script]: address},
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"{script} {action} failed: {result.stderr}"


def wait_stored(dsn: str, at_least: int, services: list[ServiceProcess], timeout_s: float = 120) -> None:
    """Wait until ``at_least`` orders are stored (ingest is under way); fail early if a service died."""

    def enough() -> bool:
        for service in services:
            service.assert_alive()
        return table_counts(dsn)["orders"] >= at_least

    wait_until(enough, timeout_s=timeout_s, what=f"{at_least} orders stored")
