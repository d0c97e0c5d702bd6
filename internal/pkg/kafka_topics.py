"""Topic creation with confluent-kafka's AdminClient.

The broker runs with ``auto.create.topics.enable=false`` so that a typo in a topic name fails loudly
instead of silently creating an empty topic; the project therefore creates its own topics here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from internal.pkg.logging import KAFKA_LOG


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    config: tuple[tuple[str, str], ...] = ()  # topic-level settings at creation, e.g. max.message.bytes


def _admin(brokers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": brokers}, logger=KAFKA_LOG)


def ensure_topics(brokers: str, specs: Iterable[TopicSpec], timeout_s: float = 30.0) -> None:
    """Create every missing topic and wait until each has a leader for all its partitions.

    An existing topic is left as it is (neither its partition count nor its config is changed; see
    ``topic_setting`` to check one). Raises ``KafkaException`` when the broker cannot be reached or a
    topic cannot be created within ``timeout_s``.
    """
    admin = _admin(brokers)
    wanted = list(specs)
    futures = admin.create_topics(
        [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=s.replication_factor,
                config=dict(s.config),
            )
            for s in wanted
        ],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    for future in futures.values():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    _wait_for_leaders(admin, [s.name for s in wanted], timeout_s)


def delete_topics(brokers: str, names: Iterable[str], timeout_s: float = 30.0) -> None:
    """Delete topics; a topic that does not exist is not an error."""
    admin = _admin(brokers)
    for future in admin.delete_topics(list(names), operation_timeout=timeout_s).values():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise


def topic_setting(brokers: str, topic: str, key: str, timeout_s: float = 10.0) -> str | None:
    """The effective value of a topic's setting (its own, else the broker's default), None if unset."""
    admin = _admin(brokers)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    future = admin.describe_configs([resource], request_timeout=timeout_s)[resource]
    entry = future.result(timeout=timeout_s).get(key)
    return None if entry is None else entry.value


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    # CreateTopics returns once the controller accepted the topic; producing right away can still hit
    # "leader not available", so wait until the metadata shows a leader for every partition.
    deadline = time.monotonic() + timeout_s
    while True:
        metadata = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        ready = all(
            name in metadata.topics
            and metadata.topics[name].error is None
            and metadata.topics[name].partitions
            and all(p.leader >= 0 for p in metadata.topics[name].partitions.values())
            for name in names
        )
        if ready:
            return
        if time.monotonic() >= deadline:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"topics {names} have no leader yet"))
        time.sleep(0.1)
