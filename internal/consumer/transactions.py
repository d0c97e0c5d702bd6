"""Exactly-once dead letters: the letters of finished work and the group's offsets in one Kafka
transaction (``TransactionalCommit``, one strategy of the commit path in commits.py).

The Committer calls ``commit`` on the poll thread, at the commit cadence, with the positions it
commits and the letters of exactly that work. One call is one whole transaction - begin, produce the
letters, ``send_offsets_to_transaction`` (KIP-447: with the consumer's group metadata, so that the
broker fences a zombie of an older group generation), commit - so no transaction is ever open while
the poll loop does anything else: a revoke or a lost partition never meets an open transaction.

Every failure ends in one of three defined actions (docs/consumer.md, "Transactions"):

| error (librdkafka's classification)           | action                                            |
|-----------------------------------------------|---------------------------------------------------|
| ``txn_requires_abort()``, or anything not     | abort (bounded), ``TransactionAborted``: the loop  |
| fatal that is not retriable                   | rewinds the partitions and processes them again   |
| ``retriable()`` on commit (broker away, a     | commit again until ``timeout_s`` has passed, then  |
| timeout)                                      | abort and rewind as above                         |
| ``fatal()`` (fenced: PRODUCER_FENCED,         | ``TransactionFatal``: the process stops in order   |
| INVALID_PRODUCER_EPOCH, ...), or an abort     | and exits 1; the supervisor starts it again with   |
| that cannot finish within ``timeout_s``       | a fresh ``init_transactions``                     |

Why a fenced producer is not recreated in place: a fence means another instance holds this
``transactional.id`` (a zombie or a misconfiguration). A new producer would call init_transactions,
fence that other one in turn and mask the real problem; a restart by the supervisor is simpler, is
what the service does for every fatal Kafka error, and loses nothing (the offsets were not committed).

A letter the broker refuses for good (too large for the topic) fails its transaction: the refusal
is remembered and the letter goes as a stub in the next one, as the at-least-once sink does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, NoReturn, Protocol

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from internal.consumer.commits import Committed, TransactionAborted
from internal.consumer.dlq import SinkProducer
from internal.consumer.letters import wire_form
from internal.consumer.messages import DeadLetter
from internal.domain.causes import Cause
from internal.domain.errors import FatalError, ServiceError
from internal.pkg.kafka_produce import ProduceError, ProduceErrorKind, classify, describe, produce

log = structlog.get_logger(component="consumer")
ABORT_PAUSE_S = 0.2  # between retries of a commit or an abort that the broker could not answer
# A blocking transactional call gets its timeout plus this much before it counts as hung. Seen in the
# chaos suite: after a broker restart, send_offsets_to_transaction(timeout) did not return for
# minutes, which would hold the poll thread (and so the group's rebalance) forever.
HUNG_GRACE_S = 5.0
Origin = tuple[str, int, int]


class TransactionFatal(ServiceError):
    """The transactional producer cannot go on (fenced, or an abort that never finished): the
    service stops in order and exits 1. Not a ``FatalError``: the poll loop records it as a crash."""


class _Hung(Exception):
    """A transactional call did not return within its timeout and ``HUNG_GRACE_S``."""


class TransactionsUnavailable(ServiceError):
    """``init_transactions`` failed at the start: the message says what to change."""


class TransactionalProducer(SinkProducer, Protocol):
    """The part of confluent_kafka.Producer the transactional commit uses."""

    def init_transactions(self, timeout: float) -> None: ...
    def begin_transaction(self) -> None: ...
    def send_offsets_to_transaction(
        self, positions: list[TopicPartition], group_metadata: Any, timeout: float
    ) -> None: ...
    def commit_transaction(self, timeout: float) -> None: ...
    def abort_transaction(self, timeout: float) -> None: ...


class GroupMember(Protocol):
    def consumer_group_metadata(self) -> Any: ...

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        """The group's committed offsets of ``partitions``, asked of the broker; blocks up to
        ``timeout``; raises KafkaException."""
        ...


def transactional_config(
    brokers: str, transactional_id: str, client_id: str, letter_max: int, timeout_ms: int
) -> dict[str, Any]:
    """The dead-letter producer's configuration in transactional mode (the at-least-once sink's
    settings, plus the transaction's)."""
    return {
        "bootstrap.servers": brokers,
        "client.id": client_id,
        "transactional.id": transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 1,  # commit_transaction flushes at once anyway
        "message.max.bytes": letter_max,
        "transaction.timeout.ms": timeout_ms,
        # librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        "message.timeout.ms": timeout_ms,
    }


class TransactionalCommit:
    """Implements ``OffsetsAndLetters`` with one Kafka transaction per call."""

    transactional = True

    def __init__(
        self,
        producer: TransactionalProducer,
        consumer: GroupMember,
        *,
        topic: str,
        group: str,
        version: str,
        max_error_bytes: int,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], None] = time.sleep,
        new_producer: Callable[[], TransactionalProducer] | None = None,
    ) -> None:
        self._producer = producer
        # Replaces a producer whose call hung (the new one's init_transactions fences the old one and
        # aborts its open transaction); None: a hang is fatal.
        self._new_producer = new_producer
        self._consumer = consumer
        self._topic = topic
        self._group = group
        self._version = version
        self._max_error_bytes = max_error_bytes
        self._timeout_s = timeout_s
        self._clock = clock
        self._pause = pause
        # Letters the broker refused for good in an aborted transaction, by origin. The broker refuses a
        # whole record batch (e.g. one letter over the topic's max.message.bytes refuses every letter
        # batched with it), so a first refusal only means "send it alone next time" (``_alone``); a
        # letter refused when it was alone goes as a stub (``_refused``).
        self._refused: dict[Origin, str] = {}
        self._alone: set[Origin] = set()

    def init(self) -> None:
        """Register the transactional id with the broker (fencing an older instance of the same id);
        at the start, before the first poll. Raises ``TransactionsUnavailable`` saying what to change."""
        try:
            self._bounded(partial(self._producer.init_transactions, self._timeout_s), self._timeout_s)
        except (KafkaException, _Hung) as exc:
            raise TransactionsUnavailable(
                f"Kafka transactions do not work ({_text(exc)}): the broker must be reachable and needs "
                "transaction.state.log.replication.factor and transaction.state.log.min.isr no larger "
                "than its number of brokers (1 for a single broker), and the principal needs "
                "TransactionalId write access; or set kafka.transactions=false (KAFKA_TRANSACTIONS=false) "
                "for at-least-once dead letters (docs/dlq.md#exactly-once)",
                cause=Cause.TRANSACTIONS_UNAVAILABLE,
            ) from exc

    def commit(
        self, offsets: list[TopicPartition], letters: Sequence[DeadLetter], *, synchronous: bool
    ) -> Committed:
        deadline = self._clock() + self._timeout_s
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            self._fail(exc, opened=False)
        refused: list[tuple[Origin, KafkaError]] = []
        places: dict[int, tuple[int, int]] = {}  # id of a sent letter -> its DLQ partition and offset
        sent_alone: set[Origin] = set()
        try:
            sent = [self._produce(letter, refused, places, sent_alone) for letter in letters]
            producer, metadata, left = (
                self._producer,
                self._consumer.consumer_group_metadata(),
                self._left(deadline),
            )
            self._bounded(lambda: producer.send_offsets_to_transaction(offsets, metadata, left), left)
            self._commit_until(deadline)
        except _Hung as exc:
            self._replace(exc)
            # A commit_transaction that hung after its request reached the broker is completed, not
            # aborted, by the new producer's init_transactions: then the letters are visible and the
            # offsets committed, and a rewind would send the letters a second time.
            if self._applied(offsets):
                log.warning("transaction_applied_after_hang", why=str(exc))
                self._producer.poll(0)
                placed = [_placed(letter, places.get(id(letter))) for letter in sent]
                return Committed([TopicPartition(t.topic, t.partition, t.offset) for t in offsets], placed)
            raise TransactionAborted(f"a transactional call hung ({exc}); the producer was replaced") from exc
        except (KafkaException, ProduceError) as exc:
            self._producer.poll(0)  # serve the delivery reports that came: refusals are remembered
            for origin, error in refused:
                if origin in sent_alone or origin == (_STUB_REFUSED, 0, 0):
                    self._refused[origin] = describe(error)
                else:
                    self._alone.add(origin)
            self._fail(exc, opened=True)
        self._producer.poll(0)  # the delivery reports the commit's flush left: the letters' places
        for letter in sent:
            self._refused.pop(_origin(letter), None)
            self._alone.discard(_origin(letter))
        placed = [_placed(letter, places.get(id(letter))) for letter in sent]
        return Committed([TopicPartition(t.topic, t.partition, t.offset) for t in offsets], placed)

    def _produce(
        self,
        letter: DeadLetter,
        refused: list[tuple[Origin, KafkaError]],
        places: dict[int, tuple[int, int]],
        sent_alone: set[Origin],
    ) -> DeadLetter:
        origin = _origin(letter)
        earlier = self._refused.get(origin)
        if earlier is not None and letter.truncated is None:
            letter = replace(letter, truncated=earlier)
        alone = origin in self._alone and letter.truncated is None
        if alone:  # in a record batch of its own: what came before goes first, it goes by itself
            self._flush()
            sent_alone.add(origin)
        try:
            self._send(letter, refused, places)
        except ProduceError as exc:
            if not exc.permanent or letter.truncated is not None:
                raise
            letter = replace(letter, truncated=describe(exc.error))  # refused before queuing: a stub
            self._send(letter, refused, places)
        if alone:
            self._flush()
        return letter

    def _flush(self) -> None:
        """Send what is queued now (inside the transaction), so that the next letter is batched alone."""
        if self._producer.flush(self._timeout_s) > 0:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "letters not sent within the timeout"))

    def _send(
        self,
        letter: DeadLetter,
        refused: list[tuple[Origin, KafkaError]],
        places: dict[int, tuple[int, int]],
    ) -> None:
        def on_delivery(err: KafkaError | None, msg: Message | None) -> None:
            if err is None:
                partition, offset = (msg.partition(), msg.offset()) if msg is not None else (None, None)
                if partition is not None and offset is not None and offset >= 0:  # else: place unknown
                    places[id(letter)] = (partition, offset)
            elif classify(err) is ProduceErrorKind.PERMANENT:
                if letter.truncated is not None:  # even the stub: the topic is unusable
                    refused.append(((_STUB_REFUSED, 0, 0), err))
                refused.append((_origin(letter), err))

        value, key, headers = wire_form(letter, self._group, self._version, self._max_error_bytes)
        produce(
            self._producer,
            self._topic,
            value=value,
            key=key,
            headers=headers,
            on_delivery=on_delivery,
            max_wait_s=self._timeout_s,
        )

    def _commit_until(self, deadline: float) -> None:
        while True:
            try:
                left = self._left(deadline)
                self._bounded(partial(self._producer.commit_transaction, left), left)
                return
            except KafkaException as exc:
                error = _error(exc)
                if error is None or not error.retriable() or error.txn_requires_abort():
                    raise
                if self._clock() >= deadline:
                    raise
                log.warning("transaction_commit_retried", error=describe(error))
                self._pause(ABORT_PAUSE_S)

    def _fail(self, exc: KafkaException | ProduceError, *, opened: bool) -> NoReturn:
        """Classify a failure: fatal -> ``TransactionFatal``; anything else -> abort (when a
        transaction is open) and ``TransactionAborted``."""
        error = exc.error if isinstance(exc, ProduceError) else _error(exc)
        text = describe(error) if error is not None else str(exc)
        if error is not None and error.fatal():
            raise TransactionFatal(
                f"the dead-letter producer is fenced or failed for good ({text}): another instance "
                "may use the same kafka.transactional_id; the service stops and its supervisor "
                "restarts it",
                cause=Cause.TRANSACTION_FATAL,
            ) from exc
        if (_STUB_REFUSED, 0, 0) in self._refused:
            self._refused.pop((_STUB_REFUSED, 0, 0))
            self._abort()
            raise FatalError(
                f"dead-letter topic {self._topic} refuses even a stub letter ({text}): check that it "
                "exists, may be written and allows messages of 32 KB at least; see "
                "docs/runbook.md#dlq-refuses",
                cause=Cause.DEAD_LETTER_REFUSED,
            ) from exc
        if opened:
            self._abort()
        raise TransactionAborted(text) from exc

    def _abort(self) -> None:
        deadline = self._clock() + self._timeout_s
        while True:
            try:
                left = self._left(deadline)
                self._bounded(partial(self._producer.abort_transaction, left), left)
                self._producer.poll(0)
                return
            except _Hung as exc:
                self._replace(exc)  # the new producer's init_transactions aborts the open transaction
                return
            except KafkaException as exc:
                error = _error(exc)
                if error is not None and error.retriable() and not error.fatal() and self._clock() < deadline:
                    self._pause(ABORT_PAUSE_S)
                    continue
                raise TransactionFatal(
                    f"a dead-letter transaction could not be aborted within {self._timeout_s:g} s "
                    f"({_text(exc)}); the service stops and its supervisor restarts it",
                    cause=Cause.TRANSACTION_FATAL,
                ) from exc

    def _bounded(self, call: Callable[[], None], timeout_s: float) -> None:
        """Run a blocking librdkafka call on a helper thread and wait for it at most ``timeout_s`` +
        ``HUNG_GRACE_S``: the poll thread must never hang (it serves the group's rebalances)."""
        failure: list[BaseException] = []
        done = threading.Event()

        def run() -> None:
            try:
                call()
            except BaseException as exc:  # handed to the caller as it is
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name="txn-call", daemon=True).start()
        if not done.wait(timeout_s + HUNG_GRACE_S):
            raise _Hung(f"no answer within {timeout_s + HUNG_GRACE_S:.0f} s")
        if failure:
            raise failure[0]

    def _replace(self, why: _Hung) -> None:
        """Replace a producer whose call hung: a new one, initialised (fencing the old one and
        aborting its open transaction). Without a factory, or when that fails: fatal."""
        if self._new_producer is None:
            raise TransactionFatal(
                f"a transactional call hung ({why})", cause=Cause.TRANSACTION_FATAL
            ) from why
        log.warning("transactional_producer_replaced", why=str(why))
        self._producer = self._new_producer()
        try:
            self.init()
        except TransactionsUnavailable as exc:
            raise TransactionFatal(
                f"a transactional call hung ({why}) and a new producer could not start ({exc})",
                cause=Cause.TRANSACTION_FATAL,
            ) from exc

    def _applied(self, offsets: list[TopicPartition]) -> bool:
        """Whether the broker holds these offsets as committed (a hung commit that went through)."""
        try:
            committed = self._consumer.committed(
                [TopicPartition(t.topic, t.partition) for t in offsets], self._timeout_s
            )
        except KafkaException as exc:  # unknown: rewinding is the safe side (a letter may repeat)
            log.warning("committed_offsets_unknown", error=_text(exc))
            return False
        wanted = {(t.topic, t.partition): t.offset for t in offsets}
        got = {(t.topic, t.partition): t.offset for t in committed if t.error is None}
        return all(got.get(key, -1) >= offset for key, offset in wanted.items())

    def _left(self, deadline: float) -> float:
        """A bounded timeout for one call (never -1, never 0: librdkafka reads 0 as 'do not wait')."""
        return max(0.1, deadline - self._clock())

    def close(self, timeout_s: float) -> int:
        """Nothing is ever left in an open transaction (each commit is whole): flush what remains."""
        remaining: int = self._producer.flush(timeout_s)
        return remaining


_STUB_REFUSED = "\0stub"  # the origin that marks "a stub was refused for good" in _refused


def _placed(letter: DeadLetter, place: tuple[int, int] | None) -> DeadLetter:
    """The letter with the place the broker gave it (the console fetches it from there)."""
    if place is None:
        return letter
    return replace(letter, dlq_partition=place[0], dlq_offset=place[1])


def _origin(letter: DeadLetter) -> Origin:
    m = letter.message
    return (m.topic, m.partition, m.offset)


def _error(exc: KafkaException) -> KafkaError | None:
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, KafkaError) else None


def _text(exc: BaseException) -> str:
    error = _error(exc) if isinstance(exc, KafkaException) else None
    return describe(error) if error is not None else str(exc)
