"""Producing one message, with librdkafka's errors sorted once into what the caller should do.

Three programs produce: the service's dead-letter sink, the producer CLI and the replay tool. They
all meet the same three kinds of trouble, and all of them sort it here, by librdkafka error code:

* **queue full** - the local queue is at ``queue.buffering.max.messages``/``kbytes``: serve delivery
  reports (``poll``) and try again; ``produce`` here does that, for at most ``max_wait_s``;
* **permanent** - the broker or the client refuses *this message* and always will (too large, an
  invalid record, a topic that does not exist or may not be written): sending it again is pointless,
  the caller must do something else (the sink sends a stub letter, the tools count a failure);
* **retriable** - everything else (timeouts, a broker away, a leader moving, a producer fenced): the
  same message may go through later.

A refusal can come at two moments: ``produce()`` itself raises (the client checks size and topic
before queuing), or the delivery report carries the error. ``classify`` sorts both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException

Headers = list[tuple[str, str | bytes | None]]
OnDelivery = Callable[[KafkaError | None, Any], None]


class ProduceErrorKind(Enum):
    QUEUE_FULL = "queue_full"
    RETRIABLE = "retriable"
    PERMANENT = "permanent"


# Refusals that no retry can change: about the message itself (size, format) or about the destination
# (missing topic, no permission, a broker policy). The codes are librdkafka's (broker codes >= 0,
# client-local codes < 0).
PERMANENT_CODES: frozenset[int] = frozenset(
    {
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_REQUIRED_ACKS,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        KafkaError.POLICY_VIOLATION,
        KafkaError.INVALID_RECORD,
        KafkaError._INVALID_ARG,
        KafkaError._INVALID_TYPE,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._KEY_SERIALIZATION,
        KafkaError._VALUE_SERIALIZATION,
    }
)


def classify(error: KafkaError) -> ProduceErrorKind:
    code = error.code()
    if code == KafkaError._QUEUE_FULL:
        return ProduceErrorKind.QUEUE_FULL
    if code in PERMANENT_CODES:
        return ProduceErrorKind.PERMANENT
    return ProduceErrorKind.RETRIABLE


class ProduceError(Exception):
    """``produce()`` did not queue the message: ``kind`` says whether trying again can help."""

    def __init__(self, error: KafkaError, kind: ProduceErrorKind) -> None:
        super().__init__(describe(error))
        self.error = error
        self.kind = kind

    @property
    def permanent(self) -> bool:
        return self.kind is ProduceErrorKind.PERMANENT


def describe(error: KafkaError) -> str:
    """One line for logs, headers and operators: the code's name and librdkafka's text."""
    return f"{error.name()}: {error.str()}"


def failure_text(error: KafkaError) -> str:
    """A delivery failure as the tools print it: the error and whether a retry can help."""
    if classify(error) is ProduceErrorKind.PERMANENT:
        return f"{describe(error)} (refused for good: sending it again will not help)"
    return describe(error)


class ProducerLike(Protocol):
    """The part of confluent_kafka.Producer used here, so that tests can stand in for it."""

    def produce(
        self,
        topic: str,
        value: bytes | None = ...,
        key: bytes | None = ...,
        *,
        on_delivery: OnDelivery | None = ...,
        headers: Headers | None = ...,
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...


def produce(
    producer: ProducerLike,
    topic: str,
    *,
    value: bytes | None,
    key: bytes | None,
    headers: Headers,
    on_delivery: OnDelivery,
    max_wait_s: float | None = None,
) -> None:
    """Queue one message; while the local queue is full, serve deliveries and try again.

    Raises ``ProduceError`` when the message is refused before queuing (``permanent`` tells whether
    it can ever be sent) or when the queue stayed full for ``max_wait_s`` (None: as long as it takes;
    the queue drains as deliveries succeed or time out after ``message.timeout.ms``).
    """
    deadline = None if max_wait_s is None else time.monotonic() + max_wait_s
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            if deadline is not None and time.monotonic() >= deadline:
                full = KafkaError(KafkaError._QUEUE_FULL, "local queue full")
                raise ProduceError(full, classify(full)) from None
            producer.poll(0.1)  # serve delivery reports so that the queue drains, then try again
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None:
                error = KafkaError(KafkaError._FAIL, str(exc))
            raise ProduceError(error, classify(error)) from None
