"""The service's life cycle: explicit states and the transitions between them, owned by one object.

    NEW -> STARTING -> READY -> DRAINING -> STOPPED
              \\_________________/      \\-> CRASHED

Threads never write each other's flags: a signal handler or a crashing thread *reports* here
(``request_stop``, ``crashed``) and the main thread, which waits here (``wait_for_stop``), performs
the ordered stop and the transitions (``move``). One lock guards everything; a transition that is
not allowed raises ``InvalidTransition`` (a bug of the caller). Readiness reads ``warm`` and
``stopping``; the stop reads ``crash`` and ``stop_began_at``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import Enum

from internal.domain.causes import Failure


class State(Enum):
    NEW = "new"
    STARTING = "starting"  # resources opening, threads starting, HTTP not listening yet
    READY = "ready"  # HTTP listening, the consumer running
    DRAINING = "draining"  # the ordered stop is under way
    STOPPED = "stopped"  # the ordered stop finished after a requested stop
    CRASHED = "crashed"  # the ordered stop finished after a crash: the process exits with 1


_ALLOWED: dict[State, frozenset[State]] = {
    State.NEW: frozenset({State.STARTING}),
    State.STARTING: frozenset({State.READY, State.DRAINING}),
    State.READY: frozenset({State.DRAINING}),
    State.DRAINING: frozenset({State.STOPPED, State.CRASHED}),
    State.STOPPED: frozenset(),
    State.CRASHED: frozenset(),
}


class InvalidTransition(RuntimeError):
    pass


class Lifecycle:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        # Re-entrant: a signal handler runs on the main thread, which may hold the lock at that moment.
        self._changed = threading.Condition(threading.RLock())
        self._state = State.NEW
        self._stop_reason: str | None = None
        self._stop_requested_at: float | None = None
        self._crash: Failure | None = None
        self._crashed_at: float | None = None
        self._warm = False
        self.history: list[State] = [State.NEW]  # every state taken, in order (tests, the stop log)

    # ---- reads (any thread; never block) ------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def warm(self) -> bool:
        return self._warm

    @property
    def stopping(self) -> bool:
        """A stop was requested or is under way: readiness turns false at once."""
        return self._stop_reason is not None or self._state in (State.DRAINING, State.STOPPED, State.CRASHED)

    @property
    def crash(self) -> Failure | None:
        return self._crash

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    @property
    def stop_began_at(self) -> float | None:
        """When the stop began: at the crash, which began draining the consumer already; else at the
        request. The whole stop stays within shutdown.timeout_s of it."""
        return self._crashed_at if self._crashed_at is not None else self._stop_requested_at

    # ---- reports (any thread, a signal handler included; never block for long, never raise) -------
    def warmed(self) -> None:
        """The cache warm-up finished (consumer thread)."""
        self._warm = True

    def request_stop(self, reason: str) -> bool:
        """Ask for the ordered stop; True for the first request, False when one came before."""
        with self._changed:
            if self._stop_reason is not None:
                return False
            self._stop_reason = reason
            self._stop_requested_at = self._clock()
            self._changed.notify_all()
            return True

    def crashed(self, failure: Failure) -> None:
        """A thread the service cannot do without ended unplanned: record the first crash and ask for
        the stop; the process then exits with code 1."""
        with self._changed:
            if self._crash is None:
                self._crash = failure
                self._crashed_at = self._clock()
        self.request_stop("crash")

    # ---- the owner (main thread) ------------------------------------------------------------------
    def move(self, to: State) -> None:
        with self._changed:
            if to not in _ALLOWED[self._state]:
                raise InvalidTransition(f"{self._state.value} -> {to.value}")
            self._state = to
            self.history.append(to)
            self._changed.notify_all()

    def wait_for_stop(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` for a stop request; True once there is one."""
        with self._changed:
            return self._changed.wait_for(lambda: self._stop_reason is not None, timeout=timeout_s)
