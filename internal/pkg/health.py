"""Liveness and readiness, computed from the parts' own state - never a constant "ok".

* live: the process runs, its consumer loop has not crashed, and the loop's last iteration is recent
  (a stuck-loop detector); it does not depend on PostgreSQL or Kafka, so an outage does not get the
  process restarted - a crash does (the service also ends itself then, after the ordered stop).
* ready: the database answers, the consumer is assigned, not paused by an outage and not stopped, no
  assigned partition is stuck (messages waiting, committed offset not moving), the cache is warm,
  and the service is not shutting down.

The endpoints answer anyone who can reach the port, so their details are fixed words naming the part
that is down (``paused by an outage: database``), never the text of an exception: a driver's message
names hosts, ports, users and relations. The words come from the failure's ``Cause``
(internal/domain/causes.py), never from its message, so rewording a message changes nothing here. The
text is in the log (``transient_error``, ``consumer_stopped``, ``consumer_crashed``,
``db_probe_failed``), which the words point to.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from internal.domain.causes import SEE_LOG, Cause, Failure


class ConsumerStatus(Protocol):
    """What health reads of the consumer (internal/consumer/state.py's ConsumerState)."""

    @property
    def running(self) -> bool: ...
    @property
    def fatal(self) -> Failure | None: ...
    @property
    def crashed(self) -> Failure | None: ...
    @property
    def paused(self) -> bool: ...
    @property
    def outage(self) -> Cause | None: ...
    @property
    def assigned(self) -> frozenset[tuple[str, int]]: ...
    @property
    def stuck(self) -> Mapping[tuple[str, int], str]: ...
    @property
    def last_beat(self) -> float: ...


class ServiceStatus(Protocol):
    """What health reads of the service's life cycle (internal/lifecycle.py's Lifecycle)."""

    @property
    def warm(self) -> bool: ...
    @property
    def stopping(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    ok: bool
    detail: str


class Health:
    def __init__(
        self,
        consumer: ConsumerStatus,
        database_ok: Callable[[], str | None],
        service: ServiceStatus,
        loop_stale_after_s: float = 30.0,
    ) -> None:
        self._consumer = consumer
        self._database_ok = database_ok  # returns None when fine, else what is wrong
        self._service = service
        self._loop_stale_after_s = loop_stale_after_s  # the loop's last iteration: not a partition

    def liveness(self) -> list[Component]:
        c = self._consumer
        if c.crashed:
            return [Component("consumer_loop", False, "crashed (see the log: consumer_crashed)")]
        age = time.monotonic() - c.last_beat
        loop_ok = not c.running or age < self._loop_stale_after_s
        return [Component("consumer_loop", loop_ok, f"last iteration {age:.1f}s ago")]

    def readiness(self) -> list[Component]:
        db_problem = self._database_ok()
        c = self._consumer
        warm, stopping = self._service.warm, self._service.stopping
        if c.crashed:
            consumer = Component("consumer", False, "crashed (see the log: consumer_crashed)")
        elif c.fatal:
            consumer = Component("consumer", False, f"stopped: {c.fatal.cause.words}")
        elif not c.running:
            consumer = Component("consumer", False, "not running")
        elif c.paused and c.outage is Cause.DEAD_LETTER_DRIFT:  # a guard, not an outage: say which
            consumer = Component("consumer", False, f"paused: {c.outage.words}")
        elif c.paused:
            words = c.outage.words if c.outage is not None else SEE_LOG
            consumer = Component("consumer", False, f"paused by an outage: {words}")
        elif not c.assigned:
            consumer = Component("consumer", False, "no partitions assigned yet")
        else:
            consumer = Component("consumer", True, f"{len(c.assigned)} partitions assigned")
        stuck = dict(c.stuck)  # one reference read: the poll thread replaces the mapping, never edits it
        partitions = Component(
            "partitions",
            not stuck,
            "; ".join(stuck[tp] for tp in sorted(stuck)) if stuck else "none stuck",
        )
        return [
            Component("database", db_problem is None, db_problem or "reachable"),
            consumer,
            partitions,
            Component("cache", warm, "warm" if warm else "warming up"),
            Component("shutdown", not stopping, "shutting down" if stopping else "running"),
        ]
