"""The seams of the consumer: what it needs from the store, the dead-letter topic, the cache and time.

Each contract is written on the protocol; the real implementations live in internal/store,
internal/consumer/dlq.py and internal/cache, and the unit tests replace them with fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from internal.consumer.messages import DeadLetter
from internal.domain.records import OrderRecord, WriteResult


class OrderStore(Protocol):
    def write_batch(self, records: Sequence[OrderRecord]) -> list[WriteResult]:
        """Store the records in ONE transaction and return a result per record, in order.

        All-or-nothing: when it raises, nothing of the batch is stored. Raises ``TransientError`` when
        the database is unavailable (retry later), ``RecordRejected`` when the database refused the
        data of some record (split the batch to find it), ``FatalError`` when the schema is unusable.
        """
        ...


class DeadLetterSink(Protocol):
    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Publish the letters and return only once the broker acknowledged every one of them.

        Raises ``TransientError`` when any letter was not acknowledged; the caller retries them all
        (the dead-letter topic is at-least-once: a retried letter may appear twice).
        """
        ...


class StoredOrderSink(Protocol):
    def put_many(self, records: Sequence[OrderRecord]) -> None:
        """Receive orders right after their transaction committed (the cache's write-through).
        Must not raise: a cache problem must never undo or hold back a durable write."""
        ...


class OutageListener(Protocol):
    def outage_started(self, reason: str) -> None:
        """A worker met a transient error and is backing off; the poll thread pauses partitions."""
        ...

    def outage_ended(self) -> None:
        """That worker's retry went through."""
        ...

    def retrying(self) -> None:
        """One more retry after a transient error is scheduled (counted for consumer_retries_total)."""
        ...
