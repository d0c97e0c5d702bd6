"""The dead-letter sink against the real broker: acknowledged letters keep the original bytes and carry
every header; a letter at the consumer's size limit fits; a letter the broker refuses for good goes as
a stub in the same call; a stub refused too is fatal; unacknowledged letters are named for the retry
and get a fresh producer."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from internal.consumer.dlq import KafkaDeadLetterSink
from internal.consumer.letters import (
    DLQ_HEADERS,
    STUB_HEADER_BYTES,
    STUB_VALUE_BYTES,
    topic_max_message_bytes,
)
from internal.consumer.messages import DeadLetter, Inbound
from internal.consumer.ports import LettersPending
from internal.domain.errors import FatalError
from internal.domain.reasons import DeadLetterReason
from internal.pkg.kafka_topics import TopicSpec, delete_topics, ensure_topics
from tests.conftest import Topics
from tests.e2e.helpers import headers, read_topic

pytestmark = pytest.mark.integration
LIMIT = 1_048_576  # consumer.max_message_bytes' default
ERROR_BYTES = 4096


def letter(offset: int, value: bytes = b"\xff not json", extra_headers: int = 0) -> DeadLetter:
    own: list[tuple[str, str | bytes | None]] = [("created-at-ms", b"1")]
    own += [(f"h{i}", b"x" * 1000) for i in range(extra_headers)]
    original = Inbound("orders", 3, offset, b"key", value, tuple(own), 1_700_000_000_000, 1)
    return DeadLetter(original, DeadLetterReason.UNDECODABLE, "not UTF-8", attempts=1)


def sink(brokers: str, topic: str, max_message_bytes: int = LIMIT) -> KafkaDeadLetterSink:
    return KafkaDeadLetterSink(
        brokers,
        topic,
        group="g",
        version="v1",
        max_message_bytes=max_message_bytes,
        max_error_bytes=ERROR_BYTES,
        ack_timeout_s=20,
    )


def test_acknowledged_letters_keep_bytes_and_carry_headers(kafka_brokers: str, topics: Topics) -> None:
    delivered = sink(kafka_brokers, topics.dlq).send([letter(7), letter(8)])
    assert [d.truncated for d in delivered] == [None, None]
    messages = read_topic(kafka_brokers, topics.dlq)
    assert [m.value() for m in messages] == [b"\xff not json"] * 2
    assert all(m.key() == b"key" for m in messages)
    first = headers(messages[0])
    assert set(DLQ_HEADERS) <= set(first)
    assert "dlq.truncated" not in first
    assert (first["dlq.original.partition"], first["dlq.original.offset"], first["created-at-ms"]) == (
        "3",
        "7",
        "1",
    )


def test_a_letter_at_the_consumers_size_limit_fits_a_topic_made_for_it(kafka_brokers: str) -> None:
    name = f"test-fit-{uuid.uuid4().hex[:10]}.dlq"
    needed = topic_max_message_bytes(LIMIT, ERROR_BYTES)
    ensure_topics(kafka_brokers, [TopicSpec(name, 1, config=(("max.message.bytes", str(needed)),))])
    try:
        value = b"\xff" * LIMIT  # the largest value the consumer reads at all, with 60 KB of headers
        (delivered,) = sink(kafka_brokers, name).send([letter(1, value, extra_headers=60)])
        assert delivered.truncated is None
        (message,) = read_topic(kafka_brokers, name)
        assert message.value() == value
    finally:
        delete_topics(kafka_brokers, [name])


def test_a_letter_the_broker_refuses_goes_as_a_stub(kafka_brokers: str, small_dlq: str) -> None:
    big = bytes(range(256)) * 1200  # 307,200 bytes: over the topic's 200,000
    small = letter(2)
    delivered = sink(kafka_brokers, small_dlq).send([letter(1, big, extra_headers=30), small])
    assert [d.truncated is not None for d in delivered] == [True, False]
    assert "MSG_SIZE_TOO_LARGE" in (delivered[0].truncated or "")
    letters = read_topic(kafka_brokers, small_dlq)  # exactly one letter each: no retry, no repeat
    assert len(letters) == 2
    (stub,) = [m for m in letters if "dlq.truncated" in headers(m)]
    (full,) = [m for m in letters if "dlq.truncated" not in headers(m)]
    assert stub.value() == big[:STUB_VALUE_BYTES]
    assert stub.key() == b"key"
    h = headers(stub)
    assert h["dlq.truncated"] == "true"
    assert h["dlq.original.size"] == str(len(big))
    assert h["dlq.original.sha256"] == hashlib.sha256(big).hexdigest()
    assert h["dlq.reason"] == "undecodable"
    assert (h["dlq.original.partition"], h["dlq.original.offset"]) == ("3", "1")
    assert h["created-at-ms"] == "1"  # the original headers, as far as they fit the stub's budget
    kept = sum(1 for name in h if name.startswith("h"))
    assert 0 < kept <= STUB_HEADER_BYTES // 1000
    assert int(h["dlq.truncated.headers.dropped"]) == 30 - kept
    assert full.value() == small.message.value


def test_a_letter_over_the_producers_limit_goes_as_a_stub_without_a_round_trip(
    kafka_brokers: str, topics: Topics
) -> None:
    # max_message_bytes far below the value: librdkafka refuses before queuing (produce() raises).
    (delivered,) = sink(kafka_brokers, topics.dlq, max_message_bytes=1000).send([letter(1, b"v" * 200_000)])
    assert delivered.truncated is not None
    (stub,) = read_topic(kafka_brokers, topics.dlq)
    assert headers(stub)["dlq.original.size"] == "200000"


def test_a_topic_that_refuses_even_a_stub_is_fatal(kafka_brokers: str) -> None:
    name = f"test-tiny-{uuid.uuid4().hex[:10]}.dlq"
    ensure_topics(kafka_brokers, [TopicSpec(name, 1, config=(("max.message.bytes", "600"),))])
    try:
        with pytest.raises(FatalError, match="refuses even a stub letter"):
            sink(kafka_brokers, name).send([letter(1, b"v" * 5000)])
    finally:
        delete_topics(kafka_brokers, [name])


def test_unacknowledged_letters_are_named_and_the_producer_replaced() -> None:
    dead = KafkaDeadLetterSink(
        "127.0.0.1:1",
        "nowhere.dlq",
        group="g",
        version="v1",
        max_message_bytes=LIMIT,
        max_error_bytes=100,
        ack_timeout_s=1.0,
    )
    before = dead._producer
    letters = [letter(1), letter(2)]
    with pytest.raises(LettersPending, match="0/2 acknowledged") as caught:
        dead.send(letters)
    assert caught.value.pending == tuple(letters)  # exactly the unacknowledged ones, as they were
    assert dead._producer is not before  # the retry gets a fresh producer (new producer id)
