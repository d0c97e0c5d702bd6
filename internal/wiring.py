"""The composition: ``build(settings, factories)`` makes every part of the service; ``Service`` starts
and stops them in order.

``build`` opens nothing: it calls the factories it is given (Kafka clients, connection pools - built
closed -, the database probe, the HTTP server, the clock) and wires what they return. The entry point
(internal/app.py) calls it once with ``real_factories()``; the unit tests call it with fakes and
check the start order, the ordered stop, a crash and a second signal (tests/unit/test_wiring.py).

``Service.start`` opens the pools, starts the database probe, the consumer thread and the HTTP
thread; ``Service.stop`` is the ordered stop, within ``shutdown.timeout_s``: HTTP stops taking work
and drains -> the consumer drains, commits and leaves the group -> the dead-letter producer flushes
-> the pools close. The life cycle (internal/lifecycle.py) holds the state; threads report to it.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from types import FrameType
from typing import Any, Protocol

import psycopg
import structlog
import uvicorn
from confluent_kafka import Consumer, Producer
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from internal.api.app import create_api
from internal.api.console_auth import ConsoleAuth
from internal.api.dlq_console import DlqConsole
from internal.api.request_limits import RequestLimits
from internal.cache.lru import OrderCache
from internal.cache.warmup import warm_up
from internal.config import Settings
from internal.consumer.commits import AtLeastOnceCommit, CommitConfirmations, CommitPolicy, OffsetsAndLetters
from internal.consumer.dlq import KafkaDeadLetterSink, SinkProducer
from internal.consumer.drift import DriftGuard, DriftPolicy, DriftTrip
from internal.consumer.lanes import BatchLimits
from internal.consumer.letters import letter_max_bytes
from internal.consumer.loop import ConsumerLoop, LoopPolicy, consumer_config
from internal.consumer.messages import DeadLetter
from internal.consumer.observe import LagFromStatistics, LettersCommitted, ReportMetrics
from internal.consumer.offsets import OffsetTracker
from internal.consumer.ports import KafkaConsumer, OrderStore
from internal.consumer.processor import BatchProcessor, ProcessingPolicy
from internal.consumer.retry import RetryPolicy
from internal.consumer.state import ConsumerState
from internal.consumer.transactions import (
    TransactionalCommit,
    TransactionalProducer,
    TransactionsUnavailable,
    transactional_config,
)
from internal.domain.causes import Cause, Component, Failure
from internal.domain.errors import TransientError, failure_of
from internal.lifecycle import Lifecycle, State
from internal.pkg.backoff import Backoff
from internal.pkg.exc_text import first_line
from internal.pkg.health import Health
from internal.pkg.kafka_offsets import TopicSize
from internal.pkg.logging import KAFKA_LOG
from internal.pkg.metrics import Metrics
from internal.pkg.paths import templates_dir
from internal.store.dead_letters import DeadLetterIndex, DeadLetterQueries, LetterRow
from internal.store.observe import DbObserver
from internal.store.probe import DatabaseProbe
from internal.store.reader import PostgresOrderReader
from internal.store.sessions import configure_lookup_session, configure_session
from internal.store.writer import PostgresOrderWriter
from internal.tools.dlq_actions import KafkaConsoleActions

log = structlog.get_logger(component="app")
CONSOLE_POOL_SIZE = 2  # the dead-letter console's reads: few people, each page a query or two
WARMUP_RETRY = Backoff(initial_s=0.5, max_s=10.0)
WAIT_STEP_S = 0.1  # how often the main thread looks whether the HTTP server listens yet


def service_version() -> str:
    try:
        return version("l0-orders")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0+unknown"


# ---- the seams ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PoolSpec:
    """One connection pool: its name (application_name <postgres.application_name>-<name>), size,
    and the statement timeout of its sessions (ms)."""

    name: str
    size: int
    statement_timeout_ms: int


class SyncPool(Protocol):
    def open(self, wait: bool = ..., timeout: float = ...) -> None:
        """Start connecting in the background (``wait=False``): never blocks then; called by start."""

    def close(self, timeout: float = ...) -> None:
        """Close every connection, waiting up to ``timeout`` for those in use; called by stop."""


class Probe(Protocol):
    def start(self) -> None:
        """Start the probe's thread (never blocks)."""

    def stop(self) -> None:
        """Stop it (never blocks for long)."""

    def problem(self) -> str | None:
        """What is wrong with the database, or None (any thread, never blocks, never raises)."""


class DeadLetters(Protocol):
    def close(self, timeout_s: float) -> int:
        """Flush the dead-letter producer for up to ``timeout_s``; the letters not delivered (stop)."""


class LetterRecorder(Protocol):
    def record(self, rows: Sequence[LetterRow]) -> int:
        """Add the rows not recorded yet (one transaction); TransientError while the database is away."""


class Background(Protocol):
    """A helper thread: ``start`` and ``stop`` never block; ``value`` is its latest answer."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def value(self) -> float: ...


class HttpServer(Protocol):
    """The part of ``uvicorn.Server`` the service uses: all of it public API."""

    should_exit: bool  # set to stop taking connections and drain (the ordered stop)
    force_exit: bool  # set to stop without waiting for open connections (a second SIGINT)
    started: bool  # True once it listens

    def run(self) -> None:
        """Serve until ``should_exit``; runs on the HTTP thread (uvicorn installs no signal handlers
        off the main thread). A failed start raises SystemExit."""


@dataclass(frozen=True, slots=True)
class Factories:
    """Everything that reaches the outside world, as constructors. ``real_factories()`` is the
    service's; tests give fakes. Each is called once by ``build``."""

    kafka_consumer: Callable[[dict[str, Any]], KafkaConsumer]
    dlq_producer: Callable[[dict[str, Any]], SinkProducer]
    # The transactional dead-letter producer (kafka.transactions: true; confluent_kafka.Producer).
    txn_producer: Callable[[dict[str, Any]], TransactionalProducer]
    pool: Callable[[Settings, PoolSpec], SyncPool]  # built closed: start() opens it
    async_pool: Callable[[Settings, PoolSpec], AsyncConnectionPool]  # opened by the HTTP app's lifespan
    order_writer: Callable[[SyncPool, DbObserver], OrderStore]
    order_reader: Callable[[SyncPool, DbObserver], PostgresOrderReader]  # the warm-up, the home page
    db_probe: Callable[[Settings, DbObserver], Probe]
    http_server: Callable[[uvicorn.Config], HttpServer]
    clock: Callable[[], float] = time.monotonic
    # The console's read model of the dead letters (store/dead_letters.py) on the writer pool, and the
    # dead-letter topic's size for dlq_topic_messages; None (the unit tests' fakes): left out.
    letter_index: Callable[[SyncPool], LetterRecorder] | None = None
    topic_size: Callable[[str, str], Background] | None = None
    # What lives as long as the process is moved out of the collector's generations after the warm-up
    # (gc.freeze: docs/performance.md); tests leave the collector alone.
    freeze_heap: Callable[[], None] = gc.freeze


def real_factories() -> Factories:
    return Factories(
        kafka_consumer=Consumer,
        dlq_producer=Producer,
        txn_producer=Producer,
        pool=_pool,
        async_pool=_async_pool,
        order_writer=lambda pool, observer: PostgresOrderWriter(_real(pool), observer),
        order_reader=lambda pool, observer: PostgresOrderReader(_real(pool), observer),
        db_probe=lambda s, observer: DatabaseProbe(
            s.postgres.dsn,
            observer,
            timeout_s=min(2.0, s.postgres.connect_timeout_s),
            application_name=f"{s.postgres.application_name}-probe",
        ),
        http_server=uvicorn.Server,
        letter_index=lambda pool: DeadLetterIndex(_real(pool)),
        topic_size=TopicSize,
    )


def _real(pool: SyncPool) -> ConnectionPool:
    assert isinstance(pool, ConnectionPool)
    return pool


# ---- the graph ------------------------------------------------------------------------------------
def build(settings: Settings, factories: Factories) -> Service:
    """Every part of the service, wired; nothing opened, no thread started."""
    s, f = settings, factories
    metrics = Metrics(service_version(), s.consumer.freshness_objective_ms / 1000)
    observer = DbObserver(metrics)
    writer_pool = f.pool(s, PoolSpec("writer", s.consumer.workers, s.postgres.statement_timeout_ms))
    reader_pool = f.pool(s, PoolSpec("reader", s.postgres.pool_max_size, s.http.request_timeout_ms))
    reader = f.order_reader(reader_pool, observer)
    cache = OrderCache(s.cache.max_entries, s.cache.max_bytes, s.cache.max_entry_bytes)
    metrics.watch_cache(cache.stats)
    state = ConsumerState(on_retry=metrics.retries.inc)
    metrics.paused.set_function(lambda: 1.0 if state.paused else 0.0)
    metrics.stopped.set_function(lambda: 1.0 if state.stopped else 0.0)
    metrics.watch_partitions(state.partitions)
    lifecycle = Lifecycle(f.clock)
    # Readiness's database check: a recent answer, from a connection of its own (store/probe.py).
    probe = f.db_probe(s, observer)
    health = Health(state, probe.problem, lifecycle)
    # Transactional mode: no sink - the workers leave their letters to the commit (commits.py).
    sink = (
        None
        if s.kafka.transactions
        else KafkaDeadLetterSink(
            s.kafka.brokers,
            s.dlq_topic,
            group=s.kafka.group_id,
            version=service_version(),
            max_message_bytes=s.consumer.max_message_bytes,
            max_error_bytes=s.dlq.max_error_bytes,
            producer_factory=f.dlq_producer,
        )
    )
    writer = f.order_writer(writer_pool, observer)
    drift = DriftGuard(
        DriftPolicy(s.consumer.drift_window, s.consumer.drift_ratio), on_change=_DriftReport(metrics)
    )
    index = IndexedLetters(f.letter_index(writer_pool), s.dlq_topic, metrics) if f.letter_index else None
    loop, transactions = _consumer_loop(
        s, f, metrics=metrics, state=state, cache=cache, dead_letters=sink, writer=writer,
        drift=drift, letter_index=index,
    )  # fmt: skip
    dead_letters: DeadLetters | None = transactions or sink  # one of them, by kafka.transactions
    assert dead_letters is not None
    console_pool = f.async_pool(s, PoolSpec("console", CONSOLE_POOL_SIZE, s.http.request_timeout_ms))
    queries = DeadLetterQueries(console_pool, s.http.request_timeout_ms / 1000)
    console = DlqConsole(
        queries=queries,
        actions=KafkaConsoleActions(
            s.kafka.brokers, s.dlq_topic, s.consumer.validation_policy(), s.postgres.dsn
        ),
        auth=ConsoleAuth(s.console.operator_token),
        templates=templates_dir(),
        dlq_topic=s.dlq_topic,
        max_replay=s.console.max_replay,
        drift=drift,
        order_stored=queries.order_stored,
    )
    dlq_size = f.topic_size(s.kafka.brokers, s.dlq_topic) if f.topic_size else None
    if dlq_size is not None:
        metrics.dlq_size.set_function(dlq_size.value)
    api = create_api(
        cache,
        reader,
        health,
        metrics,
        lookup_pool=f.async_pool(
            s, PoolSpec("lookup", s.postgres.lookup_pool_size, s.http.request_timeout_ms)
        ),
        search_pool=f.async_pool(
            s, PoolSpec("search", s.postgres.search_pool_size, s.http.request_timeout_ms)
        ),
        request_timeout_s=s.http.request_timeout_ms / 1000,
        search_pages_bytes=s.cache.search_pages_bytes,
        templates=templates_dir(),
        access_log=s.log.access_log,
        console_routes=console.routes(),
        console_pool=console_pool,
    )
    server = f.http_server(
        uvicorn.Config(
            api,
            host=s.http.host,
            port=s.http.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            # No "server: uvicorn": it names the software to anyone, and each header costs every
            # response about 1-2 us (docs/performance.md).
            server_header=False,
            # Request heads bounded in the protocol, before the app runs (api/request_limits.py).
            http=RequestLimits(
                s.http.max_request_line_bytes, s.http.max_headers, s.http.max_header_bytes
            ).protocol(),
            timeout_graceful_shutdown=max(1, int(s.shutdown.timeout_s / 3)),
        )
    )
    return Service(
        settings=s,
        lifecycle=lifecycle,
        metrics=metrics,
        state=state,
        cache=cache,
        reader=reader,
        pools=(writer_pool, reader_pool),
        probe=probe,
        dead_letters=dead_letters,
        transactions=transactions,
        loop=loop,
        server=server,
        clock=f.clock,
        freeze_heap=f.freeze_heap,
        helpers=(dlq_size,) if dlq_size is not None else (),
    )


class _DriftReport:
    """The drift guard's trips and resumes: a log event, the gauge and the counter."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def __call__(self, trip: DriftTrip | None) -> None:
        if trip is None:
            self._metrics.drift_paused.set(0)
            log.warning("dead_letter_drift_resumed")
            return
        self._metrics.drift_paused.set(1)
        self._metrics.drift_trips.inc()
        log.error(
            "dead_letter_drift", cause=Cause.DEAD_LETTER_DRIFT.value, dead_lettered=trip.dead_lettered,
            window=trip.window, group=trip.group,
        )  # fmt: skip


class IndexedLetters:
    """``LetterIndex`` of the batch processor: acknowledged letters into the console's read model
    (store/dead_letters.py) and into the letter metrics."""

    def __init__(self, recorder: LetterRecorder, dlq_topic: str, metrics: Metrics) -> None:
        self._recorder, self._dlq_topic, self._metrics = recorder, dlq_topic, metrics

    def record(self, letters: Sequence[DeadLetter]) -> None:
        now = datetime.now(UTC)
        rows = [self._row(letter, now) for letter in letters]
        new = self._recorder.record(rows)
        if new:  # a batch repeated after a crash (nothing new) is not counted again
            self._metrics.count_letters(((r.reason, r.group_key) for r in rows), now.timestamp())

    def _row(self, letter: DeadLetter, now: datetime) -> LetterRow:
        m = letter.message
        return LetterRow(
            origin_topic=m.topic,
            origin_partition=m.partition,
            origin_offset=m.offset,
            dlq_topic=self._dlq_topic,
            dlq_partition=letter.dlq_partition,
            dlq_offset=letter.dlq_offset,
            reason=letter.reason.value,
            group_key=letter.group or letter.reason.value,
            order_uid=_order_uid(m.key),
            failed_at=now,
            error=letter.error,
            is_stub=letter.truncated is not None,
            value_bytes=len(m.value or b""),
        )


class IndexAfterCommit:
    """Transactional mode: letters become visible when their transaction commits, so they enter the
    console's read model then, on the poll thread, with the place the broker gave them. While the
    database is away they are kept (at most ``limit``, the oldest dropped with a warning) and tried
    again at most every ``retry_s``, so an outage never stalls the poll thread for long;
    ``l0-dlq reindex`` fills any gap from the topic."""

    def __init__(
        self, index: IndexedLetters, clock: Callable[[], float], limit: int = 10_000, retry_s: float = 5.0
    ) -> None:
        self._index, self._clock, self._limit, self._retry_s = index, clock, limit, retry_s
        self._pending: list[DeadLetter] = []
        self._next_try = 0.0

    def __call__(self, letters: Sequence[DeadLetter]) -> None:
        self._pending.extend(letters)
        if len(self._pending) > self._limit:
            dropped = len(self._pending) - self._limit
            del self._pending[:dropped]
            log.warning("letters_not_indexed", letters=dropped, hint="l0-dlq reindex")
        if not self._pending or self._clock() < self._next_try:
            return
        try:
            self._index.record(self._pending)
        except TransientError as exc:
            self._next_try = self._clock() + self._retry_s
            log.warning("letter_index_waiting", letters=len(self._pending), error=first_line(exc))
            return
        except Exception:  # a bug: the letters are safe in the topic; never retried at every commit
            self._next_try = self._clock() + self._retry_s
            log.exception("letter_index_failed_unexpectedly", letters=len(self._pending))
            return
        self._pending.clear()


def _order_uid(key: bytes | None) -> str | None:
    """The producer keys messages by order_uid (gen_orders.py, docs/producer.md)."""
    return key.decode("utf-8", "replace") if key else None


def transactional_id(s: Settings) -> str:
    """``kafka.transactional_id``, or one derived per instance: stable across restarts (a restart
    fences its own zombie) and unique among instances running at once - two on one host differ by
    their HTTP port."""
    k = s.kafka
    return k.transactional_id or f"{k.group_id}.{k.client_id}.{socket.gethostname()}.{s.http.port}"


def _consumer_loop(
    s: Settings,
    f: Factories,
    *,
    metrics: Metrics,
    state: ConsumerState,
    cache: OrderCache,
    dead_letters: KafkaDeadLetterSink | None,
    writer: OrderStore,
    drift: DriftGuard,
    letter_index: IndexedLetters | None,
) -> tuple[ConsumerLoop, TransactionalCommit | None]:
    c, k = s.consumer, s.kafka
    processor = BatchProcessor(
        store=writer,
        dead_letters=dead_letters,
        stored_sink=cache,
        outage=state,
        policy=ProcessingPolicy(
            validation=c.validation_policy(),
            retry=RetryPolicy(
                Backoff(c.retry_initial_ms / 1000, c.retry_max_ms / 1000), max_attempts=c.max_attempts
            ),
        ),
        drift=drift,
        # Transactional mode: a letter has no place in the topic until its transaction commits, so it
        # enters the read model then (the Committer's on_committed below), not from the worker.
        letter_index=None if k.transactions else letter_index,
    )
    config = consumer_config(k.brokers, k.group_id, k.client_id, k.session_timeout_ms, k.auto_offset_reset)
    tracker = OffsetTracker()
    config["stats_cb"] = LagFromStatistics(metrics, k.topic, state.reported_commits, tracker.confirmed_at)
    config["on_commit"] = CommitConfirmations(tracker, metrics.commit_failures.inc)
    consumer = f.kafka_consumer(config)
    transactions: TransactionalCommit | None = None
    strategy: OffsetsAndLetters = AtLeastOnceCommit(consumer)
    on_committed: Callable[[Sequence[DeadLetter], float], None] | None = None
    if k.transactions:
        txn_config = transactional_config(
            k.brokers,
            transactional_id(s),
            f"{k.client_id}-dlq",
            letter_max_bytes(c.max_message_bytes, s.dlq.max_error_bytes),
            k.transaction_timeout_ms,
        ) | {"logger": KAFKA_LOG}
        strategy = transactions = TransactionalCommit(
            f.txn_producer(txn_config),
            consumer,
            topic=s.dlq_topic,
            group=k.group_id,
            version=service_version(),
            max_error_bytes=s.dlq.max_error_bytes,
            timeout_s=k.transaction_timeout_ms / 1000,
            new_producer=lambda: f.txn_producer(txn_config),
        )
        counted = LettersCommitted(metrics)
        indexed = IndexAfterCommit(letter_index, f.clock) if letter_index is not None else None

        def on_committed(letters: Sequence[DeadLetter], seconds: float) -> None:
            counted(letters, seconds)
            if indexed is not None:
                indexed(letters)

    def rewound(partitions: int) -> None:
        metrics.transaction_aborts.inc()
        metrics.rewinds.inc(partitions)

    loop = ConsumerLoop(
        consumer,
        processor,
        LoopPolicy(
            topic=k.topic,
            workers=c.workers,
            batch=BatchLimits(c.batch_max_messages, c.batch_max_bytes, c.batch_max_wait_ms / 1000),
            max_in_flight=c.max_in_flight_messages,
            max_in_flight_bytes=c.max_in_flight_bytes,
            revoke_timeout_s=c.revoke_timeout_s,
            max_consecutive_dead_letters=s.dlq.max_consecutive,
            stuck_after_s=c.stuck_after_s,
            commit=CommitPolicy.watched(c.commit_interval_ms / 1000, c.stuck_after_s),
        ),
        state,
        tracker=tracker,
        on_report=ReportMetrics(metrics, letters_at_commit=k.transactions),
        on_commit_failure=metrics.commit_failures.inc,
        clock=f.clock,
        commit_strategy=strategy,
        on_rewind=rewound,
        **({"on_committed": on_committed} if on_committed is not None else {}),
    )
    return loop, transactions


# ---- start and stop -------------------------------------------------------------------------------
@dataclass(eq=False)
class Service:
    settings: Settings
    lifecycle: Lifecycle
    metrics: Metrics
    state: ConsumerState
    cache: OrderCache
    reader: PostgresOrderReader
    pools: tuple[SyncPool, ...]
    probe: Probe
    dead_letters: DeadLetters
    transactions: TransactionalCommit | None  # kafka.transactions: init_transactions at the start
    loop: ConsumerLoop
    server: HttpServer
    clock: Callable[[], float]
    freeze_heap: Callable[[], None]
    helpers: tuple[Background, ...] = ()  # threads of their own: started first, stopped last

    def __post_init__(self) -> None:
        self._stopping = threading.Event()  # wakes the warm-up's backoff at the stop
        self._consumer_thread = threading.Thread(target=self._consume, name="consumer-poll", daemon=True)
        self._http_thread = threading.Thread(target=self._serve_http, name="http", daemon=True)

    def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT or a crash, stop in order; the exit code (main thread)."""
        for sig in (signal.SIGTERM, signal.SIGINT):  # ours from the start to the end of the stop
            signal.signal(sig, self._on_signal)
        self.start()
        self.wait()
        return self.stop()

    def start(self) -> None:
        """Open the pools (in the background: the service starts while the database is down), start
        the database probe, the consumer thread (warm-up, then the poll loop) and the HTTP thread."""
        self.lifecycle.move(State.STARTING)
        for pool in self.pools:
            pool.open(wait=False)
        for helper in self.helpers:
            helper.start()
        self.probe.start()
        self._consumer_thread.start()
        self._http_thread.start()
        s = self.settings.http
        log.info("http_listening", url=f"http://{s.host}:{s.port}/")

    def wait(self) -> None:
        """Until a stop is requested (a signal, a crash); READY once the HTTP server listens."""
        # A signal's handler runs on this thread within the wait and wakes it; a crash notifies it.
        while not self.lifecycle.wait_for_stop(
            WAIT_STEP_S if self.lifecycle.state is State.STARTING else 1.0
        ):
            if self.server.started and self.lifecycle.state is State.STARTING:
                self.lifecycle.move(State.READY)
        crash = self.lifecycle.crash
        if crash is not None:  # a crashed consumer (or HTTP server) ends the process after the ordered stop
            consumer = crash.cause.component is Component.CONSUMER
            event = "stopping_after_consumer_crash" if consumer else "stopping_after_crash"
            log.error(event, reason=crash.detail, cause=crash.cause.value)

    def request_stop(self, reason: str) -> None:
        self.lifecycle.request_stop(reason)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.lifecycle.request_stop(name):
            return
        # A second signal during the stop: the ordered stop goes on (the consumer must commit and leave
        # the group); a second Ctrl-C only skips waiting for open HTTP connections.
        if signum == signal.SIGINT:
            self.server.force_exit = True
        log.warning("already_stopping", signal=name)

    def stop(self) -> int:
        """The ordered stop, within shutdown.timeout_s of its beginning (the crash, when one began
        it); 0 when everything stopped cleanly, else 1."""
        self.lifecycle.request_stop("stop")
        began = self.lifecycle.stop_began_at
        deadline = (began if began is not None else self.clock()) + self.settings.shutdown.timeout_s

        def left(at_least: float = 0.0) -> float:
            return max(at_least, deadline - self.clock())

        self.lifecycle.move(State.DRAINING)
        self.server.should_exit = True  # HTTP first: stop taking connections, drain the open ones
        if self._http_thread.is_alive():
            self._http_thread.join(timeout=left())
        self._stopping.set()
        self.loop.stop()  # retrying batches give up; finished ones are committed; the group is left
        if self._consumer_thread.is_alive():
            self._consumer_thread.join(timeout=left())
        clean = not self._consumer_thread.is_alive()
        self.probe.stop()
        for helper in self.helpers:
            helper.stop()
        undelivered = self.dead_letters.close(left(0.1))
        for pool in self.pools:
            pool.close(timeout=left(0.1))
        crashed = self.lifecycle.crash is not None
        self.lifecycle.move(State.CRASHED if crashed else State.STOPPED)
        ok = clean and undelivered == 0 and not crashed and not self.state.stopped
        log.info("stopped", clean=ok, outcomes=self.state.snapshot_outcomes())
        return 0 if ok else 1

    def threads(self) -> list[threading.Thread]:
        """The threads this service started that can hold up the exit: its own and the workers'."""
        return [self._consumer_thread, self._http_thread, *self.loop.worker_threads()]

    # ---- the threads ----------------------------------------------------------------------------
    def _consume(self) -> None:
        """The consumer thread: warm-up, then the poll loop. Whatever ends it early and unplanned - a
        crash of the warm-up or of the poll loop - is reported to the life cycle, which stops the
        process (exit code 1)."""
        try:
            self._init_transactions()
            self._warm_then_consume()
        except TransactionsUnavailable as exc:  # a deployment problem: the message says what to change
            self.state.crash(failure_of(exc, exc.cause))
            log.critical("transactions_unavailable", error=str(exc), cause=exc.cause.value)
        except Exception as exc:  # the loop records its own crashes; this is the warm-up's
            failure = failure_of(exc, Cause.WARMUP_CRASHED)
            self.state.crash(failure)
            log.critical(
                "consumer_thread_crashed", error=failure.detail, cause=failure.cause.value, exc_info=True
            )
        if self.state.crashed is not None and not self._stopping.is_set():
            self.lifecycle.crashed(self.state.crashed)

    def _init_transactions(self) -> None:
        """Register the dead-letter producer's transactional.id (kafka.transactions), before the
        first poll: a broker that cannot run transactions stops the service at once (exit 1) with a
        line that says what to change, instead of failing at the first commit."""
        if self.transactions is not None:
            self.transactions.init()
            log.info("transactions_ready", transactional_id=transactional_id(self.settings))

    def _warm_then_consume(self) -> None:
        # Warm-up first: the consumer's fresher write-through entries must not be evicted by older
        # warm-up ones. While the database is down the consumer could store nothing anyway.
        warmed = warm_up(
            self.cache, self.reader.latest, self.settings.cache.warmup_orders, WARMUP_RETRY, self._stopping
        )
        if warmed is None:
            return
        self.metrics.warmup_duration.set(warmed[1])
        self.lifecycle.warmed()
        # What exists now (modules, the app, the warmed cache) lives as long as the process. Moved out of
        # the collector's generations, it is no longer walked by every full collection, which had
        # stalled the event loop for tens of ms (API miss p99 64-73 ms -> ~25 ms, docs/performance.md).
        self.freeze_heap()
        log.info("gc_frozen", objects=gc.get_freeze_count())
        self.loop.run()

    def _serve_http(self) -> None:
        """The HTTP thread. A server that ends without being asked to (it could not bind its port)
        is a crash: the service stops in order and exits with code 1."""
        try:
            self.server.run()
        except BaseException as exc:  # SystemExit from uvicorn's failed start, or a bug
            log.critical("http_server_failed", error=f"{type(exc).__name__}: {exc}")
        if not self.server.should_exit:
            self.lifecycle.crashed(Failure(Cause.HTTP_SERVER_FAILED, "the HTTP server ended by itself"))


def exit_now_if_stuck(code: int, threads: Iterable[threading.Thread]) -> int:
    """Honour shutdown.timeout_s even when a worker is stuck in a hung database call: at exit the
    interpreter joins every thread-pool worker (concurrent.futures registers that) and every
    non-daemon thread. ``threads`` are the ones the service started, known by object. Offsets of
    unfinished work were not committed, so nothing is lost; the messages are delivered again after
    the restart."""
    deadline = time.monotonic() + 1.0  # idle pool threads of a clean stop end within moments
    threads = list(threads)
    for thread in threads:
        if thread.is_alive():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        log.error("exit_with_threads_stuck", threads=stuck, code=code or 1)
        sys.stdout.flush()
        os._exit(code or 1)
    return code


# ---- the real pools -------------------------------------------------------------------------------
def _pool(settings: Settings, spec: PoolSpec) -> ConnectionPool:
    timeout_ms = spec.statement_timeout_ms
    return ConnectionPool(
        settings.postgres.dsn,
        configure=lambda conn: configure_session(conn, timeout_ms),
        open=False,  # Service.start opens it
        **_sizes(settings, spec),
    )


def _async_pool(settings: Settings, spec: PoolSpec) -> AsyncConnectionPool:
    """An async pool of the HTTP app whose sessions plan each statement once: the API's cache misses
    ("lookup"), or the UI's searches ("search", ``postgres.search_pool_size``: a budget of their own,
    so a burst of searches queues there and never ahead of look-ups or readiness)."""

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await configure_lookup_session(conn, spec.statement_timeout_ms)

    return AsyncConnectionPool(
        settings.postgres.dsn,
        configure=configure,
        open=False,  # opened by the HTTP app's lifespan, on the event loop that uses it
        **_sizes(settings, spec),
    )


def _sizes(settings: Settings, spec: PoolSpec) -> dict[str, Any]:
    """What a sync and an async pool share: size, name, connect timeout, connection arguments."""
    return {
        "min_size": min(settings.postgres.pool_min_size, spec.size),
        "max_size": spec.size,
        "name": spec.name,
        "timeout": settings.postgres.connect_timeout_s,
        "kwargs": {
            "connect_timeout": max(1, int(settings.postgres.connect_timeout_s)),
            "application_name": f"{settings.postgres.application_name}-{spec.name}",
            # Every statement is its own transaction: a look-up is one round trip, not SELECT + COMMIT
            # (the writer and the warm-up's reads open explicit transactions where they need them).
            "autocommit": True,
        },
    }
