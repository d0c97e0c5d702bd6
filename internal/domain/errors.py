"""The error hierarchy that decides what the consumer does with a message.

Every failure the service can meet is sorted into one of three kinds, and the kind alone decides the
behaviour (docs/consumer.md has the full decision table):

* ``PermanentError`` - retrying cannot help; the message goes to the dead-letter topic with ``reason``
  and its offset is committed.
* ``TransientError`` - the world is temporarily broken (database down, broker unreachable); nothing is
  dead-lettered or committed, the work is retried with backoff while the partitions are paused.
* ``FatalError`` - continuing would do harm (schema missing, dead-letter storm); consumption stops
  loudly and readiness goes down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule of one message, located by a path such as ``items[2].price``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ServiceError(Exception):
    """Root of the errors the service raises on purpose."""


class PermanentError(ServiceError):
    """The message can never be stored; it is dead-lettered under ``reason``."""

    reason: ClassVar[str] = "processing_error"


class UndecodableMessage(PermanentError):
    """Not one UTF-8 JSON document of acceptable size."""

    reason = "undecodable"


class InvalidOrder(PermanentError):
    """Decoded, but breaks one or more rules; every violation is kept."""

    reason = "invalid"

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations: tuple[Violation, ...] = tuple(violations)
        super().__init__("; ".join(str(v) for v in self.violations))


class OrderConflict(PermanentError):
    """An order with this ``order_uid`` is already stored with different content (first write wins)."""

    reason = "conflict"


class RecordRejected(PermanentError):
    """PostgreSQL refused this one record (a constraint or data error) while accepting the others."""

    reason = "db_rejected"


class ProcessingFailed(PermanentError):
    """An unexpected exception kept happening for this message after the bounded number of attempts."""

    reason = "processing_error"


class TransientError(ServiceError):
    """Retry later: an outage of a dependency, not a property of the message."""


class FatalError(ServiceError):
    """Stop consuming: going on would dead-letter or damage data at scale."""
