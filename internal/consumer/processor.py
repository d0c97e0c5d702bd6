"""One batch through the decision table: decode and validate, store, dead-letter, feed the cache.

This is where every row of docs/consumer.md's decision table is implemented; ``BatchProcessor`` runs on
a worker thread and talks to the outside only through the protocols in ``ports.py``. When to retry,
split, refuse or stop is one policy (``RetryPolicy``, retry.py); a write ends in a typed
``WriteResult`` (every record's outcome, or split).

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
from typing import NamedTuple

import structlog

from internal.consumer.control import Abandoned, Control
from internal.consumer.messages import BatchReport, DeadLetter, Inbound
from internal.consumer.ports import (
    DeadLetterSink,
    DriftWatch,
    LetterIndex,
    LettersPending,
    OrderStore,
    OutageListener,
    StoredOrderSink,
)
from internal.consumer.retry import RetryPolicy, Tally, Verdict, attempt
from internal.domain.causes import Cause
from internal.domain.errors import (
    FatalError,
    InvalidOrder,
    PermanentError,
    RecordRejected,
    TimedOut,
    TransientError,
)
from internal.domain.letter_groups import group_key
from internal.domain.outcomes import Outcome
from internal.domain.reasons import DeadLetterReason
from internal.domain.records import OrderRecord
from internal.domain.validation import ValidationPolicy, decode_order

log = structlog.get_logger(component="consumer")

ERROR_TEXT_CHARS = 500  # of an unexpected exception's message, in the letter's error header
DRIFT_HOLD_POLL_S = 0.5  # how often a batch held by the drift guard looks whether it was resumed


@dataclass(frozen=True, slots=True)
class ProcessingPolicy:
    validation: ValidationPolicy
    retry: RetryPolicy


class Written(NamedTuple):
    """What became of one record of a write: its outcome and, when it is to be dead-lettered because
    the database refused it or a bug kept it out, why and after how many attempts. One per record:
    a NamedTuple, cheaper to make than a frozen dataclass."""

    outcome: Outcome
    error: str = ""
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The typed result of one write of a batch (no retries left to decide): either every record's
    ``written``, or ``split`` - halve the batch, because of ``split_cause``, with ``failures``
    unexpected failures so far."""

    written: tuple[Written, ...] = ()
    split_cause: str | None = None
    failures: int = 0

    @property
    def split(self) -> bool:
        return self.split_cause is not None


class BatchProcessor:
    def __init__(
        self,
        *,
        store: OrderStore,
        dead_letters: DeadLetterSink | None,
        stored_sink: StoredOrderSink,
        outage: OutageListener,
        policy: ProcessingPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        drift: DriftWatch | None = None,
        letter_index: LetterIndex | None = None,
    ) -> None:
        self._drift = drift
        self._index = letter_index
        self._store = store
        self._dlq = dead_letters
        self._sink = stored_sink
        self._outage = outage
        self._policy = policy
        self._clock = clock
        # No sink (transactional mode): the letters are computed here but sent by the commit, in the
        # Kafka transaction that commits their offsets (commits.py); the batch finishes without them.
        self._letters_at_commit = dead_letters is None

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
                violations = exc.violations if isinstance(exc, InvalidOrder) else ()
                group = group_key(exc.reason, violations, str(exc))
                letters.append(_letter(message, exc.reason, str(exc), 1, group))
            except Exception as exc:  # decoding is pure: retrying cannot change the answer
                log.exception("decode_failed", **_where(message))
                outcomes[index] = Outcome.PROCESSING_ERROR
                letters.append(_letter(message, DeadLetterReason.PROCESSING_ERROR, _text(exc), 1))

        stored: list[OrderRecord] = []
        results = self._store_all([record for _, record in decoded], control)
        for (index, record), result in zip(decoded, results, strict=True):
            message = batch[index]
            outcomes[index] = result.outcome
            if result.outcome is Outcome.STORED:
                stored.append(record)
            elif result.outcome is Outcome.CONFLICT:
                error = (
                    f"order_uid {record.uid!r} is already stored with different content (first write wins)"
                )
                letters.append(_letter(message, DeadLetterReason.CONFLICT, error, 1))
            elif result.outcome.dead_lettered:
                letters.append(_letter(message, result.outcome.reason, result.error, result.attempts))

        stored_at_ms = None
        if stored:
            self._feed_cache(stored)
            stored_at_ms = self._clock().timestamp() * 1000  # committed and in the cache: visible now
        if self._drift is not None:
            self._hold_while_drifting(self._drift, batch, letters, control)
        if self._letters_at_commit:
            final = tuple(o for o in outcomes if o is not None)
            assert len(final) == len(batch), "every message of a batch gets an outcome"
            return BatchReport(
                tuple(batch), final, time.perf_counter() - started, 0, stored_at_ms, tuple(letters)
            )
        delivered = self._dead_letter(letters, control) if letters else []
        if delivered and self._index is not None:
            self._record(self._index, delivered, control)
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

    def _store_all(self, records: list[OrderRecord], control: Control, isolating: int = 0) -> list[Written]:
        """Store the records, splitting where the policy says so. ``isolating`` > 0: the records are
        a part of a batch that failed unexpectedly ``isolating`` times in all; such a part gets one
        attempt (the bug repeats, a glitch had its retries), so that isolating a bad record costs
        about 2 log2(n) attempts and n bad records about 2n, never max_attempts at every level."""
        if not records:
            return []
        result = self._write(records, control, isolating)
        if result.split:
            log.info("batch_split", cause=result.split_cause, batch_size=len(records))
            middle = len(records) // 2
            # Halving finds one bad record in log2(n) rounds while the good ones still go in batches;
            # a half that was stored is final, only the other one goes on.
            return self._store_all(records[:middle], control, result.failures) + self._store_all(
                records[middle:], control, result.failures
            )
        return list(result.written)

    def _write(self, records: list[OrderRecord], control: Control, isolating: int) -> WriteResult:
        """One write of the records under the retry policy, to its typed result."""
        several = len(records) > 1
        allowed = 1 if isolating else self._policy.retry.max_attempts

        def judge(exc: Exception, tally: Tally) -> Verdict:
            if not isinstance(exc, TransientError | RecordRejected):
                log.exception("store_failed_unexpectedly", attempt=tally.unexpected, batch_size=len(records))
            return self._policy.retry.judge_write(exc, tally, several=several, allowed=allowed)

        done = attempt(
            lambda: self._store.write_batch(records), judge, self._policy.retry, control, self._outage
        )
        failures = done.tally.unexpected
        if done.verdict is Verdict.DONE:
            results = done.value or []
            if len(results) != len(records):
                raise FatalError(
                    f"store answered {len(results)} results for {len(records)} records",
                    cause=Cause.STORE_ANSWER_MISMATCH,
                )
            return WriteResult(tuple(Written(outcome) for outcome in results))
        error = done.error
        if isinstance(error, RecordRejected):
            if done.verdict is Verdict.SPLIT:
                return WriteResult(split_cause="record_rejected", failures=isolating)
            log.warning("record_rejected", order_uid=records[0].uid, error=str(error)[:300])
            return WriteResult((Written(Outcome.DB_REJECTED, str(error), isolating + failures + 1),))
        if isinstance(error, TimedOut):  # only a batch of several gets here
            return WriteResult(split_cause="timed_out", failures=isolating)
        if done.verdict is Verdict.SPLIT:
            return WriteResult(split_cause="unexpected_error", failures=isolating + failures)
        text = _text(error) if error is not None else "unknown"
        return WriteResult((Written(Outcome.PROCESSING_ERROR, text, isolating + failures),))

    def _dead_letter(self, letters: list[DeadLetter], control: Control) -> list[DeadLetter]:
        """Send the letters until every one is acknowledged; return them as delivered."""
        pending = letters
        delivered: list[DeadLetter] = []

        sink = self._dlq
        assert sink is not None, "letters are sent here only in at-least-once mode"

        def step() -> None:
            nonlocal pending
            try:
                delivered.extend(sink.send(pending))
            except LettersPending as exc:
                delivered.extend(exc.delivered)  # done: never sent again
                pending = list(exc.pending)
                raise

        def judge(exc: Exception, tally: Tally) -> Verdict:
            if not isinstance(exc, TransientError):
                # Not a refusal (the sink sorts those) but a bug: a letter that cannot be built or sent
                # cannot be dead-lettered either, so after the bounded attempts consumption stops.
                log.exception(
                    "dead_letter_failed_unexpectedly", attempt=tally.unexpected, letters=len(pending)
                )
            return self._policy.retry.judge_dead_letters(exc, tally)

        done = attempt(step, judge, self._policy.retry, control, self._outage)
        if done.verdict is Verdict.STOP:
            error = done.error
            raise FatalError(
                f"dead-lettering failed {done.tally.unexpected} times unexpectedly "
                f"({_text(error) if error is not None else 'unknown'})",
                cause=Cause.DEAD_LETTERING_BUG,
            ) from error
        return delivered

    def _hold_while_drifting(
        self, drift: DriftWatch, batch: Sequence[Inbound], letters: list[DeadLetter], control: Control
    ) -> None:
        """Count the batch's outcomes in the drift guard; when it trips (or has), hold the batch -
        none of its letters sent, none of its offsets committed, the partitions paused as in an
        outage - until an operator resumes. A stop or revoke abandons the held batch (delivered again
        later). Its orders are stored already: a later delivery finds them as duplicates."""
        by_place = {(m.message.partition, m.message.offset): m.group for m in letters}
        if drift.admit([by_place.get((m.partition, m.offset)) for m in batch]) is None:
            return
        self._outage.outage_started(Cause.DEAD_LETTER_DRIFT)
        try:
            while drift.tripped() is not None:
                if not control.wanted():
                    raise Abandoned
                control.sleep(DRIFT_HOLD_POLL_S)
        finally:
            self._outage.outage_ended()

    def _record(self, index: LetterIndex, delivered: list[DeadLetter], control: Control) -> None:
        """The acknowledged letters into the console's read model, before the batch's offsets are
        committed; idempotent, so retried through an outage. A bug there is logged, not fatal: the
        letters themselves are safe in the topic, only the console would miss them."""

        def judge(exc: Exception, tally: Tally) -> Verdict:
            if not isinstance(exc, TransientError):
                log.exception("letter_index_failed_unexpectedly", attempt=tally.unexpected)
            return self._policy.retry.judge_dead_letters(exc, tally)

        done = attempt(lambda: index.record(delivered), judge, self._policy.retry, control, self._outage)
        if done.verdict is not Verdict.DONE:
            log.error("letters_not_indexed", letters=len(delivered))

    def _feed_cache(self, stored: list[OrderRecord]) -> None:
        try:
            self._sink.put_many(stored)
        except Exception:  # the contract says it never raises; a durable write must not be undone by it
            log.exception("cache_feed_failed", orders=len(stored))


def _letter(
    message: Inbound, reason: DeadLetterReason, error: str, attempts: int, group: str = ""
) -> DeadLetter:
    """A letter with its group (what went wrong, letter_groups.py): from the violations when the
    caller has them, else from the reason and the error."""
    return DeadLetter(message, reason, error, attempts, group=group or group_key(reason, (), error))


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
