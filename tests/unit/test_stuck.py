"""The stuck detector: lag above zero and a committed position that does not move."""

from __future__ import annotations

from internal.consumer.stuck import Position, StuckDetector

TP = ("orders", 0)


def test_a_partition_whose_position_does_not_move_while_messages_wait_is_stuck() -> None:
    detector = StuckDetector(stuck_after_s=60)
    assert detector.observe({TP: Position(committed=10, end=15)}, now=0) == []
    assert detector.observe({TP: Position(committed=10, end=15)}, now=59) == []
    (stuck,) = detector.observe({TP: Position(committed=10, end=16)}, now=61)
    assert (stuck.partition, stuck.committed, stuck.lag) == (0, 10, 6)
    assert stuck.describe() == "orders[0] stuck at offset 10 for 61s (lag 6)"


def test_a_moving_position_is_never_stuck_and_clears_it() -> None:
    detector = StuckDetector(stuck_after_s=60)
    detector.observe({TP: Position(10, 15)}, now=0)
    assert detector.observe({TP: Position(10, 15)}, now=61) != []
    assert detector.observe({TP: Position(11, 15)}, now=62) == []  # it moved: green again at once
    assert detector.observe({TP: Position(11, 15)}, now=100) == []  # the clock started afresh


def test_no_lag_is_never_stuck_and_restarts_the_clock() -> None:
    detector = StuckDetector(stuck_after_s=60)
    detector.observe({TP: Position(10, 10)}, now=0)
    assert detector.observe({TP: Position(10, 10)}, now=1000) == []
    assert detector.observe({TP: Position(10, 11)}, now=1001) == []  # a new message, just arrived
    assert detector.observe({TP: Position(10, 11)}, now=1059) == []
    assert detector.observe({TP: Position(10, 11)}, now=1061) != []


def test_unknown_positions_are_not_stuck() -> None:
    detector = StuckDetector(stuck_after_s=1)
    for now in range(5):
        assert detector.observe({TP: Position(None, 10)}, now) == []
        assert detector.observe({("orders", 1): Position(3, None)}, now) == []


def test_a_partition_no_longer_assigned_is_forgotten() -> None:
    detector = StuckDetector(stuck_after_s=60)
    detector.observe({TP: Position(10, 15)}, now=0)
    detector.observe({}, now=30)  # revoked
    assert detector.observe({TP: Position(10, 15)}, now=61) == []  # assigned again: starts afresh
