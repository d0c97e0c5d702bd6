"""What the consumer tells the rest of the process: alive, assigned, paused by an outage, or stopped.

Written by the poll thread and the workers, read by the health endpoints; every field is a single
reference or guarded by the lock, so readers never see a torn value.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

from internal.consumer.messages import Outcome


class ConsumerState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outages = 0
        self.outage_reason: str | None = None
        self.last_beat = time.monotonic()
        self.assigned: frozenset[tuple[str, int]] = frozenset()
        self.paused = False
        self.running = False
        self.fatal: str | None = None
        self.outcomes: Counter[Outcome] = Counter()
        self.on_retry: Callable[[], None] = lambda: None  # the composition root points it at a metric

    # --- OutageListener (called by workers) ---
    def outage_started(self, reason: str) -> None:
        with self._lock:
            self._outages += 1
            self.outage_reason = reason

    def outage_ended(self) -> None:
        with self._lock:
            self._outages -= 1
            if self._outages == 0:
                self.outage_reason = None

    def retrying(self) -> None:
        self.on_retry()

    @property
    def in_outage(self) -> bool:
        return self._outages > 0

    # --- poll thread ---
    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def count(self, outcomes: Iterable[Outcome]) -> None:
        with self._lock:
            self.outcomes.update(outcomes)

    def snapshot_outcomes(self) -> dict[str, int]:
        with self._lock:
            return {o.value: n for o, n in self.outcomes.items()}
