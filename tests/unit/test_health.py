"""/readyz and /healthz answer anyone who reaches the port: their details are fixed words naming the part
that is down, never an exception's text (a driver's message names hosts, ports, users, relations)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from internal.pkg.health import STORM, Health, public_cause

# What the consumer records, word for word as the service's own code builds it around driver text.
DRIVER = 'connection to server at "10.1.2.3", port 6432 failed: FATAL: role "svc_orders" does not exist'


@dataclass
class State:
    running: bool = True
    fatal: str | None = None
    crashed: str | None = None
    paused: bool = False
    outage_reason: str | None = None
    assigned: frozenset[tuple[str, int]] = frozenset({("orders", 0)})
    stuck: Mapping[tuple[str, int], str] = field(default_factory=dict)
    last_beat: float = 0.0


def details(state: State) -> dict[str, str]:
    health = Health(state, lambda: None)
    health.warm = True
    return {c.name: c.detail for c in [*health.readiness(), *health.liveness()]}


@pytest.mark.parametrize(
    ("state", "detail"),
    [
        (State(paused=True, outage_reason=f"database unavailable: {DRIVER}"),
         "paused by an outage: database"),
        (State(paused=True, outage_reason=f"database statement cancelled: {DRIVER}"),
         "paused by an outage: database"),
        (State(paused=True, outage_reason="dead-letter topic orders.dlq: 0/3 acknowledged (Local: timeout)"),
         "paused by an outage: dead-letter topic"),
        (State(fatal=f'database: relation "orders" does not exist ({DRIVER})'), "stopped: database"),
        (State(fatal="kafka: Broker: Group authorization failed (sasl user svc_orders)"), "stopped: kafka"),
        (State(fatal="101 dead-letters in a row (dlq.max_consecutive=100): consumption stopped"),
         f"stopped: {STORM}"),
        (State(fatal="store answered 3 results for 4 records"), "stopped: see the log"),
        (State(crashed=f"OperationalError: {DRIVER}"), "crashed (see the log: consumer_crashed)"),
    ],
)  # fmt: skip
def test_consumer_details_are_fixed_words(state: State, detail: str) -> None:
    shown = details(state)
    assert shown["consumer"] == detail
    assert all(word not in text for text in shown.values() for word in ("10.1.2.3", "6432", "svc_orders"))


def test_a_crash_is_named_in_liveness_without_its_text() -> None:
    assert details(State(crashed=f"RuntimeError: {DRIVER}"))["consumer_loop"] == (
        "crashed (see the log: consumer_crashed)"
    )


def test_an_unknown_reason_points_to_the_log() -> None:
    assert public_cause(None) == public_cause("") == public_cause("something else") == "see the log"
