"""OffsetTracker: commit only the highest contiguous finished offset, per partition."""

from __future__ import annotations

from internal.consumer.offsets import OffsetTracker
from internal.pkg.backoff import Backoff

T = "orders"


def tracker_with(offsets: list[int], partition: int = 0) -> tuple[OffsetTracker, int]:
    tracker = OffsetTracker()
    generation = tracker.assign(T, partition)
    for offset in offsets:
        tracker.track(T, partition, offset)
    return tracker, generation


def test_nothing_to_commit_until_the_first_offset_finishes() -> None:
    tracker, gen = tracker_with([10, 11, 12])
    tracker.finish(T, 0, 11, gen)
    tracker.finish(T, 0, 12, gen)
    assert tracker.to_commit() == {}  # 10 is still in flight: committing 13 could lose it
    tracker.finish(T, 0, 10, gen)
    assert tracker.to_commit() == {(T, 0): 13}


def test_commit_stops_before_a_gap() -> None:
    tracker, gen = tracker_with([0, 1, 2, 3])
    for offset in (0, 1, 3):
        tracker.finish(T, 0, offset, gen)
    assert tracker.to_commit() == {(T, 0): 2}
    assert tracker.in_flight() == 2


def test_committed_positions_are_not_offered_again() -> None:
    tracker, gen = tracker_with([5])
    tracker.finish(T, 0, 5, gen)
    positions = tracker.to_commit()
    tracker.committed(positions)
    assert tracker.to_commit() == {}


def test_partitions_are_independent_and_filterable() -> None:
    tracker = OffsetTracker()
    g0, g1 = tracker.assign(T, 0), tracker.assign(T, 1)
    tracker.track(T, 0, 7)
    tracker.track(T, 1, 3)
    tracker.finish(T, 0, 7, g0)
    tracker.finish(T, 1, 3, g1)
    assert tracker.to_commit() == {(T, 0): 8, (T, 1): 4}
    assert tracker.to_commit({(T, 1)}) == {(T, 1): 4}


def test_a_result_from_an_older_assignment_is_ignored() -> None:
    tracker, old = tracker_with([1])
    tracker.drop(T, 0)
    new = tracker.assign(T, 0)  # revoked, then assigned again
    tracker.track(T, 0, 1)
    assert tracker.finish(T, 0, 1, old) is False
    assert tracker.to_commit() == {}
    assert tracker.finish(T, 0, 1, new) is True
    assert tracker.to_commit() == {(T, 0): 2}


def test_dropped_partition_reports_no_generation() -> None:
    tracker, gen = tracker_with([1])
    tracker.drop(T, 0)
    assert tracker.generation(T, 0) is None
    assert tracker.finish(T, 0, 1, gen) is False


def test_backoff_grows_doubles_and_caps_with_jitter() -> None:
    policy = Backoff(initial_s=0.1, max_s=1.0)
    for attempt, cap in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (30, 1.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert max(delays) - min(delays) > 0  # jittered, not lockstep
