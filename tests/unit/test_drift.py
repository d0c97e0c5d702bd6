"""The drift guard (internal/consumer/drift.py): trips on a switch to all-invalid, never on the mock mix."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from internal.consumer.drift import DriftGuard, DriftPolicy, DriftTrip

G = "invalid · new_field · unknown field"


def guard(window: int = 500, ratio: float = 0.95) -> tuple[DriftGuard, list[DriftTrip | None]]:
    changes: list[DriftTrip | None] = []
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return DriftGuard(DriftPolicy(window, ratio), clock=lambda: at, on_change=changes.append), changes


def test_the_threshold_is_the_ratio_of_the_window_rounded_up() -> None:
    assert DriftPolicy(500, 0.95).threshold == 475
    assert DriftPolicy(10, 0.95).threshold == 10
    assert DriftPolicy(100, 0.5).threshold == 50
    assert not DriftPolicy(0).enabled
    with pytest.raises(ValueError, match="ratio"):
        DriftPolicy(10, 0)


def test_a_producer_switching_to_a_new_field_trips_it_within_the_window() -> None:
    g, changes = guard()
    for _ in range(100):  # a healthy topic first
        assert g.admit([None] * 5) is None
    admitted = 0
    trip = None
    while trip is None:
        trip = g.admit([G] * 5)
        admitted += 5 if trip is None else 0
    assert admitted < 500  # within the window: the batch that would reach 475 is held
    assert admitted == 470
    assert trip.group == G
    assert trip.window == 500
    assert trip.dead_lettered == 475
    assert changes == [trip]
    # Held from now on: every later batch, whatever it holds, until the resume.
    assert g.admit([None]) is trip
    assert g.tripped() is trip


def test_resume_clears_the_trip_and_the_window() -> None:
    g, changes = guard(window=10)
    assert g.admit([G] * 10) is not None
    assert g.resume("test") is True
    assert g.tripped() is None
    assert changes[-1] is None
    assert g.resume("test") is False
    assert g.admit([G] * 9) is None  # a fresh window: 9 < 10
    assert g.admit([None]) is None


def test_the_mock_mix_never_trips_it() -> None:
    """gen_orders.py --invalid-rate 0.1, in batches of 1 to 500, a million messages."""
    g, _ = guard()
    rng = random.Random(23)
    for _ in range(4000):
        size = rng.randint(1, 500)
        assert g.admit([G if rng.random() < 0.1 else None for _ in range(size)]) is None


def test_a_high_but_lower_share_does_not_trip_it() -> None:
    g, _ = guard(window=100, ratio=0.95)
    for _ in range(1000):
        assert g.admit([G] * 9 + [None]) is None  # 90 %


def test_off_when_the_window_is_zero() -> None:
    g, _ = guard(window=0)
    assert g.admit([G] * 10_000) is None
