"""What the consumer tells the rest of the process: alive, assigned, paused by an outage, stuck
partitions, stopped on purpose (``fatal``) or crashed.

Written by the poll thread and the workers, read by the health endpoints; every field is a single
reference or guarded by the lock, so readers never see a torn value.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

from internal.domain.causes import Cause, Failure
from internal.domain.outcomes import Outcome


class ConsumerState:
    def __init__(self, on_retry: Callable[[], None] = lambda: None) -> None:
        self._lock = threading.Lock()
        self._outages = 0
        self.outage: Cause | None = None  # the cause of the latest outage a worker is backing off from
        self.last_beat = time.monotonic()
        self.assigned: frozenset[tuple[str, int]] = frozenset()
        self.paused = False
        self.running = False
        self.fatal: Failure | None = None  # stopped on purpose (FatalError): the process stays up, not ready
        self.crashed: Failure | None = None  # an exception escaped the poll loop: the process must end
        # (topic, partition) -> committed position as librdkafka's statistics last reported it (the
        # start of the partition when the group has none): for partitions this assignment has not
        # polled yet (observe.py writes it, on the poll thread)
        self.reported_commits: dict[tuple[str, int], int] = {}
        # (topic, partition) -> what is wrong, for every assigned partition that is stuck (stuck.py)
        self.stuck: dict[tuple[str, int], str] = {}
        self.outcomes: Counter[Outcome] = Counter()
        self._on_retry = on_retry  # consumer_retries_total

    # --- OutageListener (called by workers) ---
    def outage_started(self, cause: Cause) -> None:
        with self._lock:
            self._outages += 1
            self.outage = cause

    def outage_ended(self) -> None:
        with self._lock:
            self._outages -= 1
            if self._outages == 0:
                self.outage = None

    def retrying(self) -> None:
        self._on_retry()

    @property
    def in_outage(self) -> bool:
        return self._outages > 0

    def crash(self, failure: Failure) -> None:
        """Record the first crash (later ones are consequences of it); the consumer thread reports it
        to the life cycle when the loop has ended."""
        self.crashed = self.crashed or failure

    def stop_for_good(self, failure: Failure) -> None:
        """Record the first fatal error (a deliberate stop)."""
        self.fatal = self.fatal or failure

    @property
    def stopped(self) -> Failure | None:
        """Why consumption stopped for good (fatal or crashed), or None while it may go on."""
        return self.crashed or self.fatal

    # --- poll thread ---
    def set_paused(self, paused: bool) -> None:
        self.paused = paused

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def count(self, outcomes: Iterable[Outcome]) -> None:
        with self._lock:
            self.outcomes.update(outcomes)

    def partitions(self) -> list[tuple[str, int, bool]]:
        """(topic, partition, stuck) per assigned partition, for the consumer_partition_stuck gauge."""
        stuck = self.stuck
        return [(t, p, (t, p) in stuck) for t, p in sorted(self.assigned)]

    def snapshot_outcomes(self) -> dict[str, int]:
        with self._lock:
            return {o.value: n for o, n in self.outcomes.items()}
