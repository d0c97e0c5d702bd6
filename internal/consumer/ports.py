"""The seams of the consumer: what it needs from the store, the dead-letter topic, the cache, Kafka
and the batch handler.

Each contract is written on the protocol; the real implementations live in internal/store,
internal/consumer/dlq.py and internal/cache, and the unit tests replace them with fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, overload

from confluent_kafka import KafkaError, TopicPartition

from internal.consumer.control import Control
from internal.consumer.messages import BatchReport, DeadLetter, Inbound
from internal.domain.causes import Cause
from internal.domain.errors import TransientError
from internal.domain.outcomes import Outcome
from internal.domain.records import OrderRecord


class OrderStore(Protocol):
    def write_batch(self, records: Sequence[OrderRecord]) -> list[Outcome]:
        """Store the records in ONE transaction and return an outcome per record, in order:
        ``STORED``, ``DUPLICATE`` (same uid, same content) or ``CONFLICT`` (same uid, other content).

        All-or-nothing: when it raises, nothing of the batch is stored. Raises ``TransientError`` when
        the database is unavailable (retry later; ``TimedOut`` when it gave up on the statement, which
        a smaller batch may pass), ``RecordRejected`` when the database refused the data of some record
        or hit a program limit (split the batch to find it), ``FatalError`` when the schema is unusable.
        """
        ...


class LettersPending(TransientError):
    """Some letters were not acknowledged; ``pending`` are exactly those, in the form to send next (a
    letter the broker refused for good comes back as its stub). The acknowledged ones are done."""

    def __init__(
        self, message: str, pending: Sequence[DeadLetter], delivered: Sequence[DeadLetter] = ()
    ) -> None:
        super().__init__(message, cause=Cause.DEAD_LETTER_UNACKNOWLEDGED)
        self.pending: tuple[DeadLetter, ...] = tuple(pending)
        self.delivered: tuple[DeadLetter, ...] = tuple(delivered)  # acknowledged in this attempt


class DeadLetterSink(Protocol):
    def send(self, letters: Sequence[DeadLetter]) -> Sequence[DeadLetter]:
        """Publish the letters and return only once the broker acknowledged every one of them; the
        result is the letters as delivered (a stub, ``truncated`` set, where the full letter was
        refused for good: a permanent refusal is never retried as if it could succeed).

        Raises ``LettersPending`` naming the letters not acknowledged (only those are retried) and
        those that were: an acknowledged letter is never sent again by a retry. A crash between the
        acknowledgement and the commit, or a stop or revoke that abandons the batch, can still repeat
        it: the dead-letter topic is at-least-once. Raises ``FatalError``
        when the topic cannot take even a stub letter.
        """
        ...


class LetterIndex(Protocol):
    def record(self, letters: Sequence[DeadLetter]) -> None:
        """Note acknowledged letters in the read model the console pages read
        (internal/store/dead_letters.py), idempotently: a letter recorded twice is one row. Raises
        ``TransientError`` while the database is away (the caller retries it)."""
        ...


class DriftWatch(Protocol):
    """The drift guard (internal/consumer/drift.py) as the batch processor uses it."""

    def admit(self, groups: Sequence[str | None]) -> object | None:
        """None: the batch (a group per message that is to be dead-lettered, else None) may go on;
        else the guard tripped and the batch must be held. Any thread; never blocks."""
        ...

    def tripped(self) -> object | None:
        """Not None while tripped (until an operator resumes)."""
        ...


class StoredOrderSink(Protocol):
    def put_many(self, records: Sequence[OrderRecord]) -> None:
        """Receive orders right after their transaction committed (the cache's write-through).
        Must not raise: a cache problem must never undo or hold back a durable write."""
        ...


class OutageListener(Protocol):
    def outage_started(self, cause: Cause) -> None:
        """A worker met a transient error of ``cause`` and is backing off; the poll thread pauses
        partitions. Called on a worker thread; must not block or raise."""
        ...

    def outage_ended(self) -> None:
        """That worker's retry went through (or it gave up). Worker thread; must not block or raise."""
        ...

    def retrying(self) -> None:
        """One more retry after a transient error is scheduled (counted for consumer_retries_total)."""
        ...


class KafkaMessage(Protocol):
    """The part of confluent_kafka.Message the poll loop reads."""

    def error(self) -> KafkaError | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(
        self,
    ) -> dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None: ...
    def timestamp(self) -> tuple[int, int]: ...


RebalanceCallback = Callable[[Any, list[TopicPartition]], None]


class KafkaConsumer(Protocol):
    """The part of confluent_kafka.Consumer the poll loop uses, all of it on the poll thread.

    Rebalance callbacks (``on_assign``/``on_revoke``/``on_lost``) and the ``on_commit`` callback of
    the consumer's configuration run inside ``consume``, on the same thread."""

    def subscribe(
        self,
        topics: list[str],
        *,
        on_assign: RebalanceCallback | None = ...,
        on_revoke: RebalanceCallback | None = ...,
        on_lost: RebalanceCallback | None = ...,
    ) -> None: ...
    def consume(self, num_messages: int = ..., timeout: float = ...) -> Sequence[KafkaMessage]: ...
    @overload
    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[True] = ...) -> None: ...
    @overload
    def commit(
        self, *, offsets: list[TopicPartition], asynchronous: Literal[False]
    ) -> list[TopicPartition]: ...
    def assign(self, partitions: list[TopicPartition]) -> None: ...
    def assignment(self) -> list[TopicPartition]: ...
    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...
    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int]: ...
    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]: ...
    def seek(self, partition: TopicPartition) -> None: ...
    def consumer_group_metadata(self) -> Any: ...
    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]: ...
    def close(self) -> None: ...


class BatchHandler(Protocol):
    def process(self, batch: Sequence[Inbound], control: Control) -> BatchReport:
        """Finish every message of the batch - stored, duplicate or dead-lettered - and report an
        outcome per message, or raise ``Abandoned`` (shutdown or revoke during a retry: nothing of it
        may be committed) or ``FatalError`` (stop consuming). Anything else it raises is a bug, and
        the poll loop ends the process (``BatchProcessor`` is built so that nothing else escapes)."""
        ...
