"""The error hierarchy that decides what the consumer does with a message.

Every failure the service can meet is sorted into one of three kinds, and the kind alone decides the
behaviour (docs/consumer.md has the full decision table):

* ``PermanentError`` - retrying cannot help; the message goes to the dead-letter topic with ``reason``
  and its offset is committed.
* ``TransientError`` - the world is temporarily broken (database down, broker unreachable); nothing is
  dead-lettered or committed, the work is retried with backoff while the partitions are paused.
  ``TimedOut`` is the transient error whose cause may be the batch's size: after the bounded attempts
  a batch is split, and only a single message keeps being retried.
* ``FatalError`` - continuing would do harm (schema missing, dead-letter storm, a dead-letter topic
  that refuses even a stub letter); consumption stops loudly and readiness goes down.

Transient and fatal errors carry a ``Cause`` (internal/domain/causes.py): readiness, log events
and the stop decision read the cause, never the message. Any other exception is a bug: the consumer
retries it a bounded number of times, then isolates the message and dead-letters it as
``processing_error``; one that escapes the poll loop ends the process.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from internal.domain.causes import Cause, Failure
from internal.domain.reasons import DeadLetterReason


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule of one message, located by a path such as ``items[2].price``.

    ``kind`` is the rule without this message's values ("must be the sum of items[].total_price",
    not "... = 120, got 100"): what the dead-letter console groups letters by
    (internal/domain/letter_groups.py). Empty means the message itself names the rule."""

    path: str
    message: str
    kind: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")


def location(loc: Iterable[int | str]) -> str:
    """A violation's path from its keys and indexes: ``items[2].price``, ``$`` for the document."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            path += f".{part}" if path else part
        else:
            # An unknown key is the sender's text: quote it and cut it short so a path stays one short line.
            shown = part if len(part) <= 64 else part[:64] + "..."
            path = f"{path or '$'}[{json.dumps(shown)}]"
    return path or "$"


class ServiceError(Exception):
    """Root of the errors the service raises on purpose. ``cause`` is what behaviour and public
    words follow from; the message is for the log only."""

    default_cause: ClassVar[Cause] = Cause.DATABASE_UNAVAILABLE

    def __init__(self, message: str = "", *, cause: Cause | None = None) -> None:
        super().__init__(message)
        self.cause: Cause = cause or self.default_cause


class PermanentError(ServiceError):
    """The message can never be stored; it is dead-lettered under ``reason``."""

    reason: ClassVar[DeadLetterReason] = DeadLetterReason.PROCESSING_ERROR


class UndecodableMessage(PermanentError):
    """Not one UTF-8 JSON document of acceptable size."""

    reason = DeadLetterReason.UNDECODABLE


class InvalidOrder(PermanentError):
    """Decoded, but breaks one or more rules; every violation is kept."""

    reason = DeadLetterReason.INVALID

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations: tuple[Violation, ...] = tuple(violations)
        super().__init__("; ".join(str(v) for v in self.violations))


class RecordRejected(PermanentError):
    """PostgreSQL refused a record of the batch (a constraint, a data error, a program limit such as
    a too large document): the batch is split until the record is alone, then it is dead-lettered."""

    reason = DeadLetterReason.DB_REJECTED


class TransientError(ServiceError):
    """Retry later: an outage of a dependency, not a property of the message. The readers and the
    writer are its usual source, so ``cause`` defaults to the database being unavailable; the
    dead-letter sink says otherwise (``LettersPending``)."""


class TimedOut(TransientError):
    """A dependency gave up on the work within its time budget (a statement timeout): a smaller batch
    may pass where the whole one does not."""

    default_cause = Cause.DATABASE_TIMEOUT


class FatalError(ServiceError):
    """Stop consuming: going on would dead-letter or damage data at scale. Always raised with the
    ``cause`` that names what is unusable."""

    def __init__(self, message: str, *, cause: Cause) -> None:
        super().__init__(message, cause=cause)


def failure_of(exc: BaseException, cause: Cause) -> Failure:
    """What to record of an exception that ended consumption: a service error's own cause and
    message; anything else (a bug) under ``cause``, named by its class."""
    if isinstance(exc, ServiceError):
        return Failure(exc.cause, str(exc))
    return Failure(cause, f"{type(exc).__name__}: {exc}")
