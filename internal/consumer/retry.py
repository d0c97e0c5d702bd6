"""The batch processor's retries as one policy: what to do after each failure of a step.

A step (writing a batch, sending its dead letters) runs under ``attempt``: until it succeeds, or the
policy's ``Verdict`` for a failure is other than ``RETRY``. The verdicts, by error (docs/consumer.md's
decision table):

| failure of a batch write                | verdict                                                    |
|-----------------------------------------|------------------------------------------------------------|
| ``TransientError`` (an outage)          | RETRY for as long as it lasts, partitions paused           |
| ``TimedOut``                            | as transient; SPLIT a batch of several after max_attempts  |
| ``RecordRejected``                      | SPLIT a batch of several; REFUSE a lone record             |
| anything else (a bug)                   | RETRY up to the allowed attempts, then SPLIT, or REFUSE    |
|                                         | a lone record                                              |

| failure of sending dead letters         | verdict                                                    |
|-----------------------------------------|------------------------------------------------------------|
| ``TransientError`` (unacknowledged)     | RETRY for as long as it lasts, partitions paused           |
| anything else (a bug)                   | RETRY up to max_attempts, then STOP (a fatal error)        |

``FatalError`` and ``Abandoned`` are never judged: they end the step at once. A stop or revoke abandons
the step only between retries (``Abandoned``): a first attempt always runs, so a graceful stop lets
in-flight batches finish while the database is healthy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

import structlog

from internal.consumer.control import Abandoned, Control
from internal.consumer.ports import OutageListener
from internal.domain.errors import FatalError, RecordRejected, TimedOut, TransientError
from internal.pkg.backoff import Backoff

T = TypeVar("T")
log = structlog.get_logger(component="consumer")


class Verdict(Enum):
    DONE = "done"  # the step succeeded (only in an ``Attempt``)
    RETRY = "retry"  # back off and run the step again
    SPLIT = "split"  # halve the batch and go on with each half
    REFUSE = "refuse"  # dead-letter the lone record
    STOP = "stop"  # stop consuming (the caller raises the FatalError)


@dataclass(slots=True)
class Tally:
    """The failures of one step so far."""

    transient: int = 0  # transient errors in a row: the backoff's attempt number
    timeouts: int = 0  # TimedOut, in all
    unexpected: int = 0  # anything else (a bug), in all

    def count(self, error: Exception) -> None:
        if isinstance(error, TransientError):
            self.transient += 1
            self.timeouts += isinstance(error, TimedOut)
        else:
            self.unexpected += 1
            self.transient = 0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    backoff: Backoff
    max_attempts: int  # unexpected failures allowed per step; timeouts before a batch of several splits

    def judge_write(self, error: Exception, tally: Tally, *, several: bool, allowed: int) -> Verdict:
        """The verdict on a failed batch write; ``allowed``: unexpected failures allowed (1 while
        isolating a bad record: the bug repeats, a glitch had its retries)."""
        if isinstance(error, RecordRejected):
            return Verdict.SPLIT if several else Verdict.REFUSE
        if isinstance(error, TimedOut) and several and tally.timeouts >= self.max_attempts:
            return Verdict.SPLIT  # the batch's size may be the cause; one message alone keeps retrying
        if isinstance(error, TransientError):
            return Verdict.RETRY
        if tally.unexpected < allowed:
            return Verdict.RETRY
        return Verdict.SPLIT if several else Verdict.REFUSE

    def judge_dead_letters(self, error: Exception, tally: Tally) -> Verdict:
        """The verdict on failed dead-lettering: a letter that cannot be sent after the bounded
        attempts cannot be dead-lettered either, so consumption stops."""
        if isinstance(error, TransientError) or tally.unexpected < self.max_attempts:
            return Verdict.RETRY
        return Verdict.STOP

    def delay(self, error: Exception, tally: Tally) -> float:
        return self.backoff.delay(tally.transient if isinstance(error, TransientError) else tally.unexpected)


@dataclass(frozen=True, slots=True)
class Attempt(Generic[T]):
    """How a step ended: ``DONE`` with its ``value``, or the verdict on its last ``error``."""

    verdict: Verdict
    tally: Tally
    value: T | None = None
    error: Exception | None = None


def attempt(
    step: Callable[[], T],
    judge: Callable[[Exception, Tally], Verdict],
    policy: RetryPolicy,
    control: Control,
    outage: OutageListener,
) -> Attempt[T]:
    """Run ``step`` until it succeeds or ``judge`` answers other than RETRY. Blocks (backing off) for
    as long as an outage lasts; raises ``Abandoned`` when the batch is no longer wanted between retries,
    and lets ``FatalError`` and ``Abandoned`` through. While transient errors repeat, the outage
    listener is told (the poll thread pauses the partitions), and told the end however the step ends."""
    outages = _Outage(outage)
    tally = Tally()
    try:
        while True:
            try:
                return Attempt(Verdict.DONE, tally, value=step())
            except (FatalError, Abandoned):
                raise
            except Exception as exc:
                tally.count(exc)
                verdict = judge(exc, tally)
                if verdict is not Verdict.RETRY:
                    return Attempt(verdict, tally, error=exc)
                delay = policy.delay(exc, tally)
                outages.retrying(exc, tally, delay)
            if not control.wanted():
                raise Abandoned
            control.sleep(delay)
            if not control.wanted():
                raise Abandoned
    finally:
        outages.end()


class _Outage:
    """Tells the listener an outage's start, each retry and its end: once each, however it ends."""

    def __init__(self, listener: OutageListener) -> None:
        self._listener = listener
        self._on = False

    def retrying(self, exc: Exception, tally: Tally, delay: float) -> None:
        if not isinstance(exc, TransientError):
            self.end()  # a bug after an outage: the outage is over
            return
        if not self._on:
            self._listener.outage_started(exc.cause)
            self._on = True
        self._listener.retrying()
        log.warning(
            "transient_error",
            error=str(exc),
            cause=exc.cause.value,
            attempt=tally.transient,
            retry_in_s=round(delay, 3),
        )

    def end(self) -> None:
        if self._on:
            self._listener.outage_ended()
            self._on = False
