"""The dead-letter topic: refused messages, unchanged, with headers saying why.

The original key, value and headers are kept byte for byte so that a replay (the DLQ tool) sends
exactly what the producer sent. The producer is idempotent with ``acks=all``; ``send`` returns only
after the broker acknowledged every letter, because the consumer commits the original offset next.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from internal.consumer.messages import DeadLetter
from internal.domain.errors import TransientError

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
    """Implements ``internal.consumer.ports.DeadLetterSink``; shared by all workers (thread-safe)."""

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
        self._producer = Producer(
            {
                "bootstrap.servers": brokers,
                "client.id": f"{group}-dlq",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": int(ack_timeout_s * 1000),
                **(extra_config or {}),
            }
        )

    def send(self, letters: Sequence[DeadLetter]) -> None:
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
            self._produce(letter, headers, on_delivery)
        # flush() waits for every queued letter, including other workers' - fine for a low-volume topic.
        self._producer.flush(self._ack_timeout_s)
        # flush() can return while another thread is still running our callbacks; give them a moment.
        all_reported.wait(1.0)
        if failures or acked[0] != len(letters):
            raise TransientError(
                f"dead-letter topic {self._topic}: {acked[0]}/{len(letters)} acknowledged"
                + (f" ({failures[0]})" if failures else "")
            )

    def _produce(
        self, letter: DeadLetter, headers: list[tuple[str, str | bytes | None]], on_delivery: Any
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    value=letter.message.value,
                    key=letter.message.key,
                    headers=headers,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                self._producer.poll(0.1)  # local queue full: let deliveries drain, then try again

    def close(self, timeout_s: float) -> int:
        """Flush what is queued; returns the number of letters still undelivered."""
        remaining: int = self._producer.flush(timeout_s)
        return remaining
