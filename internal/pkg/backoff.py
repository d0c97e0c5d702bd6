"""Capped exponential backoff with full jitter, as a frozen policy object."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float
    max_s: float
    multiplier: float = 2.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based): random in [cap/2, cap] so that many workers
        retrying the same outage do not hammer the database in lockstep."""
        cap = min(self.max_s, self.initial_s * self.multiplier ** max(0, attempt - 1))
        return cap / 2 + (rng or random).random() * cap / 2
