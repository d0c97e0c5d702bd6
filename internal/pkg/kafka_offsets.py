"""Where a topic ends and where a consumer group stands: for lag, tools, benchmarks and tests."""

from __future__ import annotations

import math
import threading
import uuid

from confluent_kafka import Consumer, TopicPartition


def _probe(brokers: str, group: str) -> Consumer:
    # A consumer that never subscribes does not join the group; it only asks the coordinator.
    return Consumer(
        {"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False, "log_level": 3}
    )


def partition_ends(brokers: str, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """The high watermark (offset of the next message) of every partition of ``topic``."""
    probe = _probe(brokers, f"probe-{uuid.uuid4().hex}")
    try:
        return _ends(probe, topic, timeout_s)
    finally:
        probe.close()


def _ends(probe: Consumer, topic: str, timeout_s: float) -> dict[int, int]:
    partitions = probe.list_topics(topic, timeout=timeout_s).topics[topic].partitions
    return {
        p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1] for p in partitions
    }


def committed_offsets(
    brokers: str, topic: str, group: str, partitions: list[int], timeout_s: float = 10.0
) -> dict[int, int]:
    """The group's committed position per partition (negative when it committed nothing yet)."""
    with CommittedOffsets(brokers, group) as ask:
        return ask(topic, partitions, timeout_s)


class CommittedOffsets:
    """A group's committed positions, asked as often as needed through one client. A client per
    question costs a connection, a coordinator look-up and librdkafka's threads each time, which a
    loop that asks every few milliseconds takes from what it waits for (docs/performance.md)."""

    def __init__(self, brokers: str, group: str) -> None:
        self._probe = _probe(brokers, group)

    def __call__(self, topic: str, partitions: list[int], timeout_s: float = 10.0) -> dict[int, int]:
        """The committed position per partition (negative when nothing is committed yet)."""
        answer = self._probe.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout_s)
        return {tp.partition: tp.offset for tp in answer}

    def ends(self, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
        """``partition_ends`` through the same client (a wait asks both, again and again)."""
        return _ends(self._probe, topic, timeout_s)

    def __enter__(self) -> CommittedOffsets:
        return self

    def __exit__(self, *_: object) -> None:
        self._probe.close()


class TopicSize:
    """How many messages a topic holds - the sum over its partitions of high minus low watermark -
    asked of the broker every ``every_s`` on a thread of its own (a metric's scrape never waits for
    Kafka), by one consumer that never joins a group. ``value()`` is the last answer (NaN before
    the first, or while the broker does not answer: no number is better than a stale one)."""

    def __init__(self, brokers: str, topic: str, every_s: float = 30.0, timeout_s: float = 5.0) -> None:
        self._brokers, self._topic = brokers, topic
        self._every_s, self._timeout_s = every_s, timeout_s
        self._value = math.nan
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dlq-size", daemon=True)

    def value(self) -> float:
        return self._value

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        probe = _probe(self._brokers, f"probe-{uuid.uuid4().hex}")
        try:
            while not self._stop.is_set():
                try:
                    self._value = float(self._measure(probe))
                except Exception:  # broker away, topic missing: unknown until the next answer
                    self._value = math.nan
                self._stop.wait(self._every_s)
        finally:
            probe.close()

    def _measure(self, probe: Consumer) -> int:
        topics = probe.list_topics(self._topic, timeout=self._timeout_s).topics
        partitions = topics[self._topic].partitions
        total = 0
        for p in partitions:
            low, high = probe.get_watermark_offsets(TopicPartition(self._topic, p), timeout=self._timeout_s)
            total += max(0, high - low)
        return total
