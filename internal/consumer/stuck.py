"""Which assigned partitions are stuck: messages waiting, and the committed offset not moving.

A partition is stuck when its lag (high watermark minus the position the group committed) is above
zero, messages really wait (some are in flight, or polling is held back), and that committed
position has not moved for ``stuck_after_s``. It is no longer stuck as soon as
the position moves or the lag is gone. The poll thread feeds an observation about once a second; this
module is pure logic (no Kafka, no clock of its own), unit-tested with made-up observations.

Readiness fails naming the stuck partitions, and ``consumer_partition_stuck`` is 1 for each of them:
a single message that can neither be stored nor dead-lettered must never hide behind a green check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog
from confluent_kafka import TopicPartition

log = structlog.get_logger(component="consumer")
TopicPartitionKey = tuple[str, int]
STUCK_CHECK_S = 1.0  # how often, at most, the watch looks (a few local calls per partition)


@dataclass(frozen=True, slots=True)
class Position:
    """What the poll thread knows of one partition: where its commit stands and where it ends
    (either None while unknown), and whether messages really wait: some of ours are in flight, or
    polling is held back (paused, or the in-flight budget is full)."""

    committed: int | None
    end: int | None
    waiting: bool = True

    @property
    def lag(self) -> int | None:
        if self.committed is None or self.end is None:
            return None
        return max(0, self.end - self.committed)


@dataclass(frozen=True, slots=True)
class Stuck:
    topic: str
    partition: int
    committed: int
    lag: int
    for_s: float

    def describe(self) -> str:
        return (
            f"{self.topic}[{self.partition}] stuck at offset {self.committed} for {self.for_s:.0f}s "
            f"(lag {self.lag})"
        )


@dataclass(slots=True)
class _Seen:
    committed: int | None
    since: float  # when ``committed`` was last seen moving, or the lag last seen at zero


class StuckDetector:
    def __init__(self, stuck_after_s: float) -> None:
        self._after_s = stuck_after_s
        self._seen: dict[TopicPartitionKey, _Seen] = {}

    def observe(self, positions: Mapping[TopicPartitionKey, Position], now: float) -> list[Stuck]:
        """The stuck partitions among ``positions`` (the assigned ones); partitions no longer in it
        are forgotten, so one assigned again starts afresh."""
        stuck: list[Stuck] = []
        for tp, position in positions.items():
            seen = self._seen.get(tp)
            lag = position.lag if position.waiting else 0
            if seen is None or not lag or seen.committed != position.committed:
                self._seen[tp] = _Seen(position.committed, now)  # moving, caught up, or new to us
                continue
            waited = now - seen.since
            if waited >= self._after_s and position.committed is not None:
                stuck.append(Stuck(tp[0], tp[1], position.committed, lag, waited))
        for gone in self._seen.keys() - positions.keys():
            del self._seen[gone]
        return stuck


class Watermarks(Protocol):
    """The part of the Kafka consumer the watch reads: a local call, no broker round trip."""

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int]:
        """(low, high) as librdkafka last saw them (``cached=True``: local, never blocks); -1 while
        unknown."""


class Progress(Protocol):
    """What the offset tracker tells the watch (poll thread only)."""

    def progress(self, topic: str, partition: int) -> int | None:
        """The partition's committed position as this assignment knows it, or None (never blocks)."""

    def in_flight(self, topic: str | None = None, partition: int | None = None) -> int:
        """Messages of the partition handed out but not finished (never blocks)."""


class StuckReport(Protocol):
    """Where the watch reads the assignment and writes what it found (ConsumerState)."""

    assigned: frozenset[TopicPartitionKey]
    reported_commits: dict[TopicPartitionKey, int]
    stuck: dict[TopicPartitionKey, str]


class StuckWatch:
    """The poll loop's stuck watch: about once a second (``check``) it builds each assigned
    partition's ``Position`` from local calls, feeds the detector and publishes the stuck ones to
    ``report.stuck`` (readiness, the consumer_partition_stuck gauge), logging the change. Poll thread
    only; never blocks, raises only what the consumer's watermark call raises."""

    def __init__(
        self,
        consumer: Watermarks,
        progress: Progress,
        report: StuckReport,
        stuck_after_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._consumer = consumer
        self._progress = progress
        self._report = report
        self._detector = StuckDetector(stuck_after_s)
        self._every_s = min(STUCK_CHECK_S, stuck_after_s / 4)
        self._clock = clock
        self._next = 0.0

    def check(self, held_back: bool) -> None:
        """Look, unless the last look is recent. ``held_back``: polling is held back (paused, or the
        in-flight budget full)."""
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self._every_s
        # While there is room to poll and nothing is paused, librdkafka hands out whatever waits; a
        # partition with nothing of ours in flight then only *looks* behind (a transaction marker or
        # a compacted gap past its last message). When polling is held back, lag alone counts.
        positions = {}
        for topic, partition in self._report.assigned:
            # Local calls: the high watermark librdkafka last saw in a fetch answer; the committed
            # position from our own commits, else from the statistics.
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            committed = self._progress.progress(topic, partition)
            if committed is None:
                committed = self._report.reported_commits.get((topic, partition))
            positions[(topic, partition)] = Position(
                committed if committed is not None and committed >= 0 else None,
                high if high >= 0 else None,
                waiting=held_back or self._progress.in_flight(topic, partition) > 0,
            )
        stuck = self._detector.observe(positions, now)
        if stuck or self._report.stuck:
            if stuck and not self._report.stuck:
                log.error("partitions_stuck", partitions=[s.describe() for s in stuck])
            elif not stuck:
                log.info("partitions_moving_again")
            self._report.stuck = {(s.topic, s.partition): s.describe() for s in stuck}

    def forget(self, partitions: set[TopicPartitionKey]) -> None:
        """Revoked or lost partitions are stuck no more."""
        self._report.stuck = {tp: why for tp, why in self._report.stuck.items() if tp not in partitions}
