"""The commit path: when and what to commit (``CommitPolicy``, ``Committer``), and librdkafka's
``on_commit`` callback - confirmed commits and failed ones, into the offset tracker.

Runs inside ``consume`` on the poll thread (like the rebalance callbacks), so it may touch the
tracker without a lock. A failed commit is logged and counted, and the tracker offers the position
again on the next loop iteration; "nothing to commit" (``_NO_OFFSET``) is not a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog
from confluent_kafka import KafkaError, TopicPartition

from internal.consumer.offsets import OffsetTracker
from internal.consumer.ports import KafkaConsumer

log = structlog.get_logger(component="consumer")
COMMIT_EVERY_S = 0.1  # asynchronous commits at most this often (CommitPolicy)


class CommitConfirmations:
    def __init__(self, tracker: OffsetTracker, on_failure: Callable[[], None] = lambda: None) -> None:
        self._tracker = tracker
        self._on_failure = on_failure  # the composition root points it at consumer_commit_failures_total

    def __call__(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is not None and error.code() == KafkaError._NO_OFFSET:
            return
        for tp in partitions:
            failure = error or tp.error
            if tp.offset < 0:  # no position in this answer (nothing was committed for it)
                continue
            if failure is None:
                self._tracker.confirmed(tp.topic, tp.partition, tp.offset)
                continue
            retried = self._tracker.commit_failed(tp.topic, tp.partition, tp.offset)
            self._on_failure()
            log.warning(
                "commit_failed",
                topic=tp.topic,
                partition=tp.partition,
                offset=tp.offset,
                error=f"{failure.name()}: {failure.str()}",
                retried=retried,
            )


@dataclass(frozen=True, slots=True)
class CommitPolicy:
    """When finished work is committed.

    Asynchronous commits go at most every ``every_s``: with batches that form by themselves, hundreds
    finish a second at everyday rates, and a commit request each would cost the broker and librdkafka
    more than the writes. A later commit only means more redelivery after a crash, which the idempotent
    writer absorbs. Revokes and stops commit synchronously at once (``Committer.commit_now``)."""

    every_s: float = COMMIT_EVERY_S


class Committer:
    """The one place that decides what is committed and sends it: per partition, only the highest
    contiguous finished offset (``OffsetTracker``), nothing past unfinished work.

    Every method runs on the poll thread (it owns the consumer); none blocks except ``commit_now``,
    which waits for the broker's answer. A failed commit is logged and counted, never raised: nothing
    is lost, the same positions are offered again. (A transactional commit - the dead letters and the
    offsets in one Kafka transaction - replaces this part alone.)"""

    def __init__(
        self,
        consumer: KafkaConsumer,
        tracker: OffsetTracker,
        policy: CommitPolicy = CommitPolicy(),
        *,
        clock: Callable[[], float],
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self._consumer = consumer
        self._tracker = tracker
        self._policy = policy
        self._clock = clock
        self._on_failure = on_failure
        self._next = 0.0

    def now_and_then(self) -> None:
        """Commit asynchronously when ``every_s`` passed since the last time (answered by on_commit)."""
        now = self._clock()
        if now >= self._next:
            self._next = now + self._policy.every_s
            self._commit(synchronous=False, only=None)

    def commit_now(self, only: set[tuple[str, int]] | None = None) -> None:
        """Commit synchronously (a revoke of ``only``, or the stop): blocks for the broker's answer."""
        self._commit(synchronous=True, only=only)

    def _commit(self, *, synchronous: bool, only: set[tuple[str, int]] | None) -> None:
        positions = self._tracker.to_commit(only)
        if not positions:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            if synchronous:
                answers = self._consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=True)  # answered by on_commit
        except Exception as exc:  # KafkaException: nothing lost, the same positions are tried again
            self._on_failure()
            log.warning("commit_failed", error=str(exc), synchronous=synchronous)
            return
        self._tracker.committed(positions)
        if synchronous:  # the answer is here: per partition, confirmed or refused
            for tp in answers:
                if tp.error is None:
                    self._tracker.confirmed(tp.topic, tp.partition, tp.offset)
                else:
                    self._tracker.commit_failed(tp.topic, tp.partition, tp.offset)
                    self._on_failure()
                    log.warning("commit_failed", topic=tp.topic, partition=tp.partition, error=str(tp.error))
