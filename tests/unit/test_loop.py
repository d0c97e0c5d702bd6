"""The poll loop with a fake Kafka consumer and scripted batch handlers: commits, rebalances, outages,
refusals, crashes and stuck partitions - each promise of internal/consumer/loop.py on its own.

The real consumer is proven by tests/e2e; here the loop runs on its own thread as in the service,
and each test waits for a condition (never for the clock alone)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError

from internal.consumer.commits import COMMIT_EVERY_S, CommitConfirmations
from internal.consumer.control import Abandoned, Control
from internal.consumer.dlq import KafkaDeadLetterSink
from internal.consumer.flow import IDLE_POLL_S, QUIET_POLL_S
from internal.consumer.lanes import BatchLimits
from internal.consumer.loop import ConsumerLoop, LoopPolicy
from internal.consumer.messages import BatchReport, Inbound
from internal.consumer.offsets import OffsetTracker
from internal.consumer.processor import BatchProcessor, ProcessingPolicy
from internal.consumer.retry import RetryPolicy
from internal.consumer.state import ConsumerState
from internal.domain.causes import Cause, Failure
from internal.domain.outcomes import Outcome
from internal.domain.validation import ValidationPolicy
from internal.lifecycle import Lifecycle
from internal.pkg.backoff import Backoff
from internal.pkg.health import Health
from tests.orders import order_bytes
from tests.support import wait_until
from tests.unit.fake_kafka import FakeConsumer, FakeMessage, FakeProducer
from tests.unit.test_processor import FakeSink, FakeStore

TIMEOUT_S = 10.0


@dataclass
class Handler:
    """Stores everything at once, unless told to hold a partition or to fail."""

    state: ConsumerState | None = None
    hold: dict[int, threading.Event] = field(default_factory=dict)  # partition -> released when set
    outage_until: threading.Event | None = None  # the first batch reports an outage until set
    bug: Exception | None = None
    batches: list[list[tuple[int, int]]] = field(default_factory=list)
    finished: list[tuple[int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def process(self, batch: Sequence[Inbound], control: Control) -> BatchReport:
        with self.lock:
            self.batches.append([(m.partition, m.offset) for m in batch])
        if self.bug is not None:
            raise self.bug
        if self.outage_until is not None and self.state is not None:
            outage, self.outage_until = self.outage_until, None
            self.state.outage_started(Cause.DATABASE_UNAVAILABLE)
            try:
                while not outage.wait(0.01):
                    if not control.wanted():
                        raise Abandoned
            finally:
                self.state.outage_ended()
        for partition in {m.partition for m in batch}:
            release = self.hold.get(partition)
            while release is not None and not release.wait(0.01):
                if not control.wanted():
                    raise Abandoned
        with self.lock:
            self.finished += [(m.partition, m.offset) for m in batch]
        return BatchReport(tuple(batch), tuple(Outcome.STORED for _ in batch))


@dataclass
class Running:
    consumer: FakeConsumer
    state: ConsumerState
    loop: ConsumerLoop
    thread: threading.Thread

    def committed(self, partition: int) -> int | None:
        return self.consumer.committed_positions().get(partition)

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(TIMEOUT_S)
        assert not self.thread.is_alive(), "the loop did not stop"

    def ended(self) -> bool:
        return not self.thread.is_alive()


def policy(**changes: object) -> LoopPolicy:
    values: dict[str, object] = {
        "topic": "orders",
        "workers": 2,
        "batch": BatchLimits(max_messages=10, max_bytes=1_000_000, max_wait_s=0.005),
        "max_in_flight": 1000,
        "max_in_flight_bytes": 10_000_000,
        "revoke_timeout_s": 0.2,
        "max_consecutive_dead_letters": 0,
        "stuck_after_s": 1.0,
    }
    values.update(changes)
    return LoopPolicy(**values)  # type: ignore[arg-type]


@pytest.fixture
def start() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def run(
        handler: Handler | BatchProcessor,
        consumer: FakeConsumer | None = None,
        on_commit_failure: Callable[[], None] = lambda: None,
        **changes: object,
    ) -> Running:
        consumer = consumer or FakeConsumer()
        state = handler.state if isinstance(handler, Handler) and handler.state else ConsumerState()
        tracker = OffsetTracker()
        consumer.on_commit = CommitConfirmations(tracker, on_commit_failure)
        loop = ConsumerLoop(consumer, handler, policy(**changes), state, tracker=tracker)
        thread = threading.Thread(target=loop.run, name="consumer-poll", daemon=True)
        thread.start()
        running = Running(consumer, state, loop, thread)
        started.append(running)
        return running

    yield run
    for running in started:
        running.loop.stop()
        running.thread.join(TIMEOUT_S)


def test_commits_move_to_the_end_of_each_partition(start: Callable[..., Running]) -> None:
    consumer = FakeConsumer()
    consumer.add(0, 25)
    consumer.add(1, 7)
    consumer.rebalance(assign=[0, 1])
    run = start(Handler(), consumer)
    wait_until(lambda: run.committed(0) == 25 and run.committed(1) == 7, timeout_s=TIMEOUT_S, what="commits")
    run.stop()
    assert consumer.closed


def test_the_worker_threads_are_known_by_object(start: Callable[..., Running]) -> None:
    seen: set[threading.Thread] = set()

    class Noting(Handler):
        def process(self, batch: Sequence[Inbound], control: Control) -> BatchReport:
            with self.lock:
                seen.add(threading.current_thread())
            return super().process(batch, control)

    consumer = FakeConsumer()
    consumer.add(0, 30)
    consumer.add(1, 30)
    consumer.rebalance(assign=[0, 1])
    run = start(Noting(), consumer)
    wait_until(lambda: run.committed(0) == 30 and run.committed(1) == 30, timeout_s=TIMEOUT_S, what="commits")
    assert seen <= set(run.loop.worker_threads())
    assert 1 <= len(run.loop.worker_threads()) <= 2  # policy.workers
    run.stop()


def test_a_lone_message_is_handed_to_a_worker_without_waiting_for_more(
    start: Callable[..., Running],
) -> None:
    handler = Handler()
    consumer = FakeConsumer()
    consumer.add(0, 1)
    consumer.rebalance(assign=[0])
    # A wait bound of a minute: the message must not wait for it (nothing else is coming).
    run = start(handler, consumer, batch=BatchLimits(max_messages=10, max_bytes=1_000_000, max_wait_s=60))
    wait_until(lambda: run.committed(0) == 1, timeout_s=TIMEOUT_S, what="the lone message committed")
    assert handler.batches == [[(0, 0)]]


def test_a_backlog_is_written_in_full_batches(start: Callable[..., Running]) -> None:
    handler = Handler()
    consumer = FakeConsumer()
    consumer.add(0, 25)  # polled in full chunks of 10: a backlog
    consumer.rebalance(assign=[0])
    run = start(handler, consumer, batch=BatchLimits(max_messages=10, max_bytes=1_000_000, max_wait_s=60))
    wait_until(lambda: run.committed(0) == 25, timeout_s=TIMEOUT_S, what="the backlog committed")
    # The last five came in a chunk that was not full: the backlog was over, they went at once.
    assert [len(b) for b in handler.batches] == [10, 10, 5]


def test_async_commits_are_sent_at_most_every_commit_interval() -> None:
    handler = Handler()
    consumer = FakeConsumer()
    consumer.add(0, 20)
    consumer.rebalance(assign=[0])
    tracker = OffsetTracker()
    consumer.on_commit = CommitConfirmations(tracker, lambda: None)
    now = [100.0]  # the loop's clock, moved by the test only
    loop = ConsumerLoop(
        consumer,
        handler,
        policy(batch=BatchLimits(max_messages=1, max_bytes=1_000_000, max_wait_s=60)),
        ConsumerState(),
        tracker=tracker,
        clock=lambda: now[0],
    )
    thread = threading.Thread(target=loop.run, name="consumer-poll", daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(handler.finished) == 20, timeout_s=TIMEOUT_S, what="20 batches of one")
        early = list(consumer.commits)
        assert len(early) <= 1  # the loop's first turn, before any batch finished: nothing new since
        now[0] += COMMIT_EVERY_S
        wait_until(
            lambda: consumer.committed_positions().get(0) == 20, timeout_s=TIMEOUT_S, what="the commit"
        )
        assert len(consumer.commits) == len(early) + 1  # twenty batches, one commit request
    finally:
        loop.stop()
        thread.join(TIMEOUT_S)


def test_a_partition_is_committed_only_up_to_its_first_unfinished_message(
    start: Callable[..., Running],
) -> None:
    handler = Handler(hold={0: threading.Event()})  # partition 0's batch does not finish
    consumer = FakeConsumer()
    consumer.add(0, 5)
    consumer.add(1, 5)
    consumer.rebalance(assign=[0, 1])
    run = start(handler, consumer)
    wait_until(lambda: run.committed(1) == 5, timeout_s=TIMEOUT_S, what="partition 1 committed")
    assert run.committed(0) is None
    handler.hold[0].set()
    wait_until(lambda: run.committed(0) == 5, timeout_s=TIMEOUT_S, what="partition 0 committed")


def test_a_revoke_abandons_a_batch_that_outlives_the_revoke_timeout(start: Callable[..., Running]) -> None:
    handler = Handler(hold={0: threading.Event()})
    consumer = FakeConsumer()
    consumer.add(0, 3)
    consumer.add(1, 3)
    consumer.rebalance(assign=[0, 1])
    run = start(handler, consumer)
    wait_until(lambda: run.committed(1) == 3, timeout_s=TIMEOUT_S, what="partition 1 committed")
    wait_until(lambda: handler.batches, timeout_s=TIMEOUT_S, what="partition 0's batch running")
    consumer.rebalance(revoke=[0, 1])
    wait_until(lambda: consumer.rebalances == 2, timeout_s=TIMEOUT_S, what="the revoke")
    assert not run.state.assigned
    # The held batch outlived revoke_timeout_s: its Control turned unwanted and it gave up, nothing
    # of partition 0 was committed (the next owner gets it again).
    wait_until(lambda: not run.loop._lanes.running(), timeout_s=TIMEOUT_S, what="the batch to give up")
    assert run.committed(0) is None
    assert not any(p == 0 for p, _ in handler.finished)


@dataclass
class LateHandler(Handler):
    """The first batch ignores its Control and finishes whenever ``first`` is set (a write that was
    already in the database when the partition moved); the second waits for ``second``."""

    first: threading.Event = field(default_factory=threading.Event)
    second: threading.Event = field(default_factory=threading.Event)

    def process(self, batch: Sequence[Inbound], control: Control) -> BatchReport:
        with self.lock:
            self.batches.append([(m.partition, m.offset) for m in batch])
            number = len(self.batches)
        (self.first if number == 1 else self.second).wait(TIMEOUT_S)
        return BatchReport(tuple(batch), tuple(Outcome.STORED for _ in batch))


def test_a_result_of_an_older_assignment_never_moves_the_new_one(start: Callable[..., Running]) -> None:
    handler = LateHandler()
    consumer = FakeConsumer()
    consumer.add(0, 3)
    consumer.rebalance(assign=[0])
    run = start(handler, consumer, revoke_timeout_s=0.0)
    wait_until(lambda: handler.batches, timeout_s=TIMEOUT_S, what="the first batch running")
    consumer.rebalance(revoke=[0], assign=[0])  # revoked and assigned again: a new generation
    wait_until(lambda: consumer.rebalances == 2, timeout_s=TIMEOUT_S, what="the reassignment")
    handler.first.set()  # the old generation's batch lands now
    wait_until(lambda: len(handler.batches) == 2, timeout_s=TIMEOUT_S, what="the new generation's batch")
    assert run.committed(0) is None  # the late result was not taken for the new assignment's
    handler.second.set()
    wait_until(lambda: run.committed(0) == 3, timeout_s=TIMEOUT_S, what="the new assignment committed")


def test_an_outage_pauses_every_partition_and_the_end_resumes_them(start: Callable[..., Running]) -> None:
    state = ConsumerState()
    outage = threading.Event()
    handler = Handler(state=state, outage_until=outage)
    consumer = FakeConsumer()
    consumer.add(0, 2)
    consumer.add(1, 2)
    consumer.rebalance(assign=[0, 1])
    run = start(handler, consumer)
    wait_until(lambda: consumer.paused == {0, 1}, timeout_s=TIMEOUT_S, what="both partitions paused")
    assert state.paused
    outage.set()
    wait_until(lambda: not consumer.paused, timeout_s=TIMEOUT_S, what="partitions resumed")
    wait_until(lambda: run.committed(0) == 2 and run.committed(1) == 2, timeout_s=TIMEOUT_S, what="commits")


def test_a_failed_commit_is_retried_from_the_trackers_state(start: Callable[..., Running]) -> None:
    consumer = FakeConsumer(fail_commits=1)  # the first asynchronous commit is answered with an error
    consumer.add(0, 4)
    consumer.rebalance(assign=[0])
    failures: list[int] = []
    run = start(Handler(), consumer, on_commit_failure=lambda: failures.append(1))
    wait_until(lambda: run.committed(0) == 4, timeout_s=TIMEOUT_S, what="the commit retried")
    asked = [positions[0] for positions, _ in consumer.commits if 0 in positions]
    assert failures == [1]
    assert asked[:2] == [asked[0], asked[0]]  # the failed position was offered again, as it was


def test_an_exception_on_the_poll_thread_ends_the_loop_as_a_crash(start: Callable[..., Running]) -> None:
    state = ConsumerState()
    handler = Handler(state=state, outage_until=threading.Event())
    consumer = FakeConsumer(fail_on={"pause": RuntimeError("pause exploded")})
    consumer.add(0, 3)
    consumer.rebalance(assign=[0])
    run = start(handler, consumer)
    wait_until(run.ended, timeout_s=TIMEOUT_S, what="the loop to end")
    assert state.crashed == Failure(Cause.POLL_THREAD_CRASHED, "RuntimeError: pause exploded")
    assert not state.running
    assert consumer.closed  # the ordered stop still ran
    assert run.committed(0) is None  # nothing past unfinished work
    assert Health(state, lambda: None, Lifecycle(time.monotonic)).liveness()[0].ok is False


def test_a_bug_in_the_batch_handler_ends_the_loop_as_a_crash(start: Callable[..., Running]) -> None:
    consumer = FakeConsumer()
    consumer.add(0, 3)
    consumer.rebalance(assign=[0])
    run = start(Handler(bug=KeyError("oops")), consumer)
    wait_until(run.ended, timeout_s=TIMEOUT_S, what="the loop to end")
    assert run.state.crashed is not None
    assert "KeyError" in run.state.crashed.detail
    assert run.committed(0) is None


def test_a_stuck_partition_is_reported_and_recovers_by_itself(start: Callable[..., Running]) -> None:
    release = threading.Event()
    consumer = FakeConsumer()
    consumer.add(0, 3)
    consumer.add(1, 3)
    consumer.rebalance(assign=[0, 1])
    run = start(Handler(hold={0: release}), consumer, stuck_after_s=1.0, workers=2)
    wait_until(lambda: ("orders", 0) in run.state.stuck, timeout_s=TIMEOUT_S, what="partition 0 stuck")
    assert ("orders", 1) not in run.state.stuck  # it moved
    assert "orders[0] stuck at offset 0" in run.state.stuck[("orders", 0)]
    readiness = {c.name: c for c in Health(run.state, lambda: None, Lifecycle(time.monotonic)).readiness()}
    assert not readiness["partitions"].ok
    assert "orders[0]" in readiness["partitions"].detail
    assert run.state.partitions() == [("orders", 0, True), ("orders", 1, False)]
    release.set()
    wait_until(lambda: not run.state.stuck, timeout_s=TIMEOUT_S, what="partition 0 moving again")


def test_a_permanent_produce_refusal_ends_in_a_stub_and_the_offsets_move(
    start: Callable[..., Running],
) -> None:
    producer = FakeProducer(
        refuse_local=lambda v: KafkaError.MSG_SIZE_TOO_LARGE if v is not None and len(v) > 5000 else None
    )
    sink = KafkaDeadLetterSink(
        "unused:9092",
        "orders.dlq",
        group="g",
        version="v",
        max_message_bytes=1000,
        max_error_bytes=200,
        producer_factory=lambda _config: producer,
    )
    processor = BatchProcessor(
        store=FakeStore(),
        dead_letters=sink,
        stored_sink=FakeSink(),
        outage=ConsumerState(),
        policy=ProcessingPolicy(
            ValidationPolicy(max_message_bytes=5000), RetryPolicy(Backoff(0.01, 0.02), 3)
        ),
        clock=lambda: datetime(2026, 6, 1, tzinfo=UTC),
    )
    consumer = FakeConsumer()
    values = {0: order_bytes(1), 1: b"\xff" * 9000, 2: order_bytes(2)}  # an undecodable near-limit one
    consumer.add(0, 3, value=lambda o: values[o])
    consumer.rebalance(assign=[0])
    run = start(processor, consumer)
    wait_until(lambda: run.committed(0) == 3, timeout_s=TIMEOUT_S, what="the offsets past the poison")
    (letter,) = producer.delivered  # one letter, the stub: the refusal was not retried as is
    value, headers = letter
    assert value == b"\xff" * 1024
    assert ("dlq.truncated", b"true") in headers
    assert ("dlq.original.size", b"9000") in headers


def test_a_fatal_error_stops_consuming_but_is_not_a_crash(start: Callable[..., Running]) -> None:
    consumer = FakeConsumer()
    consumer.add(0, 30)
    consumer.rebalance(assign=[0])

    class AllDeadLettered(Handler):
        def process(self, batch: Sequence[Inbound], control: Control) -> BatchReport:
            return BatchReport(tuple(batch), tuple(Outcome.INVALID for _ in batch))

    run = start(AllDeadLettered(), consumer, max_consecutive_dead_letters=5)
    wait_until(run.ended, timeout_s=TIMEOUT_S, what="the storm guard")
    assert run.state.fatal is not None
    assert "dead-letters in a row" in run.state.fatal.detail
    assert run.state.fatal.cause is Cause.DEAD_LETTER_STORM
    assert run.state.crashed is None
    assert (
        Health(run.state, lambda: None, Lifecycle(time.monotonic)).liveness()[0].ok
    )  # stays up; readiness says why
    assert run.committed(0) == 10  # the batch that crossed the limit was finished and committed


def test_a_message_whose_headers_cannot_be_read_is_still_processed(start: Callable[..., Running]) -> None:
    class Unreadable(FakeMessage):
        def headers(self) -> list[tuple[str, str | bytes | None]] | None:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    consumer = FakeConsumer()
    consumer.add(0, 2)
    consumer.queued[0][1] = Unreadable(0, 1)
    consumer.rebalance(assign=[0])
    handler = Handler()
    run = start(handler, consumer)
    wait_until(lambda: run.committed(0) == 2, timeout_s=TIMEOUT_S, what="both committed")
    assert handler.finished == [(0, 0), (0, 1)]
    assert run.state.crashed is None


def test_an_outage_with_the_budget_full_still_polls_to_keep_the_group(start: Callable[..., Running]) -> None:
    state = ConsumerState()
    outage = threading.Event()
    consumer = FakeConsumer()
    consumer.add(0, 50)
    consumer.rebalance(assign=[0])
    run = start(Handler(state=state, outage_until=outage), consumer, max_in_flight=5)
    wait_until(lambda: consumer.paused == {0}, timeout_s=TIMEOUT_S, what="paused with the budget full")
    before = consumer.consumes
    wait_until(lambda: consumer.consumes > before + 20, timeout_s=TIMEOUT_S, what="consume() called on")
    outage.set()
    wait_until(lambda: run.committed(0) == 50, timeout_s=TIMEOUT_S, what="everything committed")


def test_a_partition_starved_by_the_budget_is_reported_stuck(start: Callable[..., Running]) -> None:
    release = threading.Event()
    consumer = FakeConsumer()
    consumer.add(0, 20)
    consumer.add(1, 20)
    consumer.rebalance(assign=[0, 1])
    state = ConsumerState()
    state.reported_commits = {("orders", 1): 0}  # what librdkafka's statistics would say
    handler = Handler(state=state, hold={0: release})
    # The budget fills with partition 0's messages (consume() hands out partition 0 first here), so
    # partition 1 is never polled in this assignment: only the statistics know where it stands.
    run = start(handler, consumer, max_in_flight=20, stuck_after_s=1.0, workers=1)
    wait_until(lambda: ("orders", 1) in run.state.stuck, timeout_s=TIMEOUT_S, what="partition 1 stuck")
    release.set()
    wait_until(lambda: not run.state.stuck, timeout_s=TIMEOUT_S, what="moving again")


def test_the_loop_comes_back_soon_while_work_is_in_flight_and_rarely_when_all_is_committed(
    start: Callable[..., Running],
) -> None:
    consumer = FakeConsumer()
    consumer.add(0, 3)
    consumer.rebalance(assign=[0])
    release = threading.Event()
    handler = Handler(hold={0: release})
    run = start(handler, consumer)
    wait_until(lambda: handler.batches, timeout_s=TIMEOUT_S, what="a batch in flight")
    seen = len(consumer.waits)
    wait_until(lambda: len(consumer.waits) > seen + 5, timeout_s=TIMEOUT_S, what="polls meanwhile")
    # A worker cannot wake a blocked consume(): the loop must be back soon to collect and commit.
    assert max(consumer.waits[seen:]) <= IDLE_POLL_S
    release.set()
    wait_until(lambda: run.committed(0) == 3, timeout_s=TIMEOUT_S, what="committed")
    # Nothing in flight or to commit: it may block longer (an arrival would wake a real consume()).
    wait_until(lambda: QUIET_POLL_S in consumer.waits, timeout_s=TIMEOUT_S, what="a quiet poll")


def test_a_partition_whose_end_is_past_its_last_message_is_not_stuck(start: Callable[..., Running]) -> None:
    consumer = FakeConsumer()
    consumer.add(0, 5)
    consumer.ends[0] = 6  # a transaction marker (or a compacted gap) after the last message
    consumer.rebalance(assign=[0])
    run = start(Handler(), consumer, stuck_after_s=1.0)
    wait_until(lambda: run.committed(0) == 5, timeout_s=TIMEOUT_S, what="committed")
    # The detector looks every stuck_after_s / 4 at most: eight more looks span well past stuck_after_s.
    looks = consumer.watermark_reads
    wait_until(
        lambda: consumer.watermark_reads > looks + 8, timeout_s=TIMEOUT_S, what="well past stuck_after_s"
    )
    assert not run.state.stuck


def test_a_synchronous_commit_refused_for_a_partition_is_not_taken_as_confirmed() -> None:
    tracker = OffsetTracker()
    gen = tracker.assign("orders", 0)
    tracker.track("orders", 0, 0)
    tracker.finish("orders", 0, 0, gen)
    tracker.committed({("orders", 0): 1})
    assert tracker.commit_failed("orders", 0, 1)  # offered again
    assert tracker.to_commit() == {("orders", 0): 1}
    assert tracker.progress("orders", 0) == 0  # still where it was polled from: not confirmed
