"""The commit path on its own: the cadence of asynchronous commits, contiguous positions only,
synchronous commits with per-partition answers, and failures that lose nothing."""

from __future__ import annotations

from confluent_kafka import KafkaException

from internal.consumer.commits import CommitConfirmations, CommitPolicy, Committer
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
