"""Plain value types that travel between the poll thread, the workers and the dead-letter sink.

The poll thread copies what it needs out of confluent-kafka's ``Message`` into ``Inbound`` so that
workers never touch Kafka objects, and so that the decision table can be tested without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from internal.domain.outcomes import Outcome
from internal.domain.reasons import DeadLetterReason


class Inbound(NamedTuple):
    """One consumed message. A NamedTuple rather than a frozen dataclass: one is made per message on
    the poll thread, and a frozen dataclass's ``__init__`` goes through a guarded ``__setattr__`` per
    field (the cost: docs/performance.md, issue 25)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, str | bytes | None], ...]
    timestamp_ms: int | None
    # Which assignment of the partition this message belongs to: a result that arrives after the
    # partition was revoked (and maybe assigned again) must not move the new assignment's offsets.
    generation: int

    @property
    def size(self) -> int:
        """Bytes of the key, value and headers: what the byte budgets of batches and in-flight work
        count."""
        size = len(self.value or b"") + len(self.key or b"")
        for name, value in self.headers:  # usually one (created-at-ms); a producer may send many
            size += len(name) + len(value or b"")
        return size


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message on its way to the dead-letter topic, with why it was refused.

    ``truncated`` is None for a full letter (the original key, value and headers). When the broker
    refused the full letter for good (too large, invalid), the sink sends a *stub* instead and the
    letter carries the refusal here: its retries then send the stub directly."""

    message: Inbound
    reason: DeadLetterReason
    error: str
    attempts: int
    truncated: str | None = None
    # What went wrong, as the console groups it (internal/domain/letter_groups.py); set where the
    # letter is made, from the structured error.
    group: str = ""
    # Where the broker put it (its delivery report): the console fetches it from there.
    dlq_partition: int = -1
    dlq_offset: int = -1


@dataclass(frozen=True, slots=True)
class BatchReport:
    """The result of one batch: an outcome per message, in the batch's order, and how many of its
    dead letters had to be sent as stubs."""

    messages: tuple[Inbound, ...]
    outcomes: tuple[Outcome, ...]
    duration_s: float = 0.0
    truncated_letters: int = 0
    # Wall-clock time (ms since the epoch) right after the stored orders were committed and handed to
    # the cache: the end of their freshness. None when the batch stored nothing.
    stored_at_ms: float | None = None
    # Letters left for the commit (transactional mode): they become visible with the commit of their
    # offsets, in one Kafka transaction. Empty in at-least-once mode, where the worker sent them.
    letters: tuple[DeadLetter, ...] = ()
