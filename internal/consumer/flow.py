"""Flow control of the poll loop: pause for an outage, room for more, backlog, how long a poll blocks.

* **Outage**: while a worker backs off from a transient error, every assigned partition is paused and
  the loop keeps polling (which keeps the group membership alive and returns nothing); librdkafka
  resumes fetching from the position after the last message handed to us, so pausing neither skips
  nor repeats messages.
* **Room**: when too many messages, or too many bytes, are polled but unfinished, the loop stops
  taking more until a batch finishes - it waits instead of pausing, since pausing would make
  librdkafka drop its prefetched messages and fetch them again on resume (measured: -15 % rate).
* **Backlog**: a full chunk from a poll means more is right behind it; lanes then wait for full
  batches.
* **Poll timeout**: back soon while messages wait for a batch, rarely while all is quiet.

Pure decisions over the consumer's pause/resume and a few counters; every method runs on the poll
thread, none blocks or raises except what the consumer's pause/resume raise (a bug of the loop's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from confluent_kafka import TopicPartition

from internal.domain.causes import Cause

log = structlog.get_logger(component="consumer")

# How long one poll may block: with messages waiting for a batch, the loop must be back soon after a
# batch finishes (a worker cannot wake a blocked consume()); without, arrivals wake it at once and the
# bound only paces commits, the stuck check and stop().
BUSY_POLL_S = 0.001
IDLE_POLL_S = 0.01
# Nothing waiting, nothing in flight, nothing to commit: only the stuck check and stop() need the loop,
# and an arrival still wakes consume() at once. Each wake-up takes the GIL from the event loop that
# answers HTTP (a forced switch, and the cache lines it evicts), so a quiet service wakes rarely.
QUIET_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class FlowPolicy:
    max_in_flight: int  # messages polled but not finished
    max_in_flight_bytes: int
    chunk: int  # messages one poll asks for; a full chunk is a backlog


class Pausable(Protocol):
    """The part of the Kafka consumer flow control uses (poll thread only)."""

    def assignment(self) -> list[TopicPartition]:
        """The partitions assigned now; a local call, never blocks."""

    def pause(self, partitions: list[TopicPartition]) -> None:
        """Stop fetching them (local, never blocks); raises KafkaException - a bug that ends the loop."""

    def resume(self, partitions: list[TopicPartition]) -> None:
        """Fetch them again from the position after the last message handed out; as ``pause``."""


class Outages(Protocol):
    """Whether a worker backs off from an outage (ConsumerState): read without a lock."""

    @property
    def in_outage(self) -> bool:
        """Some worker backs off from a transient error now (never blocks, never raises)."""

    @property
    def outage(self) -> Cause | None:
        """The cause of the latest outage, for the log (never blocks, never raises)."""


class FlowControl:
    def __init__(
        self,
        consumer: Pausable,
        outages: Outages,
        policy: FlowPolicy,
        *,
        in_flight: Callable[[], int],
        bytes_in_flight: Callable[[], int],
        on_paused: Callable[[bool], None] = lambda _p: None,
    ) -> None:
        self._consumer = consumer
        self._outages = outages
        self._policy = policy
        self._in_flight = in_flight
        self._bytes_in_flight = bytes_in_flight
        self._on_paused = on_paused  # tells the rest (the consumer_paused gauge, readiness)
        self.paused = False
        self.room = True
        self.backlog = False

    def update(self) -> bool:
        """Pause for an outage or resume after it; answer whether there is room to take more now."""
        outage = self._outages.in_outage
        if outage and not self.paused:
            self._consumer.pause(self._consumer.assignment())
            self.paused = True
            cause = self._outages.outage
            log.info("partitions_paused", cause=cause.value if cause else None)
        elif self.paused and not outage:
            self._consumer.resume(self._consumer.assignment())
            self.paused = False
            log.info("partitions_resumed")
        self._on_paused(self.paused)
        self.room = (
            self._in_flight() < self._policy.max_in_flight
            and self._bytes_in_flight() < self._policy.max_in_flight_bytes
        )
        return self.room

    def assigned(self) -> None:
        """A fresh assignment starts unpaused (the loop resumed it); the next update re-pauses."""
        self.paused = False

    def polled(self, count: int) -> None:
        """A poll returned ``count`` messages: a full chunk means a backlog."""
        self.backlog = count >= self._policy.chunk

    @property
    def should_poll(self) -> bool:
        """Poll while there is room; paused, poll anyway: consume() then hands out nothing of the
        paused partitions but keeps the group membership, commit answers and statistics going."""
        return self.room or self.paused

    @property
    def held_back(self) -> bool:
        """Polling is held back (paused, or the budget is full): lag alone means messages wait."""
        return self.paused or not self.room

    def poll_timeout(self, *, waiting: bool, busy: bool) -> float:
        """How long the next poll may block: ``waiting`` - messages wait for a batch; ``busy`` -
        something is in flight or to commit."""
        if waiting and not self.paused:
            return BUSY_POLL_S
        return IDLE_POLL_S if busy else QUIET_POLL_S
