"""Composition root: reads the settings, builds every part, owns the start and stop order.

Nothing else in the package constructs a pool, a Kafka client or a thread; modules only receive their
collaborators. ``main`` is the ``l0-service`` console script and ``cmd/service.py``.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

import psycopg
import structlog
import uvicorn
from confluent_kafka import Consumer, KafkaException
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from internal.api.app import create_api
from internal.cache.lru import OrderCache
from internal.cache.warmup import warm_up
from internal.config import ConfigError, Settings, config_path, load_settings
from internal.config.show import describe, secret_values
from internal.consumer.commits import CommitConfirmations
from internal.consumer.dlq import KafkaDeadLetterSink
from internal.consumer.lanes import BatchLimits
from internal.consumer.letters import topic_max_message_bytes
from internal.consumer.loop import WORKER_PREFIX, ConsumerLoop, LoopPolicy, consumer_config
from internal.consumer.observe import LagFromStatistics, ReportMetrics
from internal.consumer.offsets import OffsetTracker
from internal.consumer.processor import BatchProcessor, ProcessingPolicy
from internal.consumer.retry import RetryPolicy
from internal.consumer.state import ConsumerState
from internal.domain.causes import Cause
from internal.domain.errors import failure_of
from internal.domain.validation import ValidationPolicy
from internal.pkg.backoff import Backoff
from internal.pkg.health import Health
from internal.pkg.kafka_topics import TopicSpec, ensure_topics, topic_setting
from internal.pkg.logging import configure_logging, redactor
from internal.pkg.metrics import Metrics
from internal.pkg.paths import templates_dir
from internal.store import migrations
from internal.store.observe import DbObserver
from internal.store.probe import DatabaseProbe
from internal.store.reader import PostgresOrderReader
from internal.store.sessions import configure_lookup_session, configure_session
from internal.store.writer import PostgresOrderWriter

log = structlog.get_logger(component="app")
T = TypeVar("T")
STARTUP_RETRY_S = 60.0
WARMUP_RETRY = Backoff(initial_s=0.5, max_s=10.0)


def service_version() -> str:
    try:
        return version("l0-orders")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0+unknown"


class _Server(uvicorn.Server):
    """uvicorn's server, telling readiness first when a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, health: Health) -> None:
        super().__init__(config)
        self._health = health

    async def on_tick(self, counter: int) -> bool:
        # A crashed consumer ends the process (after the ordered stop), so a supervisor restarts it.
        if self._health.stop_requested is not None and not self.should_exit:
            log.error("stopping_after_consumer_crash", reason=self._health.stop_requested)
            self._health.shutting_down = True
            self.should_exit = True
        return await super().on_tick(counter)

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._health.shutting_down = True
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C skips waiting for open connections
        # Deliberately not recorded in _captured_signals: uvicorn would re-raise the signal after the
        # HTTP server stopped and kill the process before the consumer commits and leaves the group.
        self.should_exit = True


def run_service(settings: Settings) -> int:
    log.info("starting", version=service_version(), http_port=settings.http.port, topic=settings.kafka.topic)
    _prepare(settings)
    return Service(settings).run()


def _prepare(settings: Settings) -> None:
    """Migrations and topics, retried for a while at start (the stack may still be coming up)."""
    if settings.postgres.migrate_on_start:
        applied = _retry_at_start("migrations", lambda: migrations.apply_pending(settings.postgres.dsn))
        log.info("migrations_applied", ids=applied)
    if settings.kafka.create_topics:
        brokers = settings.kafka.brokers
        _retry_at_start("topics", lambda: ensure_topics(brokers, topic_specs(settings), timeout_s=10))
        _check_dlq_topic(settings)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The orders topic and its dead-letter topic, sized so that every full letter fits."""
    k, c = settings.kafka, settings.consumer
    letters = topic_max_message_bytes(c.max_message_bytes, settings.dlq.max_error_bytes)
    return [
        TopicSpec(k.topic, k.topic_partitions),
        TopicSpec(settings.dlq_topic, 1, config=(("max.message.bytes", str(letters)),)),
    ]


def _check_dlq_topic(settings: Settings) -> None:
    """Say so at start when an existing dead-letter topic is too small for full letters: the service
    still runs (a refused letter goes as a stub), but replays of the largest letters will not work."""
    needed = topic_max_message_bytes(settings.consumer.max_message_bytes, settings.dlq.max_error_bytes)
    try:
        value = topic_setting(settings.kafka.brokers, settings.dlq_topic, "max.message.bytes")
    except KafkaException as exc:  # e.g. no permission to describe configs: a check, not a condition
        log.warning("dlq_topic_check_failed", topic=settings.dlq_topic, error=str(exc.args[0]))
        return
    if value is not None and value.isdigit() and int(value) < needed:
        log.warning(
            "dlq_topic_too_small",
            topic=settings.dlq_topic,
            max_message_bytes=int(value),
            needed=needed,
            hint=f"kafka-configs.sh --alter --entity-type topics --entity-name {settings.dlq_topic} "
            f"--add-config max.message.bytes={needed} (docs/runbook.md#dlq-refuses)",
        )


class Service:
    """Every part of the running service, built from the settings; ``run`` owns the start/stop order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self.metrics = Metrics(service_version(), s.consumer.freshness_objective_ms / 1000)
        observer = DbObserver(self.metrics)
        self.writer_pool = _pool(s, "writer", s.consumer.workers, s.postgres.statement_timeout_ms)
        self.reader_pool = _pool(s, "reader", s.postgres.pool_max_size, s.http.request_timeout_ms)
        self.reader = PostgresOrderReader(self.reader_pool, observer)
        self.cache = OrderCache(s.cache.max_entries, s.cache.max_bytes, s.cache.max_entry_bytes)
        self.metrics.watch_cache(self.cache.stats)
        self.state = ConsumerState()
        self.state.on_retry = self.metrics.retries.inc
        self.metrics.paused.set_function(lambda: 1.0 if self.state.paused else 0.0)
        self.metrics.stopped.set_function(lambda: 1.0 if self.state.stopped else 0.0)
        self.metrics.watch_partitions(self.state.partitions)
        # Readiness's database check: a recent answer, from a connection of its own (store/probe.py).
        self.db_probe = DatabaseProbe(
            s.postgres.dsn, observer, timeout_s=min(2.0, s.postgres.connect_timeout_s)
        )
        self.health = Health(self.state, self.db_probe.problem)
        self.dead_letters = KafkaDeadLetterSink(
            s.kafka.brokers,
            s.dlq_topic,
            group=s.kafka.group_id,
            version=service_version(),
            max_message_bytes=s.consumer.max_message_bytes,
            max_error_bytes=s.dlq.max_error_bytes,
        )
        self.loop = self._consumer_loop(PostgresOrderWriter(self.writer_pool, observer))
        self.stopping = threading.Event()

    def _consumer_loop(self, writer: PostgresOrderWriter) -> ConsumerLoop:
        c, k = self.settings.consumer, self.settings.kafka
        processor = BatchProcessor(
            store=writer,
            dead_letters=self.dead_letters,
            stored_sink=self.cache,
            outage=self.state,
            policy=ProcessingPolicy(
                validation=ValidationPolicy(
                    max_message_bytes=c.max_message_bytes,
                    cross_field_checks=c.cross_field_checks,
                    max_future_skew_seconds=c.max_future_skew_seconds,
                    plausibility_checks=c.plausibility_checks,
                    payment_max_before_s=c.payment_max_before_s,
                    payment_max_after_s=c.payment_max_after_s,
                ),
                retry=RetryPolicy(
                    Backoff(c.retry_initial_ms / 1000, c.retry_max_ms / 1000), max_attempts=c.max_attempts
                ),
            ),
        )
        config = consumer_config(
            k.brokers, k.group_id, k.client_id, k.session_timeout_ms, k.auto_offset_reset
        )
        tracker = OffsetTracker()
        config["stats_cb"] = LagFromStatistics(self.metrics, k.topic, self.state.reported_commits)
        config["on_commit"] = CommitConfirmations(tracker, self.metrics.commit_failures.inc)
        return ConsumerLoop(
            Consumer(config),
            processor,
            LoopPolicy(
                topic=k.topic,
                workers=c.workers,
                batch=BatchLimits(c.batch_max_messages, c.batch_max_bytes, c.batch_max_wait_ms / 1000),
                max_in_flight=c.max_in_flight_messages,
                max_in_flight_bytes=c.max_in_flight_bytes,
                revoke_timeout_s=c.revoke_timeout_s,
                max_consecutive_dead_letters=self.settings.dlq.max_consecutive,
                stuck_after_s=c.stuck_after_s,
            ),
            self.state,
            tracker=tracker,
            on_report=ReportMetrics(self.metrics),
            on_commit_failure=self.metrics.commit_failures.inc,
        )

    def _consume(self) -> None:
        """The consumer thread. Whatever ends it early and unplanned - a crash of the warm-up or of
        the poll loop - is recorded, and the HTTP server then stops the process (``_Server.on_tick``)."""
        try:
            self._warm_then_consume()
        except Exception as exc:  # the loop records its own crashes; this is the warm-up's
            failure = failure_of(exc, Cause.WARMUP_CRASHED)
            self.state.crash(failure)
            log.critical(
                "consumer_thread_crashed", error=failure.detail, cause=failure.cause.value, exc_info=True
            )
        if self.state.crashed and not self.stopping.is_set():
            self.health.stop_requested = self.state.crashed.detail

    def _warm_then_consume(self) -> None:
        # Warm-up first: the consumer's fresher write-through entries must not be evicted by older
        # warm-up ones. While the database is down the consumer could store nothing anyway.
        warmed = warm_up(
            self.cache, self.reader.latest, self.settings.cache.warmup_orders, WARMUP_RETRY, self.stopping
        )
        if warmed is None:
            return
        self.metrics.warmup_duration.set(warmed[1])
        self.health.warm = True
        # What exists now (modules, the app, the warmed cache) lives as long as the process. Moved out of
        # the collector's generations, it is no longer walked by every full collection, which had
        # stalled the event loop for tens of ms (API miss p99 64-73 ms -> ~25 ms, docs/performance.md).
        gc.freeze()
        log.info("gc_frozen", objects=gc.get_freeze_count())
        self.loop.run()

    def run(self) -> int:
        s = self.settings
        self.db_probe.start()
        consumer_thread = threading.Thread(target=self._consume, name="consumer-poll", daemon=True)
        consumer_thread.start()
        api = create_api(
            self.cache,
            self.reader,
            self.health,
            self.metrics,
            lookup_pool=_lookup_pool(s),
            search_pool=_lookup_pool(s, "search", s.postgres.search_pool_size),
            request_timeout_s=s.http.request_timeout_ms / 1000,
            search_pages_bytes=s.cache.search_pages_bytes,
            templates=templates_dir(),
            access_log=s.log.access_log,
        )
        server = _Server(
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
                timeout_graceful_shutdown=max(1, int(s.shutdown.timeout_s / 3)),
            ),
            self.health,
        )
        log.info("http_listening", url=f"http://{s.http.host}:{s.http.port}/")
        server.run()  # until SIGTERM/SIGINT; readiness turned false first, then HTTP drained
        # uvicorn restored the default handlers; a further signal must not cut the ordered stop short.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda n, _f: log.warning("already_stopping", signal=signal.Signals(n).name))
        return self._stop(consumer_thread)

    def _stop(self, consumer_thread: threading.Thread) -> int:
        """Stop polling, finish in-flight batches, commit, leave the group; then flush the DLQ
        producer and close the pools - all within shutdown.timeout_s."""
        self.health.shutting_down = True
        # A crash began the ordered stop already (the loop drained and left the group): the whole
        # stop stays within shutdown.timeout_s of that moment.
        began = self.state.crashed_at if self.state.crashed_at is not None else time.monotonic()
        deadline = began + self.settings.shutdown.timeout_s
        self.stopping.set()
        self.loop.stop()
        consumer_thread.join(timeout=max(0.0, deadline - time.monotonic()))
        clean = not consumer_thread.is_alive()
        self.db_probe.stop()
        undelivered = self.dead_letters.close(max(0.1, deadline - time.monotonic()))
        for pool in (self.writer_pool, self.reader_pool):
            pool.close(timeout=max(0.1, deadline - time.monotonic()))
        ok = clean and undelivered == 0 and not self.state.stopped
        log.info("stopped", clean=ok, outcomes=self.state.snapshot_outcomes())
        return 0 if ok else 1


def _pool(settings: Settings, name: str, size: int, statement_timeout_ms: int) -> ConnectionPool:
    pool = ConnectionPool(
        settings.postgres.dsn,
        min_size=min(settings.postgres.pool_min_size, size),
        max_size=size,
        name=name,
        timeout=settings.postgres.connect_timeout_s,
        kwargs=_connection_kwargs(settings, name),
        configure=lambda conn: configure_session(conn, statement_timeout_ms),
        open=False,
    )
    pool.open(wait=False)  # the service starts even while the database is down; the pool keeps trying
    return pool


def _lookup_pool(settings: Settings, name: str = "lookup", size: int | None = None) -> AsyncConnectionPool:
    """An async pool of the HTTP app whose sessions plan each statement once: the API's cache misses
    ("lookup"), or the UI's searches ("search", ``postgres.search_pool_size``: a budget of their own,
    so a burst of searches queues there and never ahead of look-ups or readiness)."""

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await configure_lookup_session(conn, settings.http.request_timeout_ms)

    size = settings.postgres.lookup_pool_size if size is None else size
    return AsyncConnectionPool(
        settings.postgres.dsn,
        min_size=min(settings.postgres.pool_min_size, size),
        max_size=size,
        name=name,
        timeout=settings.postgres.connect_timeout_s,
        kwargs=_connection_kwargs(settings, name),
        configure=configure,
        open=False,  # opened by the HTTP app's lifespan, on the event loop that uses it
    )


def _connection_kwargs(settings: Settings, name: str) -> dict[str, Any]:
    return {
        "connect_timeout": max(1, int(settings.postgres.connect_timeout_s)),
        "application_name": f"l0-orders-{name}",
        # Every statement is its own transaction: a look-up is one round trip, not SELECT + COMMIT
        # (the writer and the warm-up's reads open explicit transactions where they need them).
        "autocommit": True,
    }


def _retry_at_start(what: str, step: Callable[[], T]) -> T:
    deadline = time.monotonic() + STARTUP_RETRY_S
    while True:
        try:
            return step()
        except (psycopg.OperationalError, KafkaException) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning(
                "startup_step_failed", step=what, error=str(exc).splitlines()[0] if str(exc) else repr(exc)
            )
            time.sleep(1.0)


def _exit_now_if_stuck(code: int) -> int:
    """Honour shutdown.timeout_s even when a worker is stuck in a hung database call: at exit the
    interpreter joins every thread-pool worker (concurrent.futures registers that) and every
    non-daemon thread. Offsets of unfinished work were not committed, so nothing is lost; the messages
    are delivered again after the restart."""
    deadline = time.monotonic() + 1.0  # idle pool threads of a clean stop end within moments
    for thread in _threads_that_block_exit():
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in _threads_that_block_exit()]
    if stuck:
        log.error("exit_with_threads_stuck", threads=stuck, code=code or 1)
        sys.stdout.flush()
        os._exit(code or 1)
    return code


def _threads_that_block_exit() -> list[threading.Thread]:
    main_thread = threading.main_thread()
    return [
        t
        for t in threading.enumerate()
        if t.is_alive() and t is not main_thread and (not t.daemon or t.name.startswith(WORKER_PREFIX))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="l0-service", description="The L0 order service.")
    parser.add_argument(
        "--config", help="YAML config file (default: $CONFIG_FILE, else ./config.yaml if present)"
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate", "rollback", "create-topics", "check-config"],
        help="serve (default): run the service; migrate/rollback: apply/undo migrations; "
        "create-topics: create the Kafka topics; check-config: validate and print the settings",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(config_path(args.config))
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return 2
    secrets = secret_values(settings)
    configure_logging(settings.log.level, settings.log.format, secrets)
    try:
        return _command(args.command, settings)
    except (psycopg.OperationalError, KafkaException) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(
            f"l0-service {args.command}: cannot reach a dependency: {redactor(secrets)(first)}",
            file=sys.stderr,
        )
        return 1


def _command(command: str, settings: Settings) -> int:
    if command == "serve":
        return _exit_now_if_stuck(run_service(settings))
    if command == "migrate":
        print(
            f"applied: {', '.join(migrations.apply_pending(settings.postgres.dsn)) or 'nothing (up to date)'}"
        )
    elif command == "rollback":
        print(f"rolled back: {', '.join(migrations.rollback(settings.postgres.dsn, count=1)) or 'nothing'}")
    elif command == "create-topics":
        k = settings.kafka
        ensure_topics(k.brokers, topic_specs(settings))
        print(f"topics ready: {k.topic} ({k.topic_partitions} partitions), {settings.dlq_topic}")
    elif command == "check-config":
        print("config ok:", *describe(settings), sep="\n  ")  # secrets masked: it goes into tickets
    return 0
