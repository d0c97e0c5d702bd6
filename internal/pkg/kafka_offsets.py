"""Where a topic ends and where a consumer group stands: for lag, tools, benchmarks and tests."""

from __future__ import annotations

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
        partitions = probe.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        return {
            p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1] for p in partitions
        }
    finally:
        probe.close()


def committed_offsets(
    brokers: str, topic: str, group: str, partitions: list[int], timeout_s: float = 10.0
) -> dict[int, int]:
    """The group's committed position per partition (negative when it committed nothing yet)."""
    probe = _probe(brokers, group)
    try:
        answer = probe.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout_s)
        return {tp.partition: tp.offset for tp in answer}
    finally:
        probe.close()
