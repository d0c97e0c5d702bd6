"""Liveness and readiness, computed from the parts' own state - never a constant "ok".

* live: the process runs and the consumer loop's last iteration is recent (a stuck-loop detector);
  it does not depend on PostgreSQL or Kafka, so an outage does not get the process restarted.
* ready: the database answers, the consumer is assigned and not paused by an outage, the cache is
  warm, and the service is not shutting down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from internal.consumer.state import ConsumerState


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    ok: bool
    detail: str


class Health:
    def __init__(
        self, consumer: ConsumerState, database_ok: Callable[[], str | None], stuck_after_s: float = 30.0
    ) -> None:
        self._consumer = consumer
        self._database_ok = database_ok  # returns None when fine, else what is wrong
        self._stuck_after_s = stuck_after_s
        self.warm = False
        self.shutting_down = False

    def liveness(self) -> list[Component]:
        age = time.monotonic() - self._consumer.last_beat
        loop_ok = not self._consumer.running or age < self._stuck_after_s
        return [Component("consumer_loop", loop_ok, f"last iteration {age:.1f}s ago")]

    def readiness(self) -> list[Component]:
        db_problem = self._database_ok()
        c = self._consumer
        if c.fatal:
            consumer = Component("consumer", False, f"stopped: {c.fatal}")
        elif not c.running:
            consumer = Component("consumer", False, "not running")
        elif c.paused:
            consumer = Component("consumer", False, f"paused by an outage: {c.outage_reason}")
        elif not c.assigned:
            consumer = Component("consumer", False, "no partitions assigned yet")
        else:
            consumer = Component("consumer", True, f"{len(c.assigned)} partitions assigned")
        return [
            Component("database", db_problem is None, db_problem or "reachable"),
            consumer,
            Component("cache", self.warm, "warm" if self.warm else "warming up"),
            Component(
                "shutdown", not self.shutting_down, "shutting down" if self.shutting_down else "running"
            ),
        ]
