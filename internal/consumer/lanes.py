"""Lanes: polled messages waiting for a worker, one lane per partition, at most ``slots`` batches
running at once (one per worker).

A lane runs one batch at a time, so the messages of a partition are written in offset order ("first
write wins" means "first in the partition"). Batches form by themselves: an idle lane takes what waits
at once, and the messages that arrive while its batch is written make the next one - at everyday
rates an order is written the moment it is polled, under load the batches grow with the load. Only
under a backlog (the last poll brought a full chunk: more is right behind) does an idle lane wait for
a full batch, and never longer than ``max_wait_s``. A batch never holds more than ``max_messages``
messages or ``max_bytes`` bytes (but at least one message, however large). Used by the poll thread
only.

Lanes are per partition, not per worker: a free worker takes the lane that waited longest, whichever
partition it is. With lanes fixed to workers (partition % workers), six partitions on four workers
gave two lanes twice the work of the others; under a backlog the in-flight budget filled with their
messages, polling stopped, and the other workers sat idle (docs/performance.md, issue 25).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from internal.consumer.messages import BatchReport, Inbound

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_messages: int
    max_bytes: int
    max_wait_s: float  # under a backlog only: how long an idle lane may wait for its batch to fill


@dataclass
class Lane:
    pending: list[Inbound] = field(default_factory=list)
    # Each waiting message's size, in the same order: under a backlog a lane holds more than a batch,
    # and cutting one off counts sizes; ``Inbound.size`` walks the headers each time it is asked.
    sizes: list[int] = field(default_factory=list)
    pending_bytes: int = 0
    oldest_at: float = 0.0
    running: Future[BatchReport] | None = None
    batch: list[Inbound] = field(default_factory=list)
    batch_bytes: int = 0


class Lanes:
    def __init__(self, slots: int, limits: BatchLimits) -> None:
        self._lanes: dict[TopicPartitionKey, Lane] = {}
        self._slots = slots  # batches that may run at once: the workers
        self._limits = limits

    def add(self, message: Inbound, now: float) -> None:
        key = (message.topic, message.partition)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane()
        if not lane.pending:
            lane.oldest_at = now
        size = message.size
        lane.pending.append(message)
        lane.sizes.append(size)
        lane.pending_bytes += size

    def due(self, now: float, backlog: bool = False) -> Iterator[tuple[Lane, list[Inbound]]]:
        """The idle lanes whose waiting messages make a batch now, longest waiting first, as many as
        there are free slots; each batch is taken off its lane, which the caller marks running
        (``start``) before asking again. Without a ``backlog`` that is every idle lane with work; with
        one, those with a full batch or whose oldest message waited ``max_wait_s``."""
        free = self._slots - sum(1 for lane in self._lanes.values() if lane.running is not None)
        if free <= 0:
            return
        limits = self._limits
        ready = [
            lane
            for lane in self._lanes.values()
            if lane.running is None
            and lane.pending
            and (
                not backlog
                or len(lane.pending) >= limits.max_messages
                or lane.pending_bytes >= limits.max_bytes
                or now - lane.oldest_at >= limits.max_wait_s
            )
        ]
        if len(ready) > free:
            ready.sort(key=lambda lane: lane.oldest_at)
        for lane in ready[:free]:
            yield lane, self._take(lane, now)

    def waiting(self) -> bool:
        """Whether messages wait here for a batch: behind a running one, or for one to fill."""
        return any(lane.pending for lane in self._lanes.values())

    def _take(self, lane: Lane, now: float) -> list[Inbound]:
        limits = self._limits
        if len(lane.pending) <= limits.max_messages and lane.pending_bytes <= limits.max_bytes:
            batch, taken = lane.pending, lane.pending_bytes  # the common case: all of it, no counting
        else:
            count = taken = 0
            for size in lane.sizes[: limits.max_messages]:
                if count and taken + size > limits.max_bytes:
                    break
                count += 1
                taken += size
            batch = lane.pending[:count]
        lane.pending = lane.pending[len(batch) :]
        lane.sizes = lane.sizes[len(batch) :]
        lane.pending_bytes -= taken
        lane.oldest_at = now
        lane.batch, lane.batch_bytes = batch, taken
        return batch

    @staticmethod
    def start(lane: Lane, future: Future[BatchReport]) -> None:
        lane.running = future

    def finished(self) -> Iterator[tuple[list[Inbound], Future[BatchReport]]]:
        """The batches whose work is done, each once; their lanes are idle again."""
        for lane in self._lanes.values():
            future = lane.running
            if future is not None and future.done():
                lane.running = None
                batch, lane.batch, lane.batch_bytes = lane.batch, [], 0
                yield batch, future

    def running(self, partitions: set[TopicPartitionKey] | None = None) -> list[Future[BatchReport]]:
        """The batches in flight (those of ``partitions``, when given)."""
        return [
            lane.running
            for key, lane in self._lanes.items()
            if lane.running is not None and (partitions is None or key in partitions)
        ]

    def forget(self, partitions: set[TopicPartitionKey]) -> None:
        """Drop the waiting messages of ``partitions`` (revoked or lost: never committed by us), and
        their lanes once no batch of theirs runs."""
        for key in partitions:
            lane = self._lanes.get(key)
            if lane is None:
                continue
            lane.pending, lane.sizes, lane.pending_bytes = [], [], 0
            if lane.running is None:
                del self._lanes[key]

    def bytes_in_flight(self) -> int:
        """Bytes of the messages held here: waiting, or in a running batch."""
        return sum(lane.pending_bytes + lane.batch_bytes for lane in self._lanes.values())
