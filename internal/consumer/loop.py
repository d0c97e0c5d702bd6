"""The poll loop: the only owner of the Kafka consumer, feeding batches to worker threads.

One thread runs ``ConsumerLoop.run``: it polls, spreads messages over lanes (one lane per worker; a
partition always goes to the same lane, so one partition's messages are written in order), hands a
lane's batch to the thread pool when it is full or old enough, collects finished batches, and commits
per partition only the highest contiguous finished offset (``OffsetTracker``). poll, commit, pause,
resume, assign and close happen on this thread only - confluent-kafka's Consumer is not meant to be
shared.

Flow control: while a worker is backing off from a database outage, every assigned partition is
paused and the loop keeps polling (which keeps the group membership alive and returns nothing);
librdkafka resumes fetching from the position after the last message handed to us, so pausing neither
skips nor repeats messages. When too many messages are polled but unfinished, the loop simply stops
taking more until a batch finishes (a short wait, well within max.poll.interval.ms).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from internal.consumer.dlq import KAFKA_LOG
from internal.consumer.messages import BatchReport, Inbound
from internal.consumer.offsets import OffsetTracker
from internal.consumer.processor import Abandoned, BatchProcessor, Control
from internal.consumer.state import ConsumerState
from internal.domain.errors import FatalError

log = structlog.get_logger(component="consumer")
RETRY_UNEXPECTED_AFTER_S = 1.0
WORKER_PREFIX = "order-worker"  # the composition root finds stuck workers by it at exit


@dataclass(frozen=True, slots=True)
class LoopPolicy:
    topic: str
    workers: int
    batch_max_messages: int
    batch_max_wait_s: float
    max_in_flight: int
    revoke_timeout_s: float
    max_consecutive_dead_letters: int  # 0 = the storm guard is off


@dataclass
class _Lane:
    pending: list[Inbound] = field(default_factory=list)
    oldest_at: float = 0.0
    running: Future[BatchReport] | None = None
    batch: list[Inbound] = field(default_factory=list)
    hold_until: float = 0.0


class ConsumerLoop:
    def __init__(
        self,
        consumer: Consumer,
        processor: BatchProcessor,
        policy: LoopPolicy,
        state: ConsumerState,
        on_report: Callable[[BatchReport], None] = lambda _r: None,
    ) -> None:
        self._consumer = consumer
        self._processor = processor
        self._policy = policy
        self._state = state
        self._on_report = on_report
        self._tracker = OffsetTracker()
        self._lanes = [_Lane() for _ in range(policy.workers)]
        self._pool = ThreadPoolExecutor(max_workers=policy.workers, thread_name_prefix=WORKER_PREFIX)
        self._stopping = False
        self._progress = threading.Event()  # set by a worker when its batch is done
        self._paused = False
        self._dead_letter_streak = 0

    # ---- life cycle -------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop (any thread). Retrying batches give up; finished ones are committed."""
        self._stopping = True

    def run(self) -> None:
        self._state.running = True
        self._consumer.subscribe(
            [self._policy.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        poll_timeout = min(0.01, self._policy.batch_max_wait_s)
        try:
            while not self._stopping:
                self._state.beat()
                self._collect_finished()
                self._commit()
                if self._flow_control():
                    for message in self._consumer.consume(self._policy.batch_max_messages, poll_timeout):
                        self._accept(message)
                else:
                    # Full: wait for a batch to finish instead of pausing. Pausing would make librdkafka
                    # drop its prefetched messages and fetch them again on resume (measured: -15 % rate).
                    self._progress.wait(poll_timeout)
                self._progress.clear()
                self._dispatch()
        except FatalError as exc:
            self._state.fatal = str(exc)
            log.critical("consumer_stopped", reason=str(exc))
        finally:
            self._stopping = True
            self._drain(self._policy.revoke_timeout_s)
            self._consumer.close()  # leaves the group, so partitions move to other instances at once
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._state.running = False
            log.info("consumer_closed", outcomes=self._state.snapshot_outcomes())

    def _drain(self, timeout_s: float) -> None:
        running = [lane.running for lane in self._lanes if lane.running is not None]
        wait(running, timeout=timeout_s)
        try:
            self._collect_finished()
        except FatalError as exc:
            self._state.fatal = self._state.fatal or str(exc)
        self._commit(synchronous=True)

    # ---- polling ----------------------------------------------------------------------------
    def _accept(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("kafka_error", error=error.str(), fatal=error.fatal())
                if error.fatal():
                    raise FatalError(f"kafka: {error.str()}")
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:  # only error events lack them
            return
        generation = self._tracker.generation(topic, partition)
        if generation is None:  # not ours any more; not tracked, so never committed by us
            return
        self._tracker.track(topic, partition, offset)
        _, timestamp = message.timestamp()
        lane = self._lanes[partition % len(self._lanes)]
        if not lane.pending:
            lane.oldest_at = time.monotonic()
        lane.pending.append(
            Inbound(
                topic=topic,
                partition=partition,
                offset=offset,
                key=message.key(),
                value=message.value(),
                headers=_headers(message),
                timestamp_ms=timestamp if timestamp > 0 else None,
                generation=generation,
            )
        )

    def _dispatch(self) -> None:
        now = time.monotonic()
        for lane in self._lanes:
            if lane.running is not None or not lane.pending or now < lane.hold_until:
                continue
            full = len(lane.pending) >= self._policy.batch_max_messages
            if full or now - lane.oldest_at >= self._policy.batch_max_wait_s:
                lane.batch = lane.pending[: self._policy.batch_max_messages]
                lane.pending = lane.pending[self._policy.batch_max_messages :]
                lane.oldest_at = now
                lane.running = future = self._pool.submit(
                    self._processor.process, lane.batch, self._control(lane.batch)
                )
                future.add_done_callback(lambda _f: self._progress.set())

    def _control(self, batch: list[Inbound]) -> Control:
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
        for lane in self._lanes:
            future = lane.running
            if future is None or not future.done():
                continue
            lane.running = None
            try:
                report = future.result()
            except Abandoned:
                continue  # its offsets stay unfinished: delivered again after the restart/rebalance
            except FatalError:
                raise
            except Exception:
                log.exception("batch_failed_unexpectedly", batch_size=len(lane.batch))
                lane.pending[:0] = [
                    m for m in lane.batch if self._tracker.generation(m.topic, m.partition) == m.generation
                ]
                lane.hold_until = time.monotonic() + RETRY_UNEXPECTED_AFTER_S
                continue
            self._finish(report)

    def _finish(self, report: BatchReport) -> None:
        for message, outcome in zip(report.messages, report.outcomes, strict=True):
            self._tracker.finish(message.topic, message.partition, message.offset, message.generation)
            self._dead_letter_streak = self._dead_letter_streak + 1 if outcome.dead_lettered else 0
        self._state.count(report.outcomes)
        self._on_report(report)
        limit = self._policy.max_consecutive_dead_letters
        if limit and self._dead_letter_streak > limit:
            raise FatalError(
                f"{self._dead_letter_streak} dead-letters in a row (dlq.max_consecutive={limit}): "
                "consumption stopped to protect the topic; see docs/runbook.md#dead-letter-storm"
            )

    def _commit(self, synchronous: bool = False, only: set[tuple[str, int]] | None = None) -> None:
        positions = self._tracker.to_commit(only)
        if not positions:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            if synchronous:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as exc:  # KafkaException: nothing lost, the same positions are tried again
            log.warning("commit_failed", error=str(exc))
            return
        self._tracker.committed(positions)

    def _flow_control(self) -> bool:
        """Pause for an outage; answer whether there is room to take more messages now."""
        if self._state.in_outage and not self._paused:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True
            log.info("partitions_paused", outage=self._state.outage_reason)
        elif self._paused and not self._state.in_outage:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False
            log.info("partitions_resumed")
        self._state.paused = self._paused
        return self._tracker.in_flight() < self._policy.max_in_flight

    # ---- rebalance callbacks (run inside consume(), on this thread) ---------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._tracker.assign(tp.topic, tp.partition)
        consumer.assign(partitions)
        consumer.resume(partitions)  # a fresh assignment starts unpaused; flow control re-pauses if needed
        self._paused = False
        self._state.assigned = self._state.assigned | {(tp.topic, tp.partition) for tp in partitions}
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._forget_pending(revoked)
        busy = [
            lane.running for lane in self._lanes if lane.running is not None and _touches(lane.batch, revoked)
        ]
        wait(busy, timeout=self._policy.revoke_timeout_s)
        self._collect_finished()
        self._commit(synchronous=True, only=revoked)
        self._drop(revoked)
        log.info("partitions_revoked", partitions=sorted(p for _, p in revoked))

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self._forget_pending(lost)
        self._drop(lost)
        log.warning("partitions_lost", partitions=sorted(p for _, p in lost))

    def _forget_pending(self, partitions: set[tuple[str, int]]) -> None:
        for lane in self._lanes:
            lane.pending = [m for m in lane.pending if (m.topic, m.partition) not in partitions]

    def _drop(self, partitions: set[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            self._tracker.drop(topic, partition)
        self._state.assigned = self._state.assigned - partitions


def _headers(message: Message) -> tuple[tuple[str, str | bytes | None], ...]:
    raw = message.headers()
    if raw is None:
        return ()
    return tuple(raw.items()) if isinstance(raw, dict) else tuple(raw)


def _touches(batch: list[Inbound], partitions: set[tuple[str, int]]) -> bool:
    return any((m.topic, m.partition) in partitions for m in batch)


def consumer_config(
    brokers: str, group: str, client_id: str, session_timeout_ms: int, offset_reset: str
) -> dict[str, Any]:
    return {
        "bootstrap.servers": brokers,
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": False,  # commits come from the OffsetTracker only
        "enable.auto.offset.store": False,
        "auto.offset.reset": offset_reset,
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(500, session_timeout_ms // 5),
        "partition.assignment.strategy": "roundrobin",
        # librdkafka's statistics feed consumer_lag (internal/consumer/observe.py) without any call
        # from the poll loop; the callback runs inside consume(), on the poll thread.
        "statistics.interval.ms": 5000,
        "logger": KAFKA_LOG,  # JSON lines, not librdkafka's own stderr format
    }
