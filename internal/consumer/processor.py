"""One batch through the decision table: decode and validate, store, dead-letter, feed the cache.

This is where every row of docs/consumer.md's decision table is implemented; ``BatchProcessor`` runs on
a worker thread and talks to the outside only through the protocols in ``ports.py``.

| what happened                      | what this module does                              | offset      |
|------------------------------------|----------------------------------------------------|-------------|
| undecodable / invalid              | dead-letter with the reason (all violations)       | committed   |
| same uid, same content             | nothing (duplicate)                                | committed   |
| same uid, other content            | dead-letter ``conflict``; stored order stays       | committed   |
| database unavailable (transient)   | back off and retry, partitions paused              | held        |
| database refuses one record        | split the batch until that record is alone;        | committed   |
|                                    | dead-letter it ``db_rejected``, store the rest     |             |
| dead-letter publish fails          | back off and retry                                 | held        |
| unexpected exception               | retry up to ``max_attempts``, then split and       | committed   |
|                                    | dead-letter ``processing_error``                   |             |
| shutdown or revoke during a retry  | abandon the batch (``Abandoned``)                  | held        |
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import structlog

from internal.consumer.messages import BatchReport, DeadLetter, Inbound, Outcome
from internal.consumer.ports import DeadLetterSink, OrderStore, OutageListener, StoredOrderSink
from internal.domain.errors import FatalError, PermanentError, RecordRejected, TransientError
from internal.domain.records import OrderRecord, WriteResult
from internal.domain.validation import ValidationPolicy, decode_order
from internal.pkg.backoff import Backoff

T = TypeVar("T")
log = structlog.get_logger(component="consumer")

OUTCOME_BY_REASON = {o.value: o for o in Outcome}
OUTCOME_BY_WRITE = {
    WriteResult.STORED: Outcome.STORED,
    WriteResult.DUPLICATE: Outcome.DUPLICATE,
    WriteResult.CONFLICT: Outcome.CONFLICT,
}


class Abandoned(Exception):
    """The batch was given up because the service stops or its partitions were revoked.
    Nothing of it may be committed; the messages will be delivered again."""


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


class Control:
    """How a batch learns it should stop: ``wanted()`` turns False on shutdown or revoke, and
    ``sleep()`` wakes early in that case. The poll thread provides a real one; tests a fake."""

    def __init__(self, wanted: Callable[[], bool], sleep: Callable[[float], object]) -> None:
        self.wanted = wanted
        self.sleep = sleep


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
                outcomes[index] = OUTCOME_BY_REASON[exc.reason]
                letters.append(DeadLetter(message, exc.reason, str(exc), attempts=1))
            except Exception as exc:  # decoding is pure: retrying cannot change the answer
                log.exception("decode_failed", **_where(message))
                outcomes[index] = Outcome.PROCESSING_ERROR
                letters.append(DeadLetter(message, Outcome.PROCESSING_ERROR.value, repr(exc), attempts=1))

        stored: list[OrderRecord] = []
        results = self._store_all([record for _, record in decoded], control)
        for (index, record), result in zip(decoded, results, strict=True):
            message = batch[index]
            if isinstance(result, _Refused):
                outcomes[index] = result.outcome
                letters.append(DeadLetter(message, result.outcome.value, result.error, result.attempts))
                continue
            outcomes[index] = OUTCOME_BY_WRITE[result]
            if result is WriteResult.STORED:
                stored.append(record)
            elif result is WriteResult.CONFLICT:
                error = (
                    f"order_uid {record.uid!r} is already stored with different content (first write wins)"
                )
                letters.append(DeadLetter(message, Outcome.CONFLICT.value, error, attempts=1))

        if stored:
            self._sink.put_many(stored)
        if letters:
            self._until_done(lambda: self._dlq.send(letters), control)
            for letter in letters:  # after the acknowledgement: each line is a fact, not an intention
                log.warning(
                    "dead_lettered", reason=letter.reason, error=letter.error[:300], **_where(letter.message)
                )
        final = tuple(o for o in outcomes if o is not None)
        assert len(final) == len(batch), "every message of a batch gets an outcome"
        return BatchReport(tuple(batch), final, time.perf_counter() - started)

    def _store_all(self, records: list[OrderRecord], control: Control) -> list[WriteResult | _Refused]:
        if not records:
            return []
        attempts = 0
        while True:
            try:
                results = self._until_done(lambda: self._store.write_batch(records), control)
            except RecordRejected as exc:
                if len(records) == 1:
                    log.warning("record_rejected", order_uid=records[0].uid, error=str(exc)[:300])
                    return [_Refused(Outcome.DB_REJECTED, str(exc), attempts + 1)]
                return self._split(records, control)
            except (FatalError, Abandoned):
                raise
            except Exception as exc:
                attempts += 1
                log.exception("store_failed_unexpectedly", attempt=attempts, batch_size=len(records))
                if attempts < self._policy.max_attempts:
                    continue
                if len(records) == 1:
                    return [_Refused(Outcome.PROCESSING_ERROR, repr(exc), attempts)]
                return self._split(records, control)
            if len(results) != len(records):
                raise FatalError(f"store answered {len(results)} results for {len(records)} records")
            return list(results)

    def _split(self, records: list[OrderRecord], control: Control) -> list[WriteResult | _Refused]:
        # Halving finds one bad record in log2(n) rounds while the good ones still go in batches.
        middle = len(records) // 2
        return self._store_all(records[:middle], control) + self._store_all(records[middle:], control)

    def _until_done(self, step: Callable[[], T], control: Control) -> T:
        """Run ``step`` until it stops raising TransientError, backing off in between.

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
                    delay = self._policy.backoff.delay(attempt)
                    if attempt == 1:
                        self._outage.outage_started(str(exc))
                    self._outage.retrying()
                    log.warning(
                        "transient_error", error=str(exc), attempt=attempt, retry_in_s=round(delay, 3)
                    )
                    control.sleep(delay)
        finally:
            if attempt:
                self._outage.outage_ended()


def _where(message: Inbound) -> dict[str, object]:
    """The fields every message-level log line carries (order_uid when the key holds it)."""
    uid = message.key.decode("utf-8", "replace") if message.key else None
    return {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "order_uid": uid,
    }
