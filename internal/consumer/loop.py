"""The poll loop: the only owner of the Kafka consumer, feeding batches to worker threads.

One thread runs ``ConsumerLoop.run``: it polls, spreads messages over lanes (lanes.py), hands a
lane's batch to the thread pool when it is due, collects finished batches, and commits per
partition only the highest contiguous finished offset (``OffsetTracker``). consume, commit, pause,
resume, assign and close happen on this thread only - confluent-kafka's Consumer is not meant to be
shared. The loop talks to Kafka and to the batch handler only through the protocols of ports.py, so
it is unit-tested with a fake consumer (tests/unit/test_loop.py).

The loop composes small parts, each with its own unit tests: ``Lanes`` (which batch is due, lanes.py),
``FlowControl`` (pause for an outage, room for more, backlog, poll timeout: flow.py), ``Committer``
(when and what to commit: commits.py), ``StuckWatch`` (stuck partitions: stuck.py) and ``StormGuard``
(storm.py). What is left here is the order of the steps, the rebalance callbacks and the stop.

How it ends: ``stop()`` (the ordered stop), a ``FatalError`` (a deliberate stop: the process stays
up and not ready, ``state.fatal``), or any other exception - a bug - which is logged and recorded
as ``state.crashed``; the consumer thread then reports it to the life cycle (internal/lifecycle.py),
and the service ends the process after the ordered stop with a non-zero code, so that a supervisor
restarts it. In every case in-flight batches get ``revoke_timeout_s`` to finish, and what is
finished is committed before the consumer leaves the group; nothing past unfinished work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import KafkaError, TopicPartition

from internal.consumer.commits import CommitPolicy, Committer, OffsetsAndLetters
from internal.consumer.control import Abandoned, Control
from internal.consumer.flow import IDLE_POLL_S, FlowControl, FlowPolicy
from internal.consumer.lanes import BatchLimits, Lanes
from internal.consumer.messages import BatchReport, DeadLetter, Inbound
from internal.consumer.offsets import OffsetTracker
from internal.consumer.ports import BatchHandler, KafkaConsumer, KafkaMessage
from internal.consumer.state import ConsumerState
from internal.consumer.storm import StormGuard
from internal.consumer.stuck import StuckWatch
from internal.domain.causes import Cause
from internal.domain.errors import FatalError, failure_of
from internal.pkg.logging import KAFKA_LOG

log = structlog.get_logger(component="consumer")
WORKER_PREFIX = "order-worker"  # the worker threads' names (thread dumps, logs)


@dataclass(frozen=True, slots=True)
class LoopPolicy:
    topic: str
    workers: int
    batch: BatchLimits
    max_in_flight: int
    max_in_flight_bytes: int
    revoke_timeout_s: float
    max_consecutive_dead_letters: int  # 0 = the storm guard is off
    stuck_after_s: float
    commit: CommitPolicy = field(default_factory=CommitPolicy)


class ConsumerLoop:
    def __init__(
        self,
        consumer: KafkaConsumer,
        handler: BatchHandler,
        policy: LoopPolicy,
        state: ConsumerState,
        *,
        tracker: OffsetTracker | None = None,
        on_report: Callable[[BatchReport], None] = lambda _r: None,
        on_commit_failure: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        commit_strategy: OffsetsAndLetters | None = None,
        on_committed: Callable[[Sequence[DeadLetter], float], None] = lambda _l, _s: None,
        on_rewind: Callable[[int], None] = lambda _n: None,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._policy = policy
        self._state = state
        self._on_report = on_report
        self._clock = clock
        # Shared with the consumer's on_commit callback (commits.py), which confirms positions.
        self._tracker = tracker = tracker or OffsetTracker()
        self._lanes = lanes = Lanes(policy.workers, policy.batch)
        self._storm = StormGuard(policy.max_consecutive_dead_letters)
        self._commits = commits = Committer(
            consumer,
            tracker,
            policy.commit,
            clock=clock,
            strategy=commit_strategy,
            on_failure=on_commit_failure,
            on_committed=on_committed,
            on_abort=self._rewind,
        )
        self._letters = commits.ledger  # letters of finished work, until the commit of their offsets
        self._on_rewind = on_rewind
        self._revoking: set[tuple[str, int]] = set()
        self._flow = FlowControl(
            consumer,
            state,
            FlowPolicy(policy.max_in_flight, policy.max_in_flight_bytes, policy.batch.max_messages),
            in_flight=tracker.in_flight,
            # Letters waiting for their commit hold the messages' bytes too.
            bytes_in_flight=lambda: lanes.bytes_in_flight() + commits.ledger.bytes,
            on_paused=state.set_paused,
        )
        self._stuck = StuckWatch(consumer, tracker, state, policy.stuck_after_s, clock)
        self._stopping = False
        self._progress = threading.Event()  # set by a worker when its batch is done
        self._workers: set[threading.Thread] = set()  # at most policy.workers: the pool reuses them
        self._workers_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=policy.workers, thread_name_prefix=WORKER_PREFIX, initializer=self._note_worker
        )

    def worker_threads(self) -> list[threading.Thread]:
        """The worker threads that ran a batch of this loop, known by object (the service waits for
        them at exit). Any thread."""
        with self._workers_lock:
            return list(self._workers)

    # ---- life cycle -------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop (any thread). Retrying batches give up; finished ones are committed."""
        self._stopping = True

    def run(self) -> None:
        self._state.running = True
        try:
            self._consumer.subscribe(
                [self._policy.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            self._poll_until_stopped()
        except FatalError as exc:
            self._state.stop_for_good(failure_of(exc, exc.cause))
            log.critical("consumer_stopped", reason=str(exc), cause=exc.cause.value)
        except (
            Exception
        ) as exc:  # a bug, or a fenced producer: recorded, so that the service ends the process
            failure = failure_of(exc, Cause.POLL_THREAD_CRASHED)
            self._state.crash(failure)
            log.critical(
                "consumer_crashed",
                error=f"{type(exc).__name__}: {exc}",
                cause=failure.cause.value,
                exc_info=True,
            )
        finally:
            self._stopping = True
            self._shut_down()
            self._state.running = False
            log.info("consumer_closed", outcomes=self._state.snapshot_outcomes())

    def _poll_until_stopped(self) -> None:
        flow = self._flow
        while not self._stopping:
            self._state.beat()
            self._collect_finished()
            self._commits.now_and_then()
            self._stuck.check(flow.held_back)
            flow.update()
            if flow.should_poll:
                # Messages waiting here (behind a running batch, or for a batch to fill) need the
                # loop back soon to be dispatched; otherwise it may block until the next message.
                # Paused, the batch they wait behind is retrying (no hurry for an outage's length).
                timeout = flow.poll_timeout(
                    waiting=self._lanes.waiting(),
                    busy=bool(self._tracker.in_flight()) or self._tracker.has_to_commit(),
                )
                messages = self._poll(timeout)
                now = self._clock()  # after the poll: it may have blocked up to QUIET_POLL_S
                for message in messages:
                    self._accept(message, now)
            else:
                # Full: wait for a batch to finish instead of pausing (a finishing batch sets the event).
                self._progress.wait(IDLE_POLL_S)
            self._progress.clear()
            self._dispatch()

    def _poll(self, timeout: float) -> Sequence[KafkaMessage]:
        """What librdkafka has queued, without waiting; when nothing is, wait up to ``timeout`` for
        the first message only. consume(n, timeout) would return after the whole timeout unless n
        messages came, and every message of a quiet minute would wait for it."""
        size = self._policy.batch.max_messages
        messages = self._consumer.consume(size, 0)
        if not messages:
            messages = self._consumer.consume(1, timeout)
            if messages and size > 1:
                messages = [*messages, *self._consumer.consume(size - 1, 0)]
        self._flow.polled(len(messages))
        return messages

    def _shut_down(self) -> None:
        """Finish what can be finished, commit it, leave the group. Each step is guarded: after a
        crash the consumer itself may be what fails, and the next steps must still run."""
        steps: list[tuple[str, Callable[[], None]]] = [
            ("drain", self._drain),
            ("close", self._consumer.close),  # leaves the group: partitions move to others at once
            ("workers", lambda: self._pool.shutdown(wait=False, cancel_futures=True)),
        ]
        for name, step in steps:
            try:
                step()
            except FatalError as exc:  # e.g. the storm guard on a batch collected in the revoke of close()
                self._state.stop_for_good(failure_of(exc, exc.cause))
            except Exception as exc:
                log.exception("consumer_shutdown_step_failed", step=name)
                self._state.crash(failure_of(exc, Cause.POLL_THREAD_CRASHED))

    def _drain(self) -> None:
        """Give running batches revoke_timeout_s, take every result that came (one bad result must
        not hold back the others' commits), commit synchronously."""
        wait(self._lanes.running(), timeout=self._policy.revoke_timeout_s)
        for _batch, future in self._lanes.finished():
            try:
                self._take(future)
            except FatalError as exc:
                self._state.stop_for_good(failure_of(exc, exc.cause))
            except Exception as exc:
                log.exception("batch_failed_unexpectedly")
                self._state.crash(failure_of(exc, Cause.POLL_THREAD_CRASHED))
        self._commits.commit_now()

    # ---- polling ----------------------------------------------------------------------------
    def _accept(self, message: KafkaMessage, now: float) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("kafka_error", error=error.str(), fatal=error.fatal())
                if error.fatal():
                    raise FatalError(f"kafka: {error.str()}", cause=Cause.KAFKA_FATAL)
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:  # only error events lack them
            return
        generation = self._tracker.generation(topic, partition)
        if generation is None:  # not ours any more; not tracked, so never committed by us
            return
        self._tracker.track(topic, partition, offset)
        _, timestamp = message.timestamp()
        self._lanes.add(
            Inbound(
                topic=topic,
                partition=partition,
                offset=offset,
                key=message.key(),
                value=message.value(),
                headers=_headers(message),
                timestamp_ms=timestamp if timestamp > 0 else None,
                generation=generation,
            ),
            now,
        )

    def _dispatch(self) -> None:
        for lane, batch in self._lanes.due(self._clock(), self._flow.backlog):
            future = self._pool.submit(self._handler.process, batch, self._control(batch))
            self._lanes.start(lane, future)
            future.add_done_callback(lambda _f: self._progress.set())

    def _note_worker(self) -> None:
        """The pool's initializer: runs once on each worker thread as it starts."""
        with self._workers_lock:
            self._workers.add(threading.current_thread())

    def _control(self, batch: Sequence[Inbound]) -> Control:
        keys = {(m.topic, m.partition, m.generation) for m in batch}

        def wanted() -> bool:
            # Read from a worker thread: a dict lookup is atomic, and a stale answer only delays by one step.
            return not self._stopping and all(self._tracker.generation(t, p) == g for t, p, g in keys)

        def sleep(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while wanted() and (left := deadline - time.monotonic()) > 0:
                time.sleep(min(left, 0.1))

        return Control(wanted, sleep)

    # ---- results and commits ----------------------------------------------------------------
    def _collect_finished(self) -> None:
        for _batch, future in self._lanes.finished():
            self._take(future)  # an exception other than Abandoned is a bug of the handler: it ends the loop

    def _take(self, future: Future[BatchReport]) -> None:
        try:
            report = future.result()
        except Abandoned:
            return  # its offsets stay unfinished: delivered again after the restart/rebalance
        self._finish(report)

    def _finish(self, report: BatchReport) -> None:
        for message in report.messages:
            self._tracker.finish(message.topic, message.partition, message.offset, message.generation)
        if report.letters:  # only those of the current assignment: an older one's are read again
            generation = self._tracker.generation
            self._letters.add(
                [
                    x
                    for x in report.letters
                    if generation(x.message.topic, x.message.partition) == x.message.generation
                ]
            )
        self._state.count(report.outcomes)
        try:
            self._on_report(report)
        except Exception:  # metrics must never hold back consumption
            log.exception("report_failed")
        self._storm.observe(report.outcomes)

    # ---- rebalance callbacks (run inside consume(), on this thread) ---------------------------
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._tracker.assign(tp.topic, tp.partition)
        consumer.assign(partitions)
        consumer.resume(partitions)  # a fresh assignment starts unpaused; flow control re-pauses if needed
        self._flow.assigned()
        self._state.assigned = self._state.assigned | {(tp.topic, tp.partition) for tp in partitions}
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in partitions))

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._lanes.forget(revoked)
        if not self._stopping:  # at a stop (close() revokes) the drain has waited already
            wait(self._lanes.running(revoked), timeout=self._policy.revoke_timeout_s)
        self._collect_finished()
        self._revoking = revoked
        try:
            self._commits.commit_now(only=revoked)  # in transactional mode: one transaction, then release
        finally:
            self._revoking = set()
        self._drop(revoked)
        log.info("partitions_revoked", partitions=sorted(p for _, p in revoked))

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self._lanes.forget(lost)
        self._drop(lost)
        log.warning("partitions_lost", partitions=sorted(p for _, p in lost))

    # ---- an aborted transaction (the Committer's on_abort) -----------------------------------------
    def _rewind(self, partitions: set[tuple[str, int]]) -> None:
        """The transaction that held ``partitions`` was aborted: their letters were never visible and
        their offsets not committed. Read them again from the last committed offset: the in-flight
        work gets a new generation (results of the old one are ignored, its retries give up), waiting
        messages and letters are dropped, and the consumer seeks back. Stored orders come back as
        duplicates (no letter), refused messages as letters again: nothing lost, nothing doubled.
        Partitions being revoked or a consumer that is stopping need no seek: the next owner (or the
        next start) reads from the committed offset anyway."""
        self._letters.drop(partitions)
        leaving = self._revoking | (partitions if self._stopping else set())
        again = sorted(partitions - leaving)
        self._lanes.forget(set(again))
        for topic, partition in again:
            position = self._tracker.rewind(topic, partition)
            if position is not None:
                # A seek that fails leaves nothing safe to go on with: raised, it ends the loop as a
                # crash (exit 1), and the restart reads from the committed offsets.
                self._consumer.seek(TopicPartition(topic, partition, position))
        self._on_rewind(len(again))
        log.warning(
            "partitions_rewound", partitions=[p for _, p in again], leaving=sorted(p for _, p in leaving)
        )

    def _drop(self, partitions: set[tuple[str, int]]) -> None:
        self._letters.drop(partitions)
        for topic, partition in partitions:
            self._tracker.drop(topic, partition)
        self._state.assigned = self._state.assigned - partitions
        self._stuck.forget(partitions)


def _headers(message: KafkaMessage) -> tuple[tuple[str, str | bytes | None], ...]:
    try:
        raw: Any = message.headers()
    except Exception as exc:  # a header name that is not UTF-8 (any client may send one) cannot be read
        log.warning(
            "headers_unreadable",
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            error=f"{type(exc).__name__}: {exc}",
        )
        return ()  # the message itself is still processed; a letter for it carries no original headers
    if raw is None:
        return ()
    return tuple(raw.items()) if isinstance(raw, dict) else tuple(raw)


def consumer_config(
    brokers: str, group: str, client_id: str, session_timeout_ms: int, offset_reset: str
) -> dict[str, Any]:
    """The orders consumer. ``read_committed`` (librdkafka's default, explicit here): a transactional
    upstream producer's aborted messages are never delivered, and its markers are skipped by the
    commit positions (``Committer._skip_markers``)."""
    return {
        "bootstrap.servers": brokers,
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": False,  # commits come from the OffsetTracker only
        "enable.auto.offset.store": False,
        "auto.offset.reset": offset_reset,
        "isolation.level": "read_committed",
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(500, session_timeout_ms // 5),
        "partition.assignment.strategy": "roundrobin",
        # librdkafka's statistics feed consumer_lag (internal/consumer/observe.py) without any call
        # from the poll loop; the callback runs inside consume(), on the poll thread.
        "statistics.interval.ms": 5000,
        "logger": KAFKA_LOG,  # JSON lines, not librdkafka's own stderr format
    }
