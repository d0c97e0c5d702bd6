"""Stand-ins for confluent-kafka's Consumer and Producer, for unit tests of pure logic.

They keep only what the code under test relies on: a consumer hands out queued messages of its
assigned, unpaused partitions, runs rebalance and commit callbacks inside ``consume`` (as librdkafka
does), and remembers commits; a producer reports deliveries on ``poll``/``flush``. The real broker is
exercised by the integration and end-to-end suites.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from internal.consumer.ports import KafkaMessage, RebalanceCallback

TOPIC = "orders"


@dataclass
class FakeMessage:
    _partition: int
    _offset: int
    _value: bytes | None = b"{}"
    _key: bytes | None = None
    _topic: str = TOPIC
    _error: KafkaError | None = None

    def error(self) -> KafkaError | None:
        return self._error

    def topic(self) -> str | None:
        return self._topic

    def partition(self) -> int | None:
        return self._partition

    def offset(self) -> int | None:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, str | bytes | None]] | None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


@dataclass
class FakeConsumer:
    """Thread-safe for the test thread that scripts it and the poll thread that uses it."""

    on_commit: Callable[[KafkaError | None, list[TopicPartition]], None] | None = None
    fail_commits: int = 0  # the next N asynchronous commits are answered with an error
    lock: threading.Lock = field(default_factory=threading.Lock)
    queued: dict[int, deque[FakeMessage]] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)  # high watermark per partition
    assigned: list[int] = field(default_factory=list)
    paused: set[int] = field(default_factory=set)
    commits: list[tuple[dict[int, int], bool]] = field(default_factory=list)
    confirmed: dict[int, int] = field(default_factory=dict)
    events: deque[Callable[[], None]] = field(default_factory=deque)
    answers: deque[tuple[KafkaError | None, list[TopicPartition]]] = field(default_factory=deque)
    callbacks: dict[str, RebalanceCallback | None] = field(default_factory=dict)
    closed: bool = False
    rebalances: int = 0  # rebalances whose callbacks have run
    consumes: int = 0  # calls of consume()
    watermark_reads: int = 0  # calls of get_watermark_offsets() (the stuck detector's looks)
    waits: list[float] = field(default_factory=list)  # the timeout of each consume() that found nothing
    fail_on: dict[str, Exception] = field(default_factory=dict)  # method name -> what it raises
    seeks: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) of each seek
    # What position() answers, where set (e.g. past transaction markers); else the confirmed commit.
    positions: dict[int, int] = field(default_factory=dict)

    # ---- scripting (test thread) ---------------------------------------------------------
    def add(self, partition: int, count: int, value: Callable[[int], bytes] = lambda _o: b"{}") -> None:
        with self.lock:
            queue = self.queued.setdefault(partition, deque())
            start = self.ends.get(partition, 0)
            for offset in range(start, start + count):
                queue.append(FakeMessage(partition, offset, value(offset)))
            self.ends[partition] = start + count

    def rebalance(self, assign: list[int] | None = None, revoke: list[int] | None = None) -> None:
        """Run on_revoke and/or on_assign inside the next consume(), like librdkafka."""

        def run() -> None:
            if revoke:
                callback = self.callbacks["on_revoke"]
                assert callback is not None
                callback(self, [TopicPartition(TOPIC, p) for p in revoke])
                with self.lock:
                    self.assigned = [p for p in self.assigned if p not in revoke]
                    for p in revoke:  # a new owner would start from the committed position
                        start = self.confirmed.get(p, 0)
                        self.queued[p] = deque(FakeMessage(p, o) for o in range(start, self.ends.get(p, 0)))
            if assign:
                callback = self.callbacks["on_assign"]
                assert callback is not None
                callback(self, [TopicPartition(TOPIC, p) for p in assign])
            self.rebalances += 1

        with self.lock:
            self.events.append(run)

    def committed_positions(self) -> dict[int, int]:
        with self.lock:
            return dict(self.confirmed)

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        assert timeout > 0
        with self.lock:
            return [
                TopicPartition(tp.topic, tp.partition, self.confirmed.get(tp.partition, -1001))
                for tp in partitions
            ]

    # ---- the KafkaConsumer protocol (poll thread) ----------------------------------------
    def _maybe_fail(self, name: str) -> None:
        error = self.fail_on.get(name)
        if error is not None:
            raise error

    def subscribe(
        self,
        topics: list[str],
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
    ) -> None:
        self.callbacks = {"on_assign": on_assign, "on_revoke": on_revoke, "on_lost": on_lost}

    def consume(self, num_messages: int = 1, timeout: float = -1) -> Sequence[KafkaMessage]:
        self._maybe_fail("consume")
        self.consumes += 1
        while True:
            with self.lock:
                event = self.events.popleft() if self.events else None
            if event is None:
                break
            event()
        while True:
            with self.lock:
                answer = self.answers.popleft() if self.answers else None
            if answer is None:
                break
            if self.on_commit is not None:
                self.on_commit(*answer)
        out: list[KafkaMessage] = []
        with self.lock:
            for p in self.assigned:
                queue = self.queued.get(p, deque())
                while queue and p not in self.paused and len(out) < num_messages:
                    out.append(queue.popleft())
        if not out:
            with self.lock:
                self.waits.append(timeout)
            time.sleep(max(0.0, timeout))  # like a real poll that finds nothing
        return out

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        self._maybe_fail("commit")
        positions = {tp.partition: tp.offset for tp in offsets}
        with self.lock:
            self.commits.append((positions, asynchronous))
            failed = asynchronous and self.fail_commits > 0
            if failed:
                self.fail_commits -= 1
            else:
                self.confirmed.update(positions)
            if asynchronous:
                error = KafkaError(KafkaError.REBALANCE_IN_PROGRESS) if failed else None
                self.answers.append((error, [TopicPartition(TOPIC, p, o) for p, o in positions.items()]))
        return None if asynchronous else offsets

    def assign(self, partitions: list[TopicPartition]) -> None:
        with self.lock:
            self.assigned = sorted({*self.assigned, *(tp.partition for tp in partitions)})

    def assignment(self) -> list[TopicPartition]:
        with self.lock:
            return [TopicPartition(TOPIC, p) for p in self.assigned]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._maybe_fail("pause")
        with self.lock:
            self.paused |= {tp.partition for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._maybe_fail("resume")
        with self.lock:
            self.paused -= {tp.partition for tp in partitions}

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        with self.lock:
            self.watermark_reads += 1
            return (0, self.ends.get(partition.partition, 0))

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        with self.lock:
            return [
                TopicPartition(
                    TOPIC,
                    tp.partition,
                    self.positions.get(tp.partition, self.confirmed.get(tp.partition, -1001)),
                )
                for tp in partitions
            ]

    def seek(self, partition: TopicPartition) -> None:
        """Read the partition again from ``partition.offset`` (what is queued is dropped)."""
        self._maybe_fail("seek")
        with self.lock:
            self.seeks.append((partition.partition, partition.offset))
            p = partition.partition
            self.queued[p] = deque(FakeMessage(p, o) for o in range(partition.offset, self.ends.get(p, 0)))

    def consumer_group_metadata(self) -> Any:
        return ("group-metadata", self.rebalances)

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeProducer:
    """Deliveries are reported on poll/flush; ``refuse`` decides a value's fate: None (delivered), a
    KafkaError code raised by produce() (refused before queuing), or a code in the delivery report."""

    refuse_local: Callable[[bytes | None], int | None] = lambda _v: None
    refuse_delivery: Callable[[bytes | None], int | None] = lambda _v: None
    produced: list[tuple[bytes | None, list[tuple[str, Any]]]] = field(default_factory=list)
    delivered: list[tuple[bytes | None, list[tuple[str, Any]]]] = field(default_factory=list)
    pending: list[tuple[bytes | None, list[tuple[str, Any]], Any]] = field(default_factory=list)

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: Any = None,
        headers: Any = None,
    ) -> None:
        code = self.refuse_local(value)
        if code is not None:
            raise KafkaException(KafkaError(code))
        self.produced.append((value, list(headers or [])))
        self.pending.append((value, list(headers or []), on_delivery))

    def poll(self, timeout: float) -> int:
        done, self.pending = self.pending, []
        for value, headers, callback in done:
            code = self.refuse_delivery(value)
            if code is None:
                self.delivered.append((value, headers))
            callback(None if code is None else KafkaError(code), None)
        return len(done)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0

    def purge(self, in_queue: bool = True, in_flight: bool = True) -> None:
        """librdkafka reports every purged message with _PURGE_QUEUE; this fake holds no in-flight ones."""
        done, self.pending = self.pending, []
        if in_queue:
            for _value, _headers, callback in done:
                callback(KafkaError(KafkaError._PURGE_QUEUE), None)


@dataclass
class FakeTxnProducer(FakeProducer):
    """A transactional producer: letters produced in a transaction become ``visible`` only at its
    commit, which also commits the offsets into ``consumer`` (as send_offsets_to_transaction does).
    ``errors[method]`` is a queue of KafkaErrors the next calls of that method raise."""

    consumer: FakeConsumer | None = None
    errors: dict[str, deque[KafkaError]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    open: bool = False
    offsets: dict[int, int] = field(default_factory=dict)
    visible: list[tuple[bytes | None, list[tuple[str, Any]]]] = field(default_factory=list)
    transactions: list[tuple[dict[int, int], int]] = field(default_factory=list)  # offsets, letters
    aborts: int = 0
    inits: int = 0
    current: list[tuple[bytes | None, list[tuple[str, Any]]]] = field(default_factory=list)
    hang: set[str] = field(default_factory=set)  # methods whose calls never return
    released: threading.Event = field(default_factory=threading.Event)

    def fail(
        self, method: str, *codes: int, fatal: bool = False, retriable: bool = False, abortable: bool = False
    ) -> None:
        queue = self.errors.setdefault(method, deque())
        for code in codes:
            queue.append(KafkaError(code, fatal=fatal, retriable=retriable, txn_requires_abort=abortable))

    def _call(self, method: str) -> None:
        self.calls.append(method)
        if method in self.hang:  # never answers (for the test's length)
            self.released.wait(5.0)
        queue = self.errors.get(method)
        if queue:
            raise KafkaException(queue.popleft())

    def init_transactions(self, timeout: float) -> None:
        assert timeout > 0
        self._call("init_transactions")
        self.inits += 1

    def begin_transaction(self) -> None:
        self._call("begin_transaction")
        assert not self.open, "a transaction is open already"
        self.open, self.offsets, self.current = True, {}, []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: Any = None,
        headers: Any = None,
    ) -> None:
        assert self.open, "a letter outside a transaction"
        super().produce(topic, value, key, on_delivery=on_delivery, headers=headers)
        self.current.append((value, list(headers or [])))

    def send_offsets_to_transaction(
        self, positions: list[TopicPartition], group_metadata: Any, timeout: float
    ) -> None:
        assert timeout > 0
        assert group_metadata is not None
        self._call("send_offsets_to_transaction")
        self.offsets = {tp.partition: tp.offset for tp in positions}

    def commit_transaction(self, timeout: float) -> None:
        """Flushes; a letter refused in the delivery report fails the commit (abortable), as in
        librdkafka. A failed commit leaves the transaction open: only an abort ends it."""
        assert timeout > 0
        assert self.open
        self._call("commit_transaction")
        self.poll(0)
        if any(self.refuse_delivery(value) is not None for value, _h in self.current):
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, txn_requires_abort=True))
        self.visible.extend(self.current)
        self.transactions.append((dict(self.offsets), len(self.current)))
        if self.consumer is not None:
            with self.consumer.lock:
                self.consumer.confirmed.update(self.offsets)
        self.open, self.current = False, []

    def abort_transaction(self, timeout: float) -> None:
        assert timeout > 0
        self._call("abort_transaction")
        self.poll(0)
        self.open, self.current, self.offsets = False, [], {}
        self.aborts += 1
