"""The dead-letter topic: refused messages, unchanged, with headers saying why.

The original key, value and headers are kept byte for byte so that a replay (the DLQ tool) sends
exactly what the producer sent. The producer is idempotent with ``acks=all``; ``send`` returns only
after the broker acknowledged every letter, because the consumer commits the original offset next.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from internal.consumer.messages import DeadLetter
from internal.domain.errors import TransientError

# librdkafka writes its own log lines to stderr unless given a logger; through this one they become JSON
# lines like every other (internal/pkg/logging.py routes standard logging through structlog).
KAFKA_LOG = logging.getLogger("kafka")
H_REASON = "dlq.reason"
H_ERROR = "dlq.error"
H_TOPIC = "dlq.original.topic"
H_PARTITION = "dlq.original.partition"
H_OFFSET = "dlq.original.offset"
H_TIMESTAMP = "dlq.original.timestamp"
H_GROUP = "dlq.consumer.group"
H_FAILED_AT = "dlq.failed.at"
H_ATTEMPTS = "dlq.attempts"
H_VERSION = "dlq.service.version"
DLQ_HEADERS = (
    H_REASON,
    H_ERROR,
    H_TOPIC,
    H_PARTITION,
    H_OFFSET,
    H_TIMESTAMP,
    H_GROUP,
    H_FAILED_AT,
    H_ATTEMPTS,
    H_VERSION,
)


def letter_headers(
    letter: DeadLetter, group: str, version: str, max_error_bytes: int
) -> list[tuple[str, str | bytes | None]]:
    m = letter.message
    error = letter.error.encode("utf-8", "replace")
    if len(error) > max_error_bytes:
        error = error[: max_error_bytes - 3] + b"..."
    added: list[tuple[str, str | bytes | None]] = [
        (H_REASON, letter.reason.encode()),
        (H_ERROR, error),
        (H_TOPIC, m.topic.encode()),
        (H_PARTITION, str(m.partition).encode()),
        (H_OFFSET, str(m.offset).encode()),
        (H_TIMESTAMP, str(m.timestamp_ms if m.timestamp_ms is not None else -1).encode()),
        (H_GROUP, group.encode()),
        (H_FAILED_AT, datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()),
        (H_ATTEMPTS, str(letter.attempts).encode()),
        (H_VERSION, version.encode()),
    ]
    return [*m.headers, *added]


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
        max_error_bytes: int,
        ack_timeout_s: float = 30.0,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self._topic = topic
        self._group = group
        self._version = version
        self._max_error_bytes = max_error_bytes
        self._ack_timeout_s = ack_timeout_s
        self._config: dict[str, Any] = {
            "bootstrap.servers": brokers,
            "client.id": f"{group}-dlq",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": int(ack_timeout_s * 1000),
            "logger": KAFKA_LOG,
            **(extra_config or {}),
        }
        self._lock = threading.Lock()
        self._producer = Producer(self._config)

    def send(self, letters: Sequence[DeadLetter]) -> None:
        producer = self._producer
        failures: list[str] = []
        acked = [0]
        all_reported = threading.Event()

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            # May run on another worker's thread (whichever flushes); list/int updates are atomic enough
            # here because only the event below is read across threads.
            if err is None:
                acked[0] += 1
            else:
                failures.append(err.str())
            if acked[0] + len(failures) == len(letters):
                all_reported.set()

        for letter in letters:
            headers = letter_headers(letter, self._group, self._version, self._max_error_bytes)
            _produce(producer, self._topic, letter, headers, on_delivery)
        # flush() waits for every queued letter, including other workers' - fine for a low-volume topic.
        producer.flush(self._ack_timeout_s)
        # flush() can return while another thread is still running our callbacks; give them a moment.
        all_reported.wait(1.0)
        if failures or acked[0] != len(letters):
            self._replace(producer)
            raise TransientError(
                f"dead-letter topic {self._topic}: {acked[0]}/{len(letters)} acknowledged"
                + (f" ({failures[0]})" if failures else "")
            )

    def _replace(self, failed: Producer) -> None:
        with self._lock:
            if self._producer is not failed:
                return  # another worker replaced it already
            self._producer = Producer(self._config)
        failed.purge()  # what it still holds will be sent again by the retries, on the new producer
        failed.flush(0)

    def close(self, timeout_s: float) -> int:
        """Flush what is queued; returns the number of letters still undelivered."""
        remaining: int = self._producer.flush(timeout_s)
        return remaining


def _produce(
    producer: Producer,
    topic: str,
    letter: DeadLetter,
    headers: list[tuple[str, str | bytes | None]],
    on_delivery: Any,
) -> None:
    while True:
        try:
            producer.produce(
                topic,
                value=letter.message.value,
                key=letter.message.key,
                headers=headers,
                on_delivery=on_delivery,
            )
            return
        except BufferError:
            producer.poll(0.1)  # local queue full: let deliveries drain, then try again
