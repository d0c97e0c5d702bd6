"""librdkafka's ``on_commit`` callback: confirmed commits and failed ones, into the offset tracker.

Runs inside ``consume`` on the poll thread (like the rebalance callbacks), so it may touch the
tracker without a lock. A failed commit is logged and counted, and the tracker offers the position
again on the next loop iteration; "nothing to commit" (``_NO_OFFSET``) is not a failure.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from confluent_kafka import KafkaError, TopicPartition

from internal.consumer.offsets import OffsetTracker

log = structlog.get_logger(component="consumer")


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
