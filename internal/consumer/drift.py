"""The drift guard: pause consuming when most of the recent messages are dead-lettered.

A validator that refuses a field a producer just added dead-letters every message until someone
looks. The guard keeps the outcomes of the last ``window`` messages (a ring of booleans, bounded
memory) and trips when ``ratio`` of them were dead-lettered - counted, not only on a full window, so
a producer that switches at once trips it within the first window. The 10 % invalid mix of
``gen_orders.py --invalid-rate 0.1`` is nowhere near (tests/unit/test_drift.py draws it).

Tripping is decided before a batch's letters are sent (``admit``): the batch that would cross the
line is held - none of its letters is sent, none of its offsets committed - and so is every batch
after it, until an operator resumes (console or ``l0-dlq resume``). Resuming clears the window, so
the held messages are judged afresh under the fixed rules.

It replaces none of the consumer's other guards: ``dlq.max_consecutive`` (off by default) still
stops the process outright after a streak.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class DriftPolicy:
    """``consumer.drift_window`` and ``consumer.drift_ratio``; window 0 turns the guard off."""

    window: int = 500
    ratio: float = 0.95

    def __post_init__(self) -> None:
        if self.window < 0:
            raise ValueError(f"window must not be negative, got {self.window}")
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")

    @property
    def enabled(self) -> bool:
        return self.window > 0

    @property
    def threshold(self) -> int:
        """Dead letters among the last ``window`` outcomes that trip the guard."""
        return max(1, math.ceil(self.window * self.ratio - 1e-9))


@dataclass(frozen=True, slots=True)
class DriftTrip:
    """Why the consumer paused: ``dead_lettered`` of the last ``window`` messages, mostly ``group``."""

    at: datetime
    dead_lettered: int
    window: int
    group: str

    def describe(self) -> str:
        return (
            f"dead-letter drift: {self.dead_lettered} of the last {self.window} messages were "
            f"dead-lettered, mostly {self.group}; consumption paused until an operator resumes "
            "(docs/runbook.md#dead-letter-drift)"
        )


class DriftGuard:
    """Thread-safe: every worker asks ``admit`` before it sends a batch's letters."""

    def __init__(
        self,
        policy: DriftPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_change: Callable[[DriftTrip | None], None] = lambda _trip: None,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._ring: deque[str | None] = deque(maxlen=max(1, policy.window))  # group or None (not a letter)
        self._dead = 0
        self._trip: DriftTrip | None = None

    @property
    def policy(self) -> DriftPolicy:
        return self._policy

    def tripped(self) -> DriftTrip | None:
        return self._trip

    def admit(self, groups: Sequence[str | None]) -> DriftTrip | None:
        """Count a finished batch's outcomes, one per message in order (its group when it is to be
        dead-lettered, else None). Returns None when its letters may be sent; the trip when the guard
        is (or now becomes) tripped: the batch must then be held, its outcomes are not counted."""
        if not self._policy.enabled:
            return None
        with self._lock:
            if self._trip is not None:
                return self._trip
            ring = self._ring
            dead = self._dead
            crossed = False
            for group in groups:
                if len(ring) == ring.maxlen and ring[0] is not None:
                    dead -= 1
                ring.append(group)
                dead += group is not None
                crossed = crossed or dead >= self._policy.threshold
            if not crossed:
                self._dead = dead
                return None
            # Held: the batch comes back after the resume, judged afresh on a cleared window.
            recent = Counter(g for g in ring if g is not None)
            group = recent.most_common(1)[0][0] if recent else "-"
            self._ring.clear()
            self._dead = 0
            trip = self._trip = DriftTrip(self._clock(), dead, self._policy.window, group)
        self._on_change(trip)
        return trip

    def resume(self, by: str = "operator") -> bool:
        """Clear the trip and the window; False when it was not tripped."""
        del by  # the caller logs who resumed
        with self._lock:
            was = self._trip
            self._trip = None
            self._ring.clear()
            self._dead = 0
        if was is not None:
            self._on_change(None)
        return was is not None
