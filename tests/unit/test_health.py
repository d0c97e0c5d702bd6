"""/readyz and /healthz answer anyone who reaches the port: their details are fixed words naming the part
that is down, never an exception's text (a driver's message names hosts, ports, users, relations). The
words come from the failure's cause, so a message reworded or full of driver text changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from internal.domain.causes import SEE_LOG, STORM_WORDS, Cause, Component, Failure, Kind
from internal.domain.errors import FatalError, TimedOut, TransientError, failure_of
from internal.pkg.health import Health

# Driver text, as it ends up in a failure's detail.
DRIVER = 'connection to server at "10.1.2.3", port 6432 failed: FATAL: role "svc_orders" does not exist'


@dataclass
class State:
    running: bool = True
    fatal: Failure | None = None
    crashed: Failure | None = None
    paused: bool = False
    outage: Cause | None = None
    assigned: frozenset[tuple[str, int]] = frozenset({("orders", 0)})
    stuck: Mapping[tuple[str, int], str] = field(default_factory=dict)
    last_beat: float = 0.0


@dataclass
class Service:
    warm: bool = True
    stopping: bool = False


def details(state: State, service: Service | None = None) -> dict[str, str]:
    health = Health(state, lambda: None, service or Service())
    return {c.name: c.detail for c in [*health.readiness(), *health.liveness()]}


@pytest.mark.parametrize(
    ("state", "detail"),
    [
        (State(paused=True, outage=Cause.DATABASE_UNAVAILABLE), "paused by an outage: database"),
        (State(paused=True, outage=Cause.DATABASE_TIMEOUT), "paused by an outage: database"),
        (State(paused=True, outage=Cause.DEAD_LETTER_UNACKNOWLEDGED),
         "paused by an outage: dead-letter topic"),
        (State(paused=True, outage=None), f"paused by an outage: {SEE_LOG}"),
        (State(fatal=Failure(Cause.DATABASE_UNUSABLE, f"database: {DRIVER}")), "stopped: database"),
        (State(fatal=Failure(Cause.KAFKA_FATAL, "kafka: authorization")), "stopped: kafka"),
        (State(fatal=Failure(Cause.DEAD_LETTER_REFUSED, DRIVER)), "stopped: dead-letter topic"),
        (State(fatal=Failure(Cause.DEAD_LETTERING_BUG, DRIVER)), "stopped: dead-letter topic"),
        (State(fatal=Failure(Cause.DEAD_LETTER_STORM, "101 in a row")), f"stopped: {STORM_WORDS}"),
        (State(fatal=Failure(Cause.STORE_ANSWER_MISMATCH, "3 results for 4")), "stopped: see the log"),
        (State(crashed=Failure(Cause.POLL_THREAD_CRASHED, DRIVER)),
         "crashed (see the log: consumer_crashed)"),
    ],
)  # fmt: skip
def test_consumer_details_are_fixed_words(state: State, detail: str) -> None:
    shown = details(state)
    assert shown["consumer"] == detail
    assert all(word not in text for text in shown.values() for word in ("10.1.2.3", "6432", "svc_orders"))


def test_a_crash_is_named_in_liveness_without_its_text() -> None:
    assert details(State(crashed=Failure(Cause.WARMUP_CRASHED, DRIVER)))["consumer_loop"] == (
        "crashed (see the log: consumer_crashed)"
    )


def test_the_words_follow_the_cause_not_the_message() -> None:
    # The same message under two causes reads differently; two messages under one cause read the same.
    assert details(State(fatal=Failure(Cause.KAFKA_FATAL, "database: x")))["consumer"] == "stopped: kafka"
    assert (
        details(State(fatal=Failure(Cause.DATABASE_UNUSABLE, "kafka: x")))["consumer"] == "stopped: database"
    )


def test_every_cause_has_a_component_a_kind_and_words() -> None:
    for cause in Cause:
        assert isinstance(cause.component, Component)
        assert isinstance(cause.kind, Kind)
        assert cause.words


def test_errors_carry_their_cause() -> None:
    assert TransientError("x").cause is Cause.DATABASE_UNAVAILABLE
    assert TimedOut("x").cause is Cause.DATABASE_TIMEOUT
    assert FatalError("x", cause=Cause.KAFKA_FATAL).cause is Cause.KAFKA_FATAL
    assert failure_of(FatalError("why", cause=Cause.KAFKA_FATAL), Cause.POLL_THREAD_CRASHED) == Failure(
        Cause.KAFKA_FATAL, "why"
    )
    assert failure_of(KeyError("k"), Cause.POLL_THREAD_CRASHED) == Failure(
        Cause.POLL_THREAD_CRASHED, "KeyError: 'k'"
    )


def test_the_cache_and_the_shutdown_come_from_the_life_cycle() -> None:
    shown = details(State(), Service(warm=False, stopping=True))
    assert (shown["cache"], shown["shutdown"]) == ("warming up", "shutting down")
