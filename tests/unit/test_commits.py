"""The commit path on its own: the cadence of asynchronous commits, contiguous positions only,
synchronous commits with per-partition answers, and failures that lose nothing."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import pytest
from confluent_kafka import KafkaException, TopicPartition

from internal.consumer.commits import CommitConfirmations, CommitPolicy, Committed, Committer
from internal.consumer.messages import DeadLetter
from internal.consumer.offsets import OffsetTracker
from tests.unit.fake_kafka import TOPIC, FakeConsumer


def setup(every_s: float = 1.0) -> tuple[FakeConsumer, OffsetTracker, Committer, list[float], list[int]]:
    consumer, tracker, now, failures = FakeConsumer(), OffsetTracker(), [100.0], [0]
    consumer.on_commit = CommitConfirmations(tracker)
    committer = Committer(
        consumer,
        tracker,
        CommitPolicy(every_s=every_s),
        clock=lambda: now[0],
        on_failure=lambda: failures.__setitem__(0, failures[0] + 1),
    )
    generation = tracker.assign(TOPIC, 0)
    for offset in range(5):
        tracker.track(TOPIC, 0, offset)
    for offset in (0, 1, 3):  # 2 is unfinished: nothing past it may be committed
        tracker.finish(TOPIC, 0, offset, generation)
    return consumer, tracker, committer, now, failures


def test_asynchronous_commits_go_at_most_every_interval_and_only_up_to_the_first_unfinished() -> None:
    consumer, _tracker, committer, now, _ = setup()
    committer.now_and_then()
    assert consumer.commits == [({0: 2}, True)]
    committer.now_and_then()
    now[0] += 0.5
    committer.now_and_then()
    assert len(consumer.commits) == 1
    now[0] += 0.5
    committer.now_and_then()  # due again, but nothing new to commit: no request
    assert len(consumer.commits) == 1


def test_a_synchronous_commit_goes_at_once_and_takes_the_answer() -> None:
    consumer, tracker, committer, _, _ = setup()
    committer.commit_now()
    assert consumer.commits == [({0: 2}, False)]
    assert tracker.progress(TOPIC, 0) == 2
    committer.commit_now(only={(TOPIC, 1)})  # another partition: nothing of it to commit
    assert len(consumer.commits) == 1


def test_a_failing_commit_is_counted_and_the_same_positions_are_offered_again() -> None:
    consumer, _tracker, committer, now, failures = setup()
    consumer.fail_on["commit"] = KafkaException("broker gone")
    committer.now_and_then()
    assert failures == [1]
    del consumer.fail_on["commit"]
    now[0] += 1.0
    committer.now_and_then()
    assert consumer.commits == [({0: 2}, True)]


class SlowTransactions:
    """A strategy whose every commit blocks for ``takes_s`` of the test's clock, as a transaction does
    (``transactional=False``: a commit that took as long without being a transaction, e.g. the poll
    thread lost the GIL in the middle of an asynchronous one)."""

    def __init__(self, now: list[float], takes_s: float, transactional: bool = True) -> None:
        self.now, self.takes_s, self.transactional = now, takes_s, transactional
        self.started: list[float] = []

    def commit(
        self, offsets: list[TopicPartition], letters: Sequence[DeadLetter], *, synchronous: bool
    ) -> Committed:
        self.started.append(self.now[0])
        self.now[0] += self.takes_s
        return Committed([TopicPartition(t.topic, t.partition, t.offset) for t in offsets])


def slow_commits(
    takes_s: float, transactional: bool = True
) -> tuple[SlowTransactions, OffsetTracker, Committer, list[float]]:
    """A committer whose commits block for ``takes_s``, and a partition with 1,000 messages polled."""
    now, tracker = [100.0], OffsetTracker()
    strategy = SlowTransactions(now, takes_s, transactional)
    policy = CommitPolicy(every_s=0.1, max_blocking_share=0.1)
    committer = Committer(FakeConsumer(), tracker, policy, clock=lambda: now[0], strategy=strategy)
    tracker.assign(TOPIC, 0)
    for offset in range(1000):
        tracker.track(TOPIC, 0, offset)
    return strategy, tracker, committer, now


def finish_one_per_turn(committer: Committer, tracker: OffsetTracker, now: list[float], turns: int) -> None:
    """The poll loop's turns, 10 ms apart: one more message finished and the committer asked each turn."""
    generation = tracker.generation(TOPIC, 0)
    assert generation is not None
    for offset in range(turns):
        tracker.finish(TOPIC, 0, offset, generation)
        committer.now_and_then()
        now[0] += 0.01


def test_quick_blocking_commits_keep_the_interval() -> None:
    strategy, tracker, committer, now = slow_commits(takes_s=0.002)
    finish_one_per_turn(committer, tracker, now, 100)
    gaps = [b - a for a, b in pairwise(strategy.started)]
    assert len(gaps) >= 7
    assert all(0.1 <= gap < 0.12 + 1e-9 for gap in gaps), gaps


def test_slow_blocking_commits_take_at_most_their_share_of_the_time_while_work_is_in_flight() -> None:
    strategy, tracker, committer, now = slow_commits(takes_s=0.04)  # 40 ms each: one per 0.4 s at most
    finish_one_per_turn(committer, tracker, now, 200)
    gaps = [b - a for a, b in pairwise(strategy.started)]
    assert len(gaps) >= 3
    assert all(0.4 - 1e-9 <= gap <= 0.4 + 0.01 + 1e-9 for gap in gaps), gaps  # 10 ms: one loop turn
    assert 0.04 * len(strategy.started) <= 0.1 * (now[0] - strategy.started[0]) + 0.04


def test_once_everything_polled_is_finished_the_last_work_is_committed_at_the_interval() -> None:
    strategy, tracker, committer, now = slow_commits(takes_s=0.04)
    finish_one_per_turn(committer, tracker, now, 999)  # the last message still runs: stretched
    commits = len(strategy.started)
    while len(strategy.started) == commits:  # up to a commit, so that the next is 0.4 s away
        committer.now_and_then()
        now[0] += 0.01
    last = strategy.started[-1]
    generation = tracker.generation(TOPIC, 0)
    assert generation is not None
    tracker.finish(TOPIC, 0, 999, generation)  # nothing in flight now
    while len(strategy.started) == commits + 1:
        committer.now_and_then()
        now[0] += 0.01
    assert strategy.started[-1] - last <= 0.1 + 0.01 + 1e-9  # the interval, not the stretched 0.4 s
    assert tracker.to_commit() == {}  # everything went in that commit


def test_a_slow_commit_delays_the_next_by_at_most_the_stretch_limit() -> None:
    strategy, tracker, committer, now = slow_commits(takes_s=0.2)  # a tenth would mean 2 s apart
    finish_one_per_turn(committer, tracker, now, 400)
    gaps = [b - a for a, b in pairwise(strategy.started)]
    assert len(gaps) >= 2
    assert all(1.0 - 1e-9 <= gap <= 1.0 + 0.01 + 1e-9 for gap in gaps), gaps  # CommitPolicy.max_stretch_s


def test_a_commit_that_is_not_a_transaction_keeps_the_interval_however_long_it_took() -> None:
    strategy, tracker, committer, now = slow_commits(takes_s=0.04, transactional=False)
    finish_one_per_turn(committer, tracker, now, 100)
    gaps = [b - a for a, b in pairwise(strategy.started)]
    assert len(gaps) >= 5
    assert all(gap <= 0.1 + 0.01 + 1e-9 for gap in gaps), gaps


def test_a_blocking_share_outside_zero_to_one_is_refused() -> None:
    for share in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="max_blocking_share"):
            CommitPolicy(max_blocking_share=share)


def test_a_commit_that_took_its_whole_timeout_delays_the_next_try_by_a_second_at_most() -> None:
    strategy, tracker, committer, now = slow_commits(takes_s=30.0)  # e.g. the broker away: 30 s, then aborted
    finish_one_per_turn(committer, tracker, now, 2)
    while len(strategy.started) < 2:
        committer.now_and_then()
        now[0] += 0.01
    assert strategy.started[1] - strategy.started[0] <= 30.0 + 1.0 + 0.01 + 1e-9


def test_the_stretch_stays_under_a_quarter_of_the_stuck_window() -> None:
    assert CommitPolicy.watched(0.1, stuck_after_s=60).max_stretch_s == 1.0
    assert CommitPolicy.watched(0.1, stuck_after_s=1).max_stretch_s == 0.25  # the setting's minimum
    assert CommitPolicy.watched(0.25, stuck_after_s=2).every_s == 0.25
