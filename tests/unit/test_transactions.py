"""The commit path in both modes with a fake consumer and producer: letters and offsets in one
transaction, a letter of running work kept out of an earlier commit, abort -> rewind, fenced -> stop,
bounded commits and aborts, stubs, revoke and lost partitions, transaction markers; and the
at-least-once strategy behind the same Committer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest
from confluent_kafka import KafkaError, TopicPartition

from internal.consumer import transactions
from internal.consumer.commits import (
    AtLeastOnceCommit,
    CommitConfirmations,
    CommitPolicy,
    Committer,
    LetterLedger,
    TransactionAborted,
)
from internal.consumer.control import Abandoned, Control
from internal.consumer.lanes import BatchLimits
from internal.consumer.letters import H_OFFSET, H_TRUNCATED
from internal.consumer.loop import ConsumerLoop, LoopPolicy
from internal.consumer.messages import BatchReport, DeadLetter, Inbound
from internal.consumer.offsets import OffsetTracker
from internal.consumer.state import ConsumerState
from internal.consumer.transactions import TransactionalCommit, TransactionFatal, TransactionsUnavailable
from internal.domain.causes import Cause
from internal.domain.errors import FatalError
from internal.domain.outcomes import Outcome
from internal.domain.reasons import DeadLetterReason
from tests.support import wait_until
from tests.unit.fake_kafka import TOPIC, FakeConsumer, FakeProducer, FakeTxnProducer

TIMEOUT_S = 10.0
DLQ = "orders.dlq"
HUGE = b"x" * 2000  # refused by the fakes below; its stub (the first 1 KiB) is not


def inbound(partition: int, offset: int, generation: int = 1, value: bytes = b"bad") -> Inbound:
    return Inbound(TOPIC, partition, offset, None, value, (), None, generation)


def letter(partition: int, offset: int, generation: int = 1, value: bytes = b"bad") -> DeadLetter:
    return DeadLetter(inbound(partition, offset, generation, value), DeadLetterReason.INVALID, "no", 1)


def origin_offsets(visible: Sequence[tuple[bytes | None, list[tuple[str, object]]]]) -> list[int]:
    out = []
    for _v, headers in visible:
        raw = dict(headers)[H_OFFSET]
        out.append(int(raw.decode() if isinstance(raw, bytes) else str(raw)))
    return out


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Setup:
    consumer: FakeConsumer
    producer: FakeTxnProducer
    tracker: OffsetTracker
    committer: Committer
    strategy: TransactionalCommit
    clock: Clock
    aborted: list[set[tuple[str, int]]] = field(default_factory=list)
    committed: list[tuple[list[DeadLetter], float]] = field(default_factory=list)

    def finish(self, partition: int, offsets: Sequence[int], letters: Sequence[int] = ()) -> None:
        for offset in offsets:
            self.tracker.finish(TOPIC, partition, offset, self.tracker.generation(TOPIC, partition) or 0)
        self.committer.ledger.add([letter(partition, o) for o in letters])


def setup(timeout_s: float = 5.0, polled: int = 5) -> Setup:
    consumer, producer, tracker, clock = FakeConsumer(), FakeTxnProducer(), OffsetTracker(), Clock()
    producer.consumer = consumer
    strategy = TransactionalCommit(
        producer,
        consumer,
        topic=DLQ,
        group="g",
        version="1",
        max_error_bytes=4096,
        timeout_s=timeout_s,
        clock=clock,
        pause=clock.pause,
    )
    aborted: list[set[tuple[str, int]]] = []
    done: list[tuple[list[DeadLetter], float]] = []
    committer = Committer(
        consumer,
        tracker,
        CommitPolicy(every_s=1.0),
        clock=clock,
        strategy=strategy,
        on_abort=aborted.append,
        on_committed=lambda letters, s: done.append((list(letters), s)),
    )
    for partition in (0, 1):
        tracker.assign(TOPIC, partition)
        for offset in range(polled):
            tracker.track(TOPIC, partition, offset)
    return Setup(consumer, producer, tracker, committer, strategy, clock, aborted, done)


# ---- the transaction ------------------------------------------------------------------------------
def test_letters_and_offsets_are_committed_in_one_transaction() -> None:
    s = setup()
    s.finish(0, range(5), letters=[1, 3])
    s.committer.now_and_then()
    p = s.producer
    assert p.calls == ["begin_transaction", "send_offsets_to_transaction", "commit_transaction"]
    assert p.transactions == [({0: 5}, 2)]
    assert origin_offsets(p.visible) == [1, 3]
    assert s.consumer.committed_positions() == {0: 5}
    assert s.tracker.progress(TOPIC, 0) == 5  # confirmed by the commit itself
    assert [len(letters) for letters, _ in s.committed] == [2]  # counted when the transaction commits
    assert len(s.committer.ledger) == 0


def test_a_letter_of_work_not_yet_contiguous_waits_for_a_later_commit() -> None:
    s = setup()
    s.finish(0, [0, 1], letters=[1])
    s.finish(0, [3, 4], letters=[3])  # offset 2 still running: 3's letter must not go with 0..1
    s.committer.now_and_then()
    assert s.producer.transactions == [({0: 2}, 1)]
    assert origin_offsets(s.producer.visible) == [1]
    s.finish(0, [2])
    s.clock.now += 1.0
    s.committer.now_and_then()
    assert s.producer.transactions[-1] == ({0: 5}, 1)
    assert origin_offsets(s.producer.visible) == [1, 3]


def test_nothing_to_commit_opens_no_transaction() -> None:
    s = setup()
    s.committer.now_and_then()
    s.committer.commit_now()
    assert s.producer.calls == []


def test_an_abortable_error_aborts_and_hands_the_partitions_to_rewind() -> None:
    s = setup()
    s.finish(0, range(5), letters=[2])
    s.producer.fail("commit_transaction", KafkaError._STATE, abortable=True)
    s.committer.now_and_then()
    assert s.producer.aborts == 1
    assert s.producer.visible == []
    assert s.consumer.committed_positions() == {}
    assert s.aborted == [{(TOPIC, 0)}]
    assert s.committed == []  # no letter counted


def test_an_error_of_send_offsets_aborts_too() -> None:
    s = setup()
    s.finish(1, range(3))
    s.producer.fail("send_offsets_to_transaction", KafkaError.ILLEGAL_GENERATION, abortable=True)
    s.committer.commit_now()
    assert s.producer.aborts == 1
    assert s.aborted == [{(TOPIC, 1)}]


def test_a_fenced_producer_is_fatal_and_never_aborts() -> None:
    s = setup()
    s.finish(0, range(5), letters=[0])
    s.producer.fail("commit_transaction", KafkaError._FENCED, fatal=True)
    with pytest.raises(TransactionFatal) as raised:
        s.committer.now_and_then()
    assert raised.value.cause is Cause.TRANSACTION_FATAL
    assert s.producer.aborts == 0
    assert s.producer.visible == []


def test_a_retriable_commit_error_is_retried_within_the_deadline() -> None:
    s = setup()
    s.finish(0, range(5))
    s.producer.fail("commit_transaction", KafkaError._TIMED_OUT, KafkaError._TIMED_OUT, retriable=True)
    s.committer.now_and_then()
    assert s.producer.calls.count("commit_transaction") == 3
    assert s.consumer.committed_positions() == {0: 5}
    assert s.producer.aborts == 0


def test_a_commit_that_cannot_finish_in_time_is_aborted_never_a_hang() -> None:
    s = setup(timeout_s=1.0)
    s.finish(0, range(5))
    s.producer.fail("commit_transaction", *[KafkaError._TIMED_OUT] * 100, retriable=True)
    s.committer.now_and_then()
    assert 1 < s.producer.calls.count("commit_transaction") < 100
    assert s.producer.aborts == 1
    assert s.aborted == [{(TOPIC, 0)}]


def test_an_abort_that_cannot_finish_in_time_is_fatal() -> None:
    s = setup(timeout_s=1.0)
    s.finish(0, range(5))
    s.producer.fail("commit_transaction", KafkaError._STATE, abortable=True)
    s.producer.fail("abort_transaction", *[KafkaError._TIMED_OUT] * 100, retriable=True)
    with pytest.raises(TransactionFatal):
        s.committer.now_and_then()


def test_a_letter_refused_before_queuing_goes_as_a_stub_in_the_same_transaction() -> None:
    s = setup()
    s.producer.refuse_local = lambda v: KafkaError.MSG_SIZE_TOO_LARGE if len(v or b"") > 1500 else None
    s.finish(0, range(5))
    s.committer.ledger.add([letter(0, 4, value=HUGE)])
    s.committer.now_and_then()
    ((_v, headers),) = s.producer.visible
    assert dict(headers)[H_TRUNCATED] in ("true", b"true")
    assert s.committed[0][0][0].truncated is not None


def test_a_letter_refused_by_the_broker_aborts_then_goes_as_a_stub() -> None:
    s = setup()
    s.producer.refuse_delivery = lambda v: KafkaError.MSG_SIZE_TOO_LARGE if len(v or b"") > 1500 else None
    s.finish(0, range(5))
    s.committer.ledger.add([letter(0, 4, value=HUGE)])
    s.committer.now_and_then()
    assert s.producer.aborts == 1
    assert s.aborted == [{(TOPIC, 0)}]
    # The loop rewinds; the message is refused again and its letter computed again. The broker refuses
    # a whole record batch, so first it goes alone (refused again: it was the one) ...
    s.committer.ledger.drop()
    s.clock.now += 1.0
    s.committer.ledger.add([letter(0, 4, value=HUGE)])
    s.committer.now_and_then()
    assert s.producer.aborts == 2
    assert s.producer.visible == []
    # ... then as a stub.
    s.committer.ledger.drop()
    s.clock.now += 1.0
    s.committer.ledger.add([letter(0, 4, value=HUGE)])
    s.committer.now_and_then()
    ((_v, headers),) = s.producer.visible
    assert dict(headers)[H_TRUNCATED] in ("true", b"true")


def test_init_failure_names_what_to_change() -> None:
    s = setup()
    s.producer.fail("init_transactions", KafkaError._TIMED_OUT, retriable=True)
    with pytest.raises(TransactionsUnavailable) as raised:
        s.strategy.init()
    text = str(raised.value)
    assert "transaction.state.log.replication.factor" in text
    assert "kafka.transactions=false" in text
    assert raised.value.cause is Cause.TRANSACTIONS_UNAVAILABLE


def test_transaction_markers_never_hold_back_a_commit() -> None:
    s = setup()
    s.finish(0, range(5))
    s.consumer.positions[0] = 7  # two markers after offset 4: the consumer's position is past them
    s.committer.now_and_then()
    assert s.consumer.committed_positions() == {0: 7}


def test_a_position_is_not_taken_while_work_is_in_flight() -> None:
    s = setup()
    s.finish(0, [0, 1])
    s.consumer.positions[0] = 7
    s.committer.now_and_then()
    assert s.consumer.committed_positions() == {0: 2}


# ---- the at-least-once strategy, behind the same Committer ----------------------------------------
class RecordingSink:
    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []

    def send(self, letters: Sequence[DeadLetter]) -> Sequence[DeadLetter]:
        self.sent.extend(letters)
        return letters


def test_at_least_once_commits_offsets_alone() -> None:
    consumer, tracker = FakeConsumer(), OffsetTracker()
    consumer.on_commit = CommitConfirmations(tracker)
    committer = Committer(consumer, tracker, clock=lambda: 0.0, strategy=AtLeastOnceCommit(consumer))
    generation = tracker.assign(TOPIC, 0)
    for offset in range(3):
        tracker.track(TOPIC, 0, offset)
        tracker.finish(TOPIC, 0, offset, generation)
    committer.commit_now()
    assert consumer.commits == [({0: 3}, False)]
    assert not committer.transactional


def test_at_least_once_sends_letters_left_for_the_commit_before_the_offsets() -> None:
    consumer, tracker, sink = FakeConsumer(), OffsetTracker(), RecordingSink()
    ledger = LetterLedger()
    committer = Committer(
        consumer, tracker, clock=lambda: 0.0, strategy=AtLeastOnceCommit(consumer, sink), ledger=ledger
    )
    generation = tracker.assign(TOPIC, 0)
    for offset in range(3):
        tracker.track(TOPIC, 0, offset)
        tracker.finish(TOPIC, 0, offset, generation)
    ledger.add([letter(0, 1)])
    committer.commit_now()
    assert [x.message.offset for x in sink.sent] == [1]
    assert consumer.commits == [({0: 3}, False)]
    assert len(ledger) == 0


def test_the_ledger_counts_bytes_and_drops_by_partition() -> None:
    ledger = LetterLedger()
    ledger.add([letter(0, 1), letter(1, 1)])
    assert ledger.bytes == 6
    ledger.drop({(TOPIC, 0)})
    assert ledger.bytes == 3
    assert [x.message.partition for x in ledger.due({(TOPIC, 1): 5})] == [1]


def test_transaction_aborted_is_an_exception() -> None:
    assert issubclass(TransactionAborted, Exception)


# ---- the loop: rewind, revoke, lost ---------------------------------------------------------------
@dataclass
class LetterHandler:
    """Dead-letters every even offset (letters left for the commit); ``hold`` keeps a partition's
    batches running until set."""

    hold: dict[int, threading.Event] = field(default_factory=dict)
    processed: list[tuple[int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def process(self, batch: Sequence[Inbound], control: Control) -> BatchReport:
        for partition in {m.partition for m in batch}:
            release = self.hold.get(partition)
            while release is not None and not release.wait(0.01):
                if not control.wanted():
                    raise Abandoned
        with self.lock:
            self.processed += [(m.partition, m.offset) for m in batch]
        outcomes = tuple(Outcome.INVALID if m.offset % 2 == 0 else Outcome.STORED for m in batch)
        letters = tuple(
            DeadLetter(m, DeadLetterReason.INVALID, "even", 1) for m in batch if m.offset % 2 == 0
        )
        return BatchReport(tuple(batch), outcomes, letters=letters)


@dataclass
class Loop:
    consumer: FakeConsumer
    producer: FakeTxnProducer
    loop: ConsumerLoop
    thread: threading.Thread
    rewinds: list[int]


@pytest.fixture
def start() -> Iterator[Callable[..., Loop]]:
    started: list[Loop] = []

    def run(handler: LetterHandler, consumer: FakeConsumer, producer: FakeTxnProducer) -> Loop:
        producer.consumer = consumer
        strategy = TransactionalCommit(
            producer, consumer, topic=DLQ, group="g", version="1", max_error_bytes=4096, timeout_s=2.0
        )
        rewinds: list[int] = []
        loop = ConsumerLoop(
            consumer,
            handler,
            LoopPolicy(
                topic=TOPIC,
                workers=2,
                batch=BatchLimits(max_messages=10, max_bytes=1_000_000, max_wait_s=0.005),
                max_in_flight=1000,
                max_in_flight_bytes=10_000_000,
                revoke_timeout_s=0.5,
                max_consecutive_dead_letters=0,
                stuck_after_s=5.0,
                commit=CommitPolicy(every_s=0.02),
            ),
            ConsumerState(),
            commit_strategy=strategy,
            on_rewind=rewinds.append,
        )
        thread = threading.Thread(target=loop.run, name="consumer-poll", daemon=True)
        thread.start()
        running = Loop(consumer, producer, loop, thread, rewinds)
        started.append(running)
        return running

    yield run
    for running in started:
        running.loop.stop()
        running.thread.join(TIMEOUT_S)


def test_an_aborted_transaction_rewinds_and_every_letter_is_visible_once(start: Callable[..., Loop]) -> None:
    consumer, producer = FakeConsumer(), FakeTxnProducer()
    consumer.add(0, 10)
    consumer.rebalance(assign=[0])
    producer.fail("commit_transaction", KafkaError._STATE, abortable=True)
    run = start(LetterHandler(), consumer, producer)
    wait_until(lambda: consumer.committed_positions().get(0) == 10, timeout_s=TIMEOUT_S, what="commit")
    assert producer.aborts == 1
    assert consumer.seeks == [(0, 0)]  # nothing was committed: read again from the group's start
    assert run.rewinds == [1]
    assert origin_offsets(producer.visible) == [0, 2, 4, 6, 8]  # nothing lost, nothing doubled


def test_a_revoke_commits_what_is_finished_in_a_transaction_then_releases(start: Callable[..., Loop]) -> None:
    consumer, producer = FakeConsumer(), FakeTxnProducer()
    handler = LetterHandler(hold={1: threading.Event()})
    consumer.add(0, 4)
    consumer.add(1, 4)
    consumer.rebalance(assign=[0, 1])
    start(handler, consumer, producer)
    wait_until(lambda: consumer.committed_positions().get(0) == 4, timeout_s=TIMEOUT_S, what="p0")
    consumer.add(0, 2)  # offsets 4, 5: finished before the revoke, committed by it
    wait_until(lambda: (0, 5) in handler.processed, timeout_s=TIMEOUT_S, what="p0 4..5 processed")
    consumer.rebalance(revoke=[0, 1])
    wait_until(lambda: consumer.rebalances == 2, timeout_s=TIMEOUT_S, what="the revoke")
    assert consumer.committed_positions().get(0) == 6
    assert consumer.committed_positions().get(1) is None  # still running at the revoke: not committed
    assert origin_offsets(producer.visible) == [0, 2, 4]  # partition 1's letters never visible
    assert not producer.open


def test_lost_partitions_drop_their_letters_and_commit_nothing(start: Callable[..., Loop]) -> None:
    consumer, producer = FakeConsumer(), FakeTxnProducer()
    handler = LetterHandler()
    consumer.add(0, 4)
    consumer.rebalance(assign=[0])
    run = start(handler, consumer, producer)
    wait_until(lambda: consumer.committed_positions().get(0) == 4, timeout_s=TIMEOUT_S, what="p0")
    handler.hold[0] = threading.Event()
    consumer.add(0, 2)
    lost = consumer.callbacks["on_lost"]
    assert lost is not None
    wait_until(lambda: bool(run.loop._lanes.running()), timeout_s=TIMEOUT_S, what="a batch running")

    def lose() -> None:
        lost(consumer, [TopicPartition(TOPIC, 0)])

    with consumer.lock:
        consumer.events.append(lose)
    wait_until(lambda: not run.loop._state.assigned, timeout_s=TIMEOUT_S, what="the partition lost")
    handler.hold[0].set()  # the batch lands after the loss: its letters must not be committed
    wait_until(lambda: not run.loop._lanes.running(), timeout_s=TIMEOUT_S, what="the batch done")
    run.loop.stop()
    run.thread.join(TIMEOUT_S)
    assert consumer.committed_positions() == {0: 4}
    assert origin_offsets(producer.visible) == [0, 2]
    assert len(run.loop._letters) == 0


def test_fake_producer_is_not_transactional() -> None:
    assert not hasattr(FakeProducer(), "begin_transaction")


def test_a_stub_refused_for_good_stops_consuming_as_today() -> None:
    s = setup()
    s.producer.refuse_delivery = lambda _v: KafkaError.TOPIC_AUTHORIZATION_FAILED
    s.finish(0, range(5), letters=[4])
    s.committer.now_and_then()  # the full letter refused: aborted, remembered
    for attempt in range(2):  # refused alone too (it was the one, not a neighbour in its batch): a stub next
        s.committer.ledger.drop()
        s.committer.ledger.add([letter(0, 4)])
        s.clock.now += 1.0
        if attempt == 0:
            s.committer.now_and_then()
    with pytest.raises(FatalError) as raised:
        s.committer.now_and_then()  # its stub refused too: the topic is unusable
    assert raised.value.cause is Cause.DEAD_LETTER_REFUSED
    assert s.producer.aborts == 3
    assert s.producer.visible == []


def test_a_fatal_error_at_begin_is_fatal_and_a_failed_begin_aborts_nothing() -> None:
    s = setup()
    s.finish(0, range(5))
    s.producer.fail("begin_transaction", KafkaError._STATE)
    s.committer.now_and_then()
    assert s.producer.aborts == 0  # no transaction was open
    assert s.aborted == [{(TOPIC, 0)}]
    s.producer.fail("begin_transaction", KafkaError._FENCED, fatal=True)
    s.clock.now += 1.0
    with pytest.raises(TransactionFatal):
        s.committer.now_and_then()


def test_a_rewound_partition_is_read_again_from_its_confirmed_commit() -> None:
    tracker = OffsetTracker()
    generation = tracker.assign(TOPIC, 0)
    for offset in range(10, 20):
        tracker.track(TOPIC, 0, offset)
    assert tracker.rewind(TOPIC, 0) == 10  # nothing confirmed: the first offset polled
    assert tracker.finish(TOPIC, 0, 10, generation) is False  # the old generation's result is ignored
    tracker.skip_to(TOPIC, 0, 25)  # the position may still be the one before the seek: not taken
    assert tracker.to_commit() == {}
    new = tracker.generation(TOPIC, 0)
    assert new is not None
    tracker.track(TOPIC, 0, 10)
    tracker.finish(TOPIC, 0, 10, new)
    tracker.committed({(TOPIC, 0): 11})
    tracker.confirmed(TOPIC, 0, 11)
    tracker.track(TOPIC, 0, 11)
    assert tracker.rewind(TOPIC, 0) == 11  # the confirmed commit
    assert tracker.rewind(TOPIC, 1) is None  # not ours


def test_a_call_that_hangs_replaces_the_producer_and_rewinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transactions, "HUNG_GRACE_S", 0.1)
    s = setup(timeout_s=0.2)
    second = FakeTxnProducer(consumer=s.consumer)
    s.strategy._new_producer = lambda: second
    s.producer.hang.add("send_offsets_to_transaction")
    s.finish(0, range(5), letters=[1])
    s.committer.now_and_then()  # bounded: the poll thread is back within timeout + grace
    assert s.aborted == [{(TOPIC, 0)}]
    assert second.inits == 1  # the new producer fenced the old one (and its open transaction)
    s.clock.now += 1.0
    s.committer.now_and_then()
    assert second.transactions == [({0: 5}, 1)]
    s.producer.released.set()


def test_a_hung_commit_the_broker_completed_is_not_rewound(monkeypatch: pytest.MonkeyPatch) -> None:
    """commit_transaction hung after its request reached the broker: the new producer's
    init_transactions completes it. The offsets are committed and the letter visible, so nothing is
    rewound and the letter is not sent again."""
    monkeypatch.setattr(transactions, "HUNG_GRACE_S", 0.1)
    s = setup(timeout_s=0.2)
    second = FakeTxnProducer(consumer=s.consumer)

    def replacement() -> FakeTxnProducer:
        with s.consumer.lock:  # what the broker did with the hung commit
            s.consumer.confirmed.update({0: 5})
        return second

    s.strategy._new_producer = replacement
    s.producer.hang.add("commit_transaction")
    s.finish(0, range(5), letters=[1])
    s.committer.now_and_then()
    assert s.aborted == []
    s.clock.now += 1.0
    s.committer.now_and_then()
    assert second.transactions == []  # nothing left to commit: the letter goes once
    s.producer.released.set()


def test_a_hang_without_a_way_to_replace_the_producer_is_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transactions, "HUNG_GRACE_S", 0.1)
    s = setup(timeout_s=0.2)
    s.producer.hang.add("commit_transaction")
    s.finish(0, range(5))
    with pytest.raises(TransactionFatal):
        s.committer.now_and_then()
    s.producer.released.set()
