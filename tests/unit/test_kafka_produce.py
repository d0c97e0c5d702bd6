"""One classification of librdkafka's produce errors, and the produce helper that uses it."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from internal.pkg.kafka_produce import (
    ProduceError,
    ProduceErrorKind,
    classify,
    failure_text,
    produce,
)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (KafkaError.MSG_SIZE_TOO_LARGE, ProduceErrorKind.PERMANENT),
        (KafkaError.INVALID_RECORD, ProduceErrorKind.PERMANENT),
        (KafkaError.RECORD_LIST_TOO_LARGE, ProduceErrorKind.PERMANENT),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, ProduceErrorKind.PERMANENT),
        (KafkaError._UNKNOWN_TOPIC, ProduceErrorKind.PERMANENT),
        (KafkaError._QUEUE_FULL, ProduceErrorKind.QUEUE_FULL),
        (KafkaError._MSG_TIMED_OUT, ProduceErrorKind.RETRIABLE),
        (KafkaError._TRANSPORT, ProduceErrorKind.RETRIABLE),
        (KafkaError.NOT_LEADER_FOR_PARTITION, ProduceErrorKind.RETRIABLE),
        (KafkaError._FATAL, ProduceErrorKind.RETRIABLE),  # a fenced idempotent producer: a new one helps
    ],
)
def test_errors_are_sorted_by_code(code: int, kind: ProduceErrorKind) -> None:
    assert classify(KafkaError(code)) is kind


def test_a_permanent_failure_says_a_retry_will_not_help() -> None:
    assert "refused for good" in failure_text(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert "refused for good" not in failure_text(KafkaError(KafkaError._MSG_TIMED_OUT))


class Producer:
    def __init__(self, full: int = 0, raises: int | None = None) -> None:
        self.full, self.raises, self.polls, self.sent = full, raises, 0, 0

    def produce(self, topic: str, value: Any = None, key: Any = None, **_kw: Any) -> None:
        if self.raises is not None:
            raise KafkaException(KafkaError(self.raises))
        if self.full:
            self.full -= 1
            raise BufferError("queue full")
        self.sent += 1

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0


def send(producer: Producer, max_wait_s: float | None = None) -> None:
    produce(
        producer,
        "t",
        value=b"v",
        key=None,
        headers=[],
        on_delivery=lambda _e, _m: None,
        max_wait_s=max_wait_s,
    )


def test_a_full_queue_is_served_and_the_message_queued() -> None:
    producer = Producer(full=3)
    send(producer)
    assert (producer.sent, producer.polls) == (1, 3)


def test_a_queue_that_stays_full_is_raised_as_queue_full_after_the_wait() -> None:
    producer = Producer(full=10**9)
    with pytest.raises(ProduceError) as caught:
        send(producer, max_wait_s=0.05)
    assert caught.value.kind is ProduceErrorKind.QUEUE_FULL
    assert not caught.value.permanent  # the sink retries it later


def test_a_refusal_before_queuing_is_raised_with_its_kind() -> None:
    with pytest.raises(ProduceError) as caught:
        send(Producer(raises=KafkaError.MSG_SIZE_TOO_LARGE))
    assert caught.value.permanent
    assert "MSG_SIZE_TOO_LARGE" in str(caught.value)
