"""The composition built for real with fake factories: build opens nothing; the start order; the
ordered stop (HTTP stops taking work -> the consumer drains and commits -> the dead-letter producer
flushes -> the pools close); a crash on the poll thread; a second signal during the stop; a server
that cannot start; threads stuck at exit, found by object. And the life cycle's transitions."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import pytest
import uvicorn
from confluent_kafka import KafkaError, TopicPartition
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from internal.config import Settings
from internal.consumer.messages import DeadLetter, Inbound
from internal.consumer.ports import KafkaConsumer
from internal.domain.causes import Cause, Failure
from internal.domain.errors import TransientError
from internal.domain.outcomes import Outcome
from internal.domain.reasons import DeadLetterReason
from internal.domain.records import OrderRecord
from internal.lifecycle import InvalidTransition, Lifecycle, State
from internal.store.observe import DbObserver
from internal.store.reader import PostgresOrderReader, StoredOrder
from internal.wiring import Factories, IndexAfterCommit, PoolSpec, Service, SyncPool, build, exit_now_if_stuck
from tests.orders import order_bytes
from tests.support import wait_until
from tests.unit.fake_kafka import FakeConsumer, FakeProducer, FakeTxnProducer
from tests.unit.test_processor import FakeStore

TIMEOUT_S = 10.0


@dataclass
class World:
    """Every fake records what happens to it in one list, in order."""

    events: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, event: str) -> None:
        with self.lock:
            self.events.append(event)

    def index(self, event: str) -> int:
        with self.lock:
            return self.events.index(event)


class RecordingConsumer(FakeConsumer):
    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        if not asynchronous:
            self.world.note("consumer commit (synchronous)")
        return super().commit(offsets=offsets, asynchronous=asynchronous)

    def close(self) -> None:
        self.world.note("consumer close")
        super().close()


class RecordingProducer(FakeProducer):
    world: World | None = None

    def flush(self, timeout: float) -> int:
        if self.world is not None:
            self.world.note("producer flush")
        return super().flush(timeout)


class RecordingTxnProducer(FakeTxnProducer):
    world: World | None = None
    config: dict[str, Any] | None = None

    def init_transactions(self, timeout: float) -> None:
        if self.world is not None:
            self.world.note("init transactions")
        super().init_transactions(timeout)

    def commit_transaction(self, timeout: float) -> None:
        super().commit_transaction(timeout)
        if self.world is not None:
            self.world.note("transaction commit")

    def flush(self, timeout: float) -> int:
        if self.world is not None:
            self.world.note("producer flush")
        return super().flush(timeout)


@dataclass
class FakePool:
    world: World
    name: str

    def open(self, wait: bool = True, timeout: float = 30.0) -> None:
        self.world.note(f"pool {self.name} open")

    def close(self, timeout: float = 5.0) -> None:
        self.world.note(f"pool {self.name} close")


class EmptyReader(PostgresOrderReader):
    def latest(self, limit: int) -> Generator[StoredOrder, None, None]:
        yield from ()


class StoreHeldUntilHttpStopped(FakeStore):
    """Writes ``held`` orders only once HTTP stopped: a batch in flight when the stop begins."""

    def __init__(self, world: World, held: set[str]) -> None:
        super().__init__()
        self.world, self.held = world, held
        self.holding = threading.Event()

    def write_batch(self, records: Sequence[OrderRecord]) -> list[Outcome]:
        if any(r.uid in self.held for r in records):
            self.holding.set()
            while "http stopped" not in self.world.events:
                time.sleep(0.005)
            time.sleep(0.05)
        return super().write_batch(records)


@dataclass
class FakeProbe:
    world: World

    def start(self) -> None:
        self.world.note("probe start")

    def stop(self) -> None:
        self.world.note("probe stop")

    def problem(self) -> str | None:
        return None


class FakeServer:
    """Serves until ``should_exit``; with ``drain_until_forced``, an open connection keeps it draining
    until ``force_exit``; with ``fail``, it cannot bind its port (uvicorn exits)."""

    def __init__(self, world: World, drain_until_forced: bool = False, fail: bool = False) -> None:
        self.world = world
        self.drain_until_forced = drain_until_forced
        self.fail = fail
        self.should_exit = False
        self.force_exit = False
        self.started = False

    def run(self) -> None:
        if self.fail:
            raise SystemExit(1)
        self.started = True
        self.world.note("http serving")
        while not self.should_exit:
            time.sleep(0.005)
        self.world.note("http stops taking connections")
        while self.drain_until_forced and not self.force_exit:
            time.sleep(0.005)
        self.world.note("http stopped")


@dataclass
class Fakes:
    world: World
    store: StoreHeldUntilHttpStopped
    consumer: RecordingConsumer
    producer: RecordingProducer
    txn: RecordingTxnProducer
    server: FakeServer
    factories: Factories


def fakes(held: set[str] | None = None, **server: bool) -> Fakes:
    world = World()
    store = StoreHeldUntilHttpStopped(world, held or set())
    consumer = RecordingConsumer(world)
    producer = RecordingProducer()
    producer.world = world
    txn = RecordingTxnProducer(consumer=consumer)
    txn.world = world

    def txn_producer(config: dict[str, Any]) -> RecordingTxnProducer:
        txn.config = config
        return txn

    http = FakeServer(world, **server)

    def pool(_s: Settings, spec: PoolSpec) -> SyncPool:
        return FakePool(world, spec.name)

    def reader(pool: SyncPool, observer: DbObserver) -> PostgresOrderReader:
        return EmptyReader(cast(ConnectionPool, pool), observer)

    def http_server(_config: uvicorn.Config) -> FakeServer:
        return http

    factories = Factories(
        kafka_consumer=lambda _config: cast(KafkaConsumer, consumer),
        dlq_producer=lambda _config: producer,
        txn_producer=txn_producer,
        pool=pool,
        async_pool=lambda _s, spec: AsyncConnectionPool("", open=False, name=spec.name),
        order_writer=lambda _pool, _observer: store,
        order_reader=reader,
        db_probe=lambda _s, _observer: FakeProbe(world),
        http_server=http_server,
        freeze_heap=lambda: None,
    )
    return Fakes(world, store, consumer, producer, txn, http, factories)


def settings(transactions: bool = False) -> Settings:
    """At-least-once unless asked: most tests here are about the order of the stop, the same in both."""
    s = Settings()
    return replace(
        s,
        shutdown=replace(s.shutdown, timeout_s=5.0),
        kafka=replace(s.kafka, transactions=transactions),
    )


@dataclass
class Running:
    service: Service
    thread: threading.Thread
    code: list[int]

    def finish(self) -> int:
        self.thread.join(TIMEOUT_S)
        assert not self.thread.is_alive(), "the service did not stop"
        return self.code[0]


@pytest.fixture
def run() -> Iterator[Any]:
    """Start a built service as run() does, minus the signal handlers (those need the main thread)."""
    started: list[Running] = []

    def start(f: Fakes, transactions: bool = False) -> Running:
        service = build(settings(transactions), f.factories)
        code: list[int] = []

        def main() -> None:
            service.wait()
            code.append(service.stop())

        service.start()
        thread = threading.Thread(target=main, name="test-main")
        thread.start()
        running = Running(service, thread, code)
        started.append(running)
        return running

    yield start
    for running in started:
        running.service.request_stop("test over")
        running.thread.join(TIMEOUT_S)


def test_build_opens_nothing_and_starts_nothing() -> None:
    f = fakes()
    before = set(threading.enumerate())
    service = build(settings(), f.factories)
    assert f.world.events == []
    assert service.lifecycle.state is State.NEW
    assert set(threading.enumerate()) == before
    assert not f.consumer.callbacks  # not even subscribed


def test_the_start_order_and_the_ordered_stop(run: Any) -> None:
    f = fakes(held={json.loads(order_bytes(5))["order_uid"]})
    f.consumer.add(0, 5, order_bytes)
    f.consumer.rebalance(assign=[0])
    running = run(f)
    service = running.service
    wait_until(lambda: service.lifecycle.state is State.READY, timeout_s=TIMEOUT_S, what="ready")
    wait_until(lambda: service.lifecycle.warm, timeout_s=TIMEOUT_S, what="warm")
    wait_until(lambda: f.consumer.committed_positions().get(0) == 5, timeout_s=TIMEOUT_S, what="commits")
    assert f.world.events[:4] == ["pool writer open", "pool reader open", "probe start", "http serving"]
    f.consumer.add(0, 1, order_bytes)  # offset 5: held until HTTP stopped, then drained and committed
    assert f.store.holding.wait(TIMEOUT_S)

    service.request_stop("SIGTERM")
    assert running.finish() == 0
    assert f.consumer.committed_positions()[0] == 6
    events = f.world.events
    order = [
        "http stops taking connections",
        "http stopped",
        "consumer commit (synchronous)",
        "consumer close",
        "probe stop",
        "producer flush",
        "pool writer close",
        "pool reader close",
    ]
    assert [e for e in events if e in order] == order
    assert service.lifecycle.history == [
        State.NEW,
        State.STARTING,
        State.READY,
        State.DRAINING,
        State.STOPPED,
    ]


def test_the_transactional_mode_starts_with_init_transactions_and_commits_in_transactions(run: Any) -> None:
    f = fakes()
    f.consumer.add(0, 4, order_bytes)
    f.consumer.add(0, 1, lambda _o: b"not json")  # offset 4: a letter, visible with its commit
    f.consumer.rebalance(assign=[0])
    running = run(f, transactions=True)
    wait_until(lambda: f.consumer.committed_positions().get(0) == 5, timeout_s=TIMEOUT_S, what="commits")
    assert f.txn.inits == 1
    assert f.txn.config is not None
    assert f.txn.config["transactional.id"].startswith("orders-consumer.orders-service.")
    assert len(f.txn.visible) == 1
    assert f.producer.produced == []  # no at-least-once sink in this mode
    assert f.consumer.commits == []  # offsets went with the transaction, not as consumer commits
    running.service.request_stop("SIGTERM")
    assert running.finish() == 0
    events = f.world.events
    assert events.index("init transactions") < events.index("transaction commit")
    assert events.index("consumer close") < events.index("producer flush")
    metrics = running.service.metrics
    assert metrics.dead_letters.labels("undecodable")._value.get() == 1  # counted once, at the commit


def test_a_broker_without_transactions_stops_the_start_with_exit_code_1(run: Any) -> None:
    f = fakes()
    f.txn.fail("init_transactions", KafkaError._TIMED_OUT, retriable=True)
    running = run(f, transactions=True)
    assert running.finish() == 1
    crash = running.service.lifecycle.crash
    assert crash is not None
    assert crash.cause is Cause.TRANSACTIONS_UNAVAILABLE
    assert "kafka.transactions=false" in crash.detail


def test_a_crash_on_the_poll_thread_stops_the_service_in_order_with_exit_code_1(run: Any) -> None:
    f = fakes()
    f.consumer.fail_on["consume"] = RuntimeError("the poll thread broke")
    running = run(f)
    assert running.finish() == 1
    service = running.service
    assert service.lifecycle.state is State.CRASHED
    crash = service.lifecycle.crash
    assert crash is not None
    assert crash.cause is Cause.POLL_THREAD_CRASHED
    assert (
        f.world.index("http stopped") < f.world.index("producer flush") < f.world.index("pool reader close")
    )


def test_a_second_sigint_during_the_stop_stops_waiting_for_open_connections(run: Any) -> None:
    f = fakes(drain_until_forced=True)
    running = run(f)
    service = running.service
    wait_until(lambda: f.server.started, timeout_s=TIMEOUT_S, what="serving")
    service._on_signal(signal.SIGINT, None)  # the first: the ordered stop begins
    wait_until(
        lambda: "http stops taking connections" in f.world.events, timeout_s=TIMEOUT_S, what="draining"
    )
    assert service.lifecycle.state is State.DRAINING
    assert not f.server.force_exit
    service._on_signal(signal.SIGTERM, None)  # a second SIGTERM changes nothing
    assert not f.server.force_exit
    service._on_signal(signal.SIGINT, None)  # a second Ctrl-C: do not wait for open connections
    assert f.server.force_exit
    assert running.finish() == 0  # the rest of the ordered stop still ran
    assert (
        f.world.index("http stopped") < f.world.index("consumer close") < f.world.index("pool writer close")
    )


def test_a_server_that_cannot_start_is_a_crash(run: Any) -> None:
    f = fakes(fail=True)
    running = run(f)
    assert running.finish() == 1
    crash = running.service.lifecycle.crash
    assert crash is not None
    assert crash.cause is Cause.HTTP_SERVER_FAILED
    assert "consumer close" in f.world.events


def test_threads_stuck_at_exit_are_found_by_object(monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, name="any name at all", daemon=True)
    stuck.start()
    done = threading.Thread(target=lambda: None)
    done.start()
    try:
        assert exit_now_if_stuck(0, [done]) == 0
        assert exits == []
        exit_now_if_stuck(0, [done, stuck])
        assert exits == [1]  # a clean code becomes 1: the stop was not clean
    finally:
        release.set()


# ---- the life cycle on its own ------------------------------------------------------------------
def test_only_the_allowed_transitions_are_taken() -> None:
    life = Lifecycle(time.monotonic)
    with pytest.raises(InvalidTransition):
        life.move(State.READY)  # not started yet
    life.move(State.STARTING)
    life.move(State.DRAINING)  # a stop before the server listened
    with pytest.raises(InvalidTransition):
        life.move(State.READY)
    life.move(State.STOPPED)
    with pytest.raises(InvalidTransition):
        life.move(State.DRAINING)


def test_the_first_stop_request_counts_and_a_crash_dates_the_stop() -> None:
    now = [10.0]
    life = Lifecycle(lambda: now[0])
    assert not life.stopping
    assert not life.wait_for_stop(0.0)
    life.crashed(Failure(Cause.POLL_THREAD_CRASHED, "boom"))
    now[0] = 20.0
    assert not life.request_stop("SIGTERM")  # the crash asked already
    life.crashed(Failure(Cause.WARMUP_CRASHED, "later"))
    assert life.wait_for_stop(0.0)
    assert life.stopping
    assert life.stop_reason == "crash"
    assert life.stop_began_at == 10.0
    assert life.crash == Failure(Cause.POLL_THREAD_CRASHED, "boom")


class FlakyIndex:
    """An ``IndexedLetters`` whose database is away while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.recorded: list[list[DeadLetter]] = []

    def record(self, letters: Sequence[DeadLetter]) -> None:
        if self.down:
            raise TransientError("database unavailable: connection refused")
        self.recorded.append(list(letters))


def a_letter(offset: int) -> DeadLetter:
    message = Inbound("orders", 0, offset, None, b"{}", (), None, 1)
    return DeadLetter(message, DeadLetterReason.INVALID, "bad", 1, dlq_partition=0, dlq_offset=offset)


def test_committed_letters_are_indexed_and_kept_through_an_outage_without_stalling() -> None:
    """Transactional mode: letters enter the read model after their commit; while the database is
    away they wait (bounded) and are tried again at most every retry_s, not at every commit."""
    index, now = FlakyIndex(), [0.0]
    after_commit = IndexAfterCommit(index, lambda: now[0], limit=3, retry_s=5.0)  # type: ignore[arg-type]
    after_commit([a_letter(0)])
    assert [[x.dlq_offset for x in r] for r in index.recorded] == [[0]]
    index.down = True
    after_commit([a_letter(1), a_letter(2)])  # tried once, kept
    now[0] = 1.0
    after_commit([a_letter(3)])  # within retry_s: not tried again; the oldest beyond 3 dropped
    assert len(index.recorded) == 1
    index.down = False
    now[0] = 5.5
    after_commit([])
    assert [[x.dlq_offset for x in r] for r in index.recorded] == [[0], [1, 2, 3]]
