"""The dead-letter sink: refused messages to the dead-letter topic, acknowledged before their commit.

The producer is idempotent with ``acks=all``; ``send`` returns only after the broker acknowledged
every letter, because the consumer commits the original offsets next. Its ``message.max.bytes`` is
the largest full letter (letters.py); a letter the broker refuses for good is tried once alone, then
sent as a stub, in the same call, so a permanent refusal never comes back as a retry. What was
acknowledged is never sent again: a failed call names the letters still pending, and only those are
retried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer

from internal.consumer.letters import LETTER_FRAMING, letter_max_bytes, wire_form
from internal.consumer.messages import DeadLetter
from internal.consumer.ports import LettersPending
from internal.domain.causes import Cause
from internal.domain.errors import FatalError
from internal.pkg.kafka_produce import (
    ProduceError,
    ProduceErrorKind,
    ProducerLike,
    classify,
    describe,
    produce,
)
from internal.pkg.logging import KAFKA_LOG

POLL_S = 0.05  # one wait for delivery reports
BATCH_BYTES = 64 * 1024


@dataclass
class _Sent:
    """One letter of one ``send`` call: the form it was sent in and how its delivery went."""

    letter: DeadLetter
    done: bool = False
    error: KafkaError | None = None
    local: bool = False  # refused by produce() itself, before queuing
    partition: int = -1  # where the broker put it (the delivery report)
    offset: int = -1

    def placed(self) -> DeadLetter:
        """The letter as delivered, with its place in the dead-letter topic."""
        return replace(self.letter, dlq_partition=self.partition, dlq_offset=self.offset)


class SinkProducer(ProducerLike, Protocol):
    """The part of confluent_kafka.Producer the sink uses, so that unit tests can stand in for it."""

    def flush(self, timeout: float) -> int: ...
    def purge(self, in_queue: bool = ..., in_flight: bool = ...) -> None: ...


class KafkaDeadLetterSink:
    """Implements ``internal.consumer.ports.DeadLetterSink``; shared by all workers (thread-safe).

    When letters time out unacknowledged (the broker was away), the producer is replaced before the
    retry: seen in the chaos suite, an idempotent librdkafka producer whose messages timed out during
    a broker restart could keep timing out new messages for minutes afterwards, while a fresh producer
    (new producer id) delivers at once.
    """

    def __init__(
        self,
        brokers: str,
        topic: str,
        *,
        group: str,
        version: str,
        max_message_bytes: int,
        max_error_bytes: int,
        ack_timeout_s: float = 30.0,
        extra_config: dict[str, Any] | None = None,
        producer_factory: Callable[[dict[str, Any]], SinkProducer] = Producer,
    ) -> None:
        self._topic = topic
        self._group = group
        self._version = version
        self._max_error_bytes = max_error_bytes
        self._ack_timeout_s = ack_timeout_s
        letter_max = letter_max_bytes(max_message_bytes, max_error_bytes)
        self._config: dict[str, Any] = {
            "bootstrap.servers": brokers,
            "client.id": f"{group}-dlq",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.max.bytes": letter_max,
            # A letter larger than this travels in a record batch of its own, so the broker's verdict
            # on its size is about it alone (a batch is refused or accepted as a whole).
            "batch.size": min(BATCH_BYTES, letter_max),
            "message.timeout.ms": int(ack_timeout_s * 1000),
            "logger": KAFKA_LOG,
            **(extra_config or {}),
        }
        self._lock = threading.Lock()
        self._new_producer = producer_factory
        self._producer = producer_factory(self._config)

    def send(self, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
        """Publish the letters; return them as delivered (stubs marked ``truncated``) once the broker
        acknowledged every one. Raises ``LettersPending`` naming the unacknowledged ones (and those
        acknowledged so far), and ``FatalError`` when the topic refuses even a stub (it is missing,
        forbidden or misconfigured)."""
        producer = self._producer
        sent = self._publish(producer, [_Sent(letter) for letter in letters])
        for i, first in enumerate(sent):
            if first.error is None or not _permanent(first.error) or first.letter.truncated is not None:
                continue
            last = first
            if not first.local and _letter_bytes(first.letter) <= BATCH_BYTES:
                # The broker judges a whole record batch, and a small letter may have shared one with
                # others (other workers share this producer): it is tried once alone first. A larger
                # letter travelled alone already; one refused before queuing would be refused again.
                (last,) = self._publish(producer, [_Sent(first.letter)])
            if last.error is not None and _permanent(last.error):
                stub = replace(first.letter, truncated=describe(last.error))
                (last,) = self._publish(producer, [_Sent(stub)])
            sent[i] = last
        for s in sent:
            if s.error is not None and _permanent(s.error):  # a stub, refused for good as well
                raise FatalError(
                    f"dead-letter topic {self._topic} refuses even a stub letter ({describe(s.error)}): "
                    "check that it exists, may be written and allows messages of 32 KB at least; "
                    "see docs/runbook.md#dlq-refuses",
                    cause=Cause.DEAD_LETTER_REFUSED,
                )
        pending = [s.letter for s in sent if not s.done]
        if pending:
            self._replace(producer)
            why = next((describe(s.error) for s in sent if s.error is not None), "no acknowledgement")
            raise LettersPending(
                f"dead-letter topic {self._topic}: {len(sent) - len(pending)}/{len(sent)} acknowledged "
                f"({why})",
                pending,
                delivered=[s.placed() for s in sent if s.done],
            )
        return [s.placed() for s in sent]

    def _publish(self, producer: SinkProducer, sent: list[_Sent]) -> list[_Sent]:
        """Queue every letter in its form and wait for their own delivery reports (not for the
        other workers' letters in the shared queue), at most ``ack_timeout_s``."""
        lock = threading.Lock()
        outstanding = [0]

        for s in sent:

            def on_delivery(err: KafkaError | None, msg: Message, s: _Sent = s) -> None:
                # May run on another worker's thread (whichever polls the shared producer).
                s.done, s.error = err is None, err
                if err is None and msg is not None:  # unit tests' fake producers report no message
                    s.partition, s.offset = msg.partition() or 0, msg.offset() or 0
                with lock:
                    outstanding[0] -= 1

            value, key, headers = wire_form(s.letter, self._group, self._version, self._max_error_bytes)
            try:
                produce(
                    producer,
                    self._topic,
                    value=value,
                    key=key,
                    headers=headers,
                    on_delivery=on_delivery,
                    max_wait_s=self._ack_timeout_s,
                )
            except ProduceError as exc:  # refused before queuing: no delivery report will come
                s.done, s.error, s.local = False, exc.error, True
                continue
            with lock:
                outstanding[0] += 1
        deadline = time.monotonic() + self._ack_timeout_s
        while True:
            with lock:
                if outstanding[0] <= 0:
                    break
            if time.monotonic() >= deadline:
                break
            producer.poll(POLL_S)  # serves whichever reports are due, ours or another worker's
        return sent

    def _replace(self, failed: SinkProducer) -> None:
        with self._lock:
            if self._producer is not failed:
                return  # another worker replaced it already
            self._producer = self._new_producer(self._config)
        # Letters still queued were never sent: purge them (their senders retry them on the new
        # producer). Letters in flight may be written already: they are left to finish, so that no
        # other worker's letter is sent twice.
        failed.purge(in_queue=True, in_flight=False)
        failed.poll(0)

    def close(self, timeout_s: float) -> int:
        """Flush what is queued; returns the number of letters still undelivered."""
        remaining: int = self._producer.flush(timeout_s)
        return remaining


def _letter_bytes(letter: DeadLetter) -> int:
    return letter.message.size + len(letter.error) + LETTER_FRAMING


def _permanent(error: KafkaError) -> bool:
    return classify(error) is ProduceErrorKind.PERMANENT
