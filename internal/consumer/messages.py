"""Plain value types that travel between the poll thread, the workers and the dead-letter sink.

The poll thread copies what it needs out of confluent-kafka's ``Message`` into ``Inbound`` so that
workers never touch Kafka objects, and so that the decision table can be tested without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class Inbound:
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


class Outcome(Enum):
    """What happened to one message; every outcome except ``retry`` lets its offset be committed."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    INVALID = "invalid"
    UNDECODABLE = "undecodable"
    DB_REJECTED = "db_rejected"
    PROCESSING_ERROR = "processing_error"

    @property
    def dead_lettered(self) -> bool:
        return self not in (Outcome.STORED, Outcome.DUPLICATE)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message on its way to the dead-letter topic, with why it was refused."""

    message: Inbound
    reason: str
    error: str
    attempts: int


@dataclass(frozen=True, slots=True)
class BatchReport:
    """The result of one batch: an outcome per message, in the batch's order."""

    messages: tuple[Inbound, ...]
    outcomes: tuple[Outcome, ...]
    duration_s: float = 0.0
