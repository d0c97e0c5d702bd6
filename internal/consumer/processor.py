"""One batch through the decision table: decode and validate, store, dead-letter, feed the cache.

This is where every row of docs/consumer.md's decision table is implemented; ``BatchProcessor`` runs on
a worker thread and talks to the outside only through the protocols in ``ports.py``.

| what happened                      | what this module does                              | offset      |
|------------------------------------|----------------------------------------------------|-------------|
| undecodable / invalid              | dead-letter with the reason (all violations)       | committed   |
| same uid, same content             | nothing (duplicate)                                | committed   |
| same uid, other content            | dead-letter ``conflict``; stored order stays       | committed   |
| database unavailable (transient)   | back off and retry, partitions paused              | held        |
| statement timeout                  | as transient; after ``max_attempts`` a batch of    | held        |
|                                    | several is split, a single message keeps retrying  |             |
| database refuses a record, or a    | split the batch until that record is alone;        | committed   |
| program limit (SQLSTATE class 54)  | dead-letter it ``db_rejected``, store the rest     |             |
| dead-letter not acknowledged       | back off and retry the unacknowledged letters only | held        |
| dead-letter refused for good       | send its stub instead (the sink does it)           | committed   |
| unexpected exception while storing | retry up to ``max_attempts``, then split and       | committed   |
|                                    | dead-letter ``processing_error``                   |             |
| unexpected exception while dead-   | retry up to ``max_attempts``, then ``FatalError``  | held        |
| lettering, stub refused for good   |                                                    |             |
| shutdown or revoke during a retry  | abandon the batch (``Abandoned``)                  | held        |

Within one ``process`` call no finished work is repeated: a sub-batch that was stored is not written
again when another one is retried or split, and an acknowledged letter is not sent again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import structlog

from internal.consumer.control import Abandoned, Control
from internal.consumer.messages import BatchReport, DeadLetter, Inbound
from internal.consumer.ports import (
    DeadLetterSink,
    LettersPending,
    OrderStore,
    OutageListener,
    StoredOrderSink,
)
from internal.domain.causes import Cause
from internal.domain.errors import FatalError, PermanentError, RecordRejected, TimedOut, TransientError
from internal.domain.outcomes import Outcome
from internal.domain.reasons import DeadLetterReason
from internal.domain.records import OrderRecord
from internal.domain.validation import ValidationPolicy, decode_order
from internal.pkg.backoff import Backoff

T = TypeVar("T")
log = structlog.get_logger(component="consumer")

ERROR_TEXT_CHARS = 500  # of an unexpected exception's message, in the letter's error header


@dataclass(frozen=True, slots=True)
class ProcessingPolicy:
    validation: ValidationPolicy
    backoff: Backoff
    max_attempts: int


@dataclass(frozen=True, slots=True)
class _Refused:
    outcome: Outcome
    error: str
    attempts: int


class BatchProcessor:
    def __init__(
        self,
        *,
        store: OrderStore,
        dead_letters: DeadLetterSink,
        stored_sink: StoredOrderSink,
        outage: OutageListener,
        policy: ProcessingPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._dlq = dead_letters
        self._sink = stored_sink
        self._outage = outage
        self._policy = policy
        self._clock = clock

    def process(self, batch: Sequence[Inbound], control: Control) -> BatchReport:
        """Finish every message of the batch (stored, duplicate or dead-lettered) or raise
        ``Abandoned``/``FatalError``; on return every offset of the batch may be committed."""
        started = time.perf_counter()
        outcomes: list[Outcome | None] = [None] * len(batch)
        letters: list[DeadLetter] = []
        decoded: list[tuple[int, OrderRecord]] = []
        now = self._clock()
        for index, message in enumerate(batch):
            try:
                decoded.append(
                    (index, OrderRecord.of(decode_order(message.value, self._policy.validation, now)))
                )
            except PermanentError as exc:
                outcomes[index] = Outcome.dead_letter(exc.reason)
                letters.append(DeadLetter(message, exc.reason, str(exc), attempts=1))
            except Exception as exc:  # decoding is pure: retrying cannot change the answer
                log.exception("decode_failed", **_where(message))
                outcomes[index] = Outcome.PROCESSING_ERROR
                letters.append(DeadLetter(message, DeadLetterReason.PROCESSING_ERROR, _text(exc), attempts=1))

        stored: list[OrderRecord] = []
        results = self._store_all([record for _, record in decoded], control)
        for (index, record), result in zip(decoded, results, strict=True):
            message = batch[index]
            if isinstance(result, _Refused):
                outcomes[index] = result.outcome
                letters.append(DeadLetter(message, result.outcome.reason, result.error, result.attempts))
                continue
            outcomes[index] = result
            if result is Outcome.STORED:
                stored.append(record)
            elif result is Outcome.CONFLICT:
                error = (
                    f"order_uid {record.uid!r} is already stored with different content (first write wins)"
                )
                letters.append(DeadLetter(message, DeadLetterReason.CONFLICT, error, attempts=1))

        stored_at_ms = None
        if stored:
            self._feed_cache(stored)
            stored_at_ms = self._clock().timestamp() * 1000  # committed and in the cache: visible now
        delivered = self._dead_letter(letters, control) if letters else []
        for letter in delivered:  # after the acknowledgement: each line is a fact, not an intention
            log.warning(
                "dead_lettered",
                reason=letter.reason.value,
                error=letter.error[:300],
                truncated=letter.truncated,
                **_where(letter.message),
            )
        final = tuple(o for o in outcomes if o is not None)
        assert len(final) == len(batch), "every message of a batch gets an outcome"
        truncated = sum(1 for letter in delivered if letter.truncated is not None)
        return BatchReport(tuple(batch), final, time.perf_counter() - started, truncated, stored_at_ms)

    def _store_all(
        self, records: list[OrderRecord], control: Control, isolating: int = 0
    ) -> list[Outcome | _Refused]:
        """Store the records, splitting where the verdict says so. ``isolating`` > 0: the records are
        a part of a batch that failed unexpectedly ``isolating`` times in all; such a part gets one
        attempt (the bug repeats, a glitch had its retries), so that isolating a bad record costs
        about 2 log2(n) attempts and n bad records about 2n, never max_attempts at every level."""
        if not records:
            return []
        verdict = self._store_once(records, control, isolating)
        if isinstance(verdict, tuple):  # why and after how many unexpected failures to split
            cause, failures = verdict
            log.info("batch_split", cause=cause, batch_size=len(records))
            middle = len(records) // 2
            # Halving finds one bad record in log2(n) rounds while the good ones still go in batches;
            # a half that was stored is final, only the other one goes on.
            return self._store_all(records[:middle], control, failures) + self._store_all(
                records[middle:], control, failures
            )
        return verdict

    def _store_once(
        self, records: list[OrderRecord], control: Control, isolating: int
    ) -> list[Outcome | _Refused] | tuple[str, int]:
        """The records' results, or (cause, unexpected failures so far) to split them for (only when
        there are several)."""
        attempts = 0
        several = len(records) > 1
        allowed = 1 if isolating else self._policy.max_attempts
        timeouts = [0]

        def give_up(exc: TransientError, _attempt: int) -> bool:
            # A timeout may be the batch's size: split it after max_attempts timeouts. One message
            # alone keeps being retried (a locked table passes with time; nothing is lost).
            timeouts[0] += isinstance(exc, TimedOut)
            return several and isinstance(exc, TimedOut) and timeouts[0] >= self._policy.max_attempts

        while True:
            try:
                results = self._until_done(lambda: self._store.write_batch(records), control, give_up)
            except RecordRejected as exc:
                if several:
                    return ("record_rejected", isolating)
                log.warning("record_rejected", order_uid=records[0].uid, error=str(exc)[:300])
                return [_Refused(Outcome.DB_REJECTED, str(exc), isolating + attempts + 1)]
            except TimedOut:  # only a batch of several gets here (give_up)
                return ("timed_out", isolating)
            except (FatalError, Abandoned):
                raise
            except Exception as exc:
                attempts += 1
                log.exception("store_failed_unexpectedly", attempt=attempts, batch_size=len(records))
                if attempts < allowed:
                    self._pause_before_retry(attempts, control)
                    continue
                if several:
                    return ("unexpected_error", isolating + attempts)
                return [_Refused(Outcome.PROCESSING_ERROR, _text(exc), isolating + attempts)]
            if len(results) != len(records):
                raise FatalError(
                    f"store answered {len(results)} results for {len(records)} records",
                    cause=Cause.STORE_ANSWER_MISMATCH,
                )
            return list(results)

    def _dead_letter(self, letters: list[DeadLetter], control: Control) -> list[DeadLetter]:
        """Send the letters until every one is acknowledged; return them as delivered."""
        pending = letters
        delivered: list[DeadLetter] = []

        def step() -> None:
            nonlocal pending
            try:
                delivered.extend(self._dlq.send(pending))
            except LettersPending as exc:
                delivered.extend(exc.delivered)  # done: never sent again
                pending = list(exc.pending)
                raise

        failures = 0
        while True:
            try:
                self._until_done(step, control)
                return delivered
            except (FatalError, Abandoned):
                raise
            except Exception as exc:
                # Not a refusal (the sink sorts those) but a bug: a letter that cannot be built or sent
                # cannot be dead-lettered either, so after the bounded attempts consumption stops.
                failures += 1
                log.exception("dead_letter_failed_unexpectedly", attempt=failures, letters=len(pending))
                if failures >= self._policy.max_attempts:
                    raise FatalError(
                        f"dead-lettering failed {failures} times unexpectedly ({_text(exc)})",
                        cause=Cause.DEAD_LETTERING_BUG,
                    ) from exc
                self._pause_before_retry(failures, control)

    def _feed_cache(self, stored: list[OrderRecord]) -> None:
        try:
            self._sink.put_many(stored)
        except Exception:  # the contract says it never raises; a durable write must not be undone by it
            log.exception("cache_feed_failed", orders=len(stored))

    def _pause_before_retry(self, attempt: int, control: Control) -> None:
        if not control.wanted():
            raise Abandoned
        control.sleep(self._policy.backoff.delay(attempt))

    def _until_done(
        self,
        step: Callable[[], T],
        control: Control,
        give_up: Callable[[TransientError, int], bool] = lambda _exc, _attempt: False,
    ) -> T:
        """Run ``step`` until it stops raising TransientError, backing off in between; re-raise the
        error when ``give_up(error, attempts so far)`` says so.

        A stop or revoke abandons the batch only between retries: a first attempt always runs, so a
        graceful stop lets in-flight batches finish (and be committed) while the database is healthy.
        """
        attempt = 0
        try:
            while True:
                if attempt and not control.wanted():
                    raise Abandoned
                try:
                    return step()
                except TransientError as exc:
                    attempt += 1
                    if give_up(exc, attempt):
                        raise
                    delay = self._policy.backoff.delay(attempt)
                    if attempt == 1:
                        self._outage.outage_started(exc.cause)
                    self._outage.retrying()
                    log.warning(
                        "transient_error",
                        error=str(exc),
                        cause=exc.cause.value,
                        attempt=attempt,
                        retry_in_s=round(delay, 3),
                    )
                    control.sleep(delay)
        finally:
            if attempt:
                self._outage.outage_ended()


def _text(exc: BaseException) -> str:
    """An unexpected exception for a letter's error header: its class and a bounded message."""
    return f"{type(exc).__name__}: {str(exc)[:ERROR_TEXT_CHARS]}"


def _where(message: Inbound) -> dict[str, object]:
    """The fields every message-level log line carries (order_uid when the key holds it)."""
    uid = message.key.decode("utf-8", "replace") if message.key else None
    return {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "order_uid": uid,
    }
