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

from collections.abc import Mapping
from dataclasses import dataclass

TopicPartitionKey = tuple[str, int]


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
