"""The dead-letter sink against real brokers: acknowledged letters keep the original bytes and
carry every header; unacknowledged ones raise TransientError and get a fresh producer for the retry."""

from __future__ import annotations

import pytest

from internal.consumer.dlq import DLQ_HEADERS, KafkaDeadLetterSink
from internal.consumer.messages import DeadLetter, Inbound
from internal.domain.errors import TransientError
from tests.conftest import Topics
from tests.e2e.helpers import headers, read_topic

pytestmark = pytest.mark.integration


def letter(offset: int) -> DeadLetter:
    original = Inbound(
        "orders", 3, offset, b"key", b"\xff not json", (("created-at-ms", b"1"),), 1_700_000_000_000, 1
    )
    return DeadLetter(original, "undecodable", "not UTF-8", attempts=1)


def test_acknowledged_letters_keep_bytes_and_carry_headers(kafka_brokers: str, topics: Topics) -> None:
    sink = KafkaDeadLetterSink(kafka_brokers, topics.dlq, group="g", version="v1", max_error_bytes=100)
    sink.send([letter(7), letter(8)])
    messages = read_topic(kafka_brokers, topics.dlq)
    assert [m.value() for m in messages] == [b"\xff not json"] * 2
    assert all(m.key() == b"key" for m in messages)
    first = headers(messages[0])
    assert set(DLQ_HEADERS) <= set(first)
    assert (first["dlq.original.partition"], first["dlq.original.offset"], first["created-at-ms"]) == (
        "3",
        "7",
        "1",
    )
    assert sink.close(5) == 0


def test_unacknowledged_letters_raise_and_replace_the_producer() -> None:
    sink = KafkaDeadLetterSink(
        "127.0.0.1:1", "nowhere.dlq", group="g", version="v1", max_error_bytes=100, ack_timeout_s=1.0
    )
    before = sink._producer
    with pytest.raises(TransientError, match="0/1 acknowledged"):
        sink.send([letter(1)])
    assert sink._producer is not before  # the retry gets a fresh producer (new producer id)
