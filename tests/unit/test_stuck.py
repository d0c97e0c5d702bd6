"""The stuck detector (lag above zero and a committed position that does not move) and the watch
that feeds it from the consumer and the tracker."""

from __future__ import annotations

from internal.consumer.stuck import Position, StuckDetector, StuckWatch
from tests.unit.fake_kafka import FakeConsumer

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


class Report:
    def __init__(self, *partitions: int) -> None:
        self.assigned = frozenset(("orders", p) for p in partitions)
        self.reported_commits: dict[tuple[str, int], int] = {}
        self.stuck: dict[tuple[str, int], str] = {}


class Tracker:
    def __init__(self) -> None:
        self.positions: dict[tuple[str, int], int] = {}
        self.flying: dict[tuple[str, int], int] = {}

    def progress(self, topic: str, partition: int) -> int | None:
        return self.positions.get((topic, partition))

    def in_flight(self, topic: str | None = None, partition: int | None = None) -> int:
        return self.flying.get((topic or "", partition or 0), 0)


def watch(report: Report, tracker: Tracker, now: list[float]) -> tuple[FakeConsumer, StuckWatch]:
    consumer = FakeConsumer()
    return consumer, StuckWatch(consumer, tracker, report, stuck_after_s=60, clock=lambda: now[0])


def test_the_watch_publishes_stuck_partitions_and_clears_them_when_they_move() -> None:
    report, tracker, now = Report(0), Tracker(), [0.0]
    consumer, stuck = watch(report, tracker, now)
    consumer.ends[0] = 15
    tracker.positions[TP] = 10
    tracker.flying[TP] = 5
    stuck.check(held_back=False)
    now[0] = 61
    stuck.check(held_back=False)
    assert report.stuck == {TP: "orders[0] stuck at offset 10 for 61s (lag 5)"}
    tracker.positions[TP] = 11
    now[0] = 62
    stuck.check(held_back=False)
    assert report.stuck == {}


def test_the_watch_looks_at_most_once_a_second() -> None:
    report, now = Report(0, 1), [0.0]
    consumer, stuck = watch(report, Tracker(), now)
    stuck.check(held_back=True)
    stuck.check(held_back=True)
    assert consumer.watermark_reads == 2  # one look, two partitions
    now[0] = 1.0
    stuck.check(held_back=True)
    assert consumer.watermark_reads == 4


def test_lag_with_nothing_in_flight_counts_only_while_polling_is_held_back() -> None:
    report, now = Report(0), [0.0]
    report.reported_commits[TP] = 3  # from the statistics: this assignment committed nothing yet
    consumer, stuck = watch(report, Tracker(), now)
    consumer.ends[0] = 9
    for t in (0.0, 61.0):
        now[0] = t
        stuck.check(held_back=False)  # room to poll: an end past the last message only looks behind
    assert report.stuck == {}
    for t in (62.0, 122.0):  # the clock started at the last look with room (61)
        now[0] = t
        stuck.check(held_back=True)
    assert report.stuck == {TP: "orders[0] stuck at offset 3 for 61s (lag 6)"}


def test_forgotten_partitions_are_stuck_no_more() -> None:
    report = Report(0, 1)
    report.stuck = {TP: "x", ("orders", 1): "y"}
    _, stuck = watch(report, Tracker(), [0.0])
    stuck.forget({TP})
    assert report.stuck == {("orders", 1): "y"}
