"""The commit path: when and what to commit (``CommitPolicy``, ``Committer``), how it is sent
(``OffsetsAndLetters``: at-least-once here, the Kafka transaction in transactions.py), the letters
that wait for their commit (``LetterLedger``), and librdkafka's ``on_commit`` callback - confirmed
commits and failed ones, into the offset tracker.

Runs inside ``consume`` on the poll thread (like the rebalance callbacks), so it may touch the
tracker without a lock. A failed commit is logged and counted, and the tracker offers the position
again on the next loop iteration; "nothing to commit" (``_NO_OFFSET``) is not a failure.

One path, two strategies. Either way the Committer picks the positions (per partition the highest
contiguous finished offset, never past unfinished work) and the letters of exactly that work:

* ``AtLeastOnceCommit`` (``kafka.transactions: false``): the workers sent their letters and waited
  for the acknowledgement before their batch counted as finished, so the ledger is empty and only
  the offsets are committed. A crash between a letter's acknowledgement and the commit repeats it.
* ``TransactionalCommit`` (the default): the workers only compute letters; the Committer hands the
  letters of the committed work and the offsets to one Kafka transaction, so both become visible
  together or neither does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from confluent_kafka import KafkaError, TopicPartition

from internal.consumer.messages import DeadLetter
from internal.consumer.offsets import OffsetTracker
from internal.consumer.ports import DeadLetterSink, KafkaConsumer

log = structlog.get_logger(component="consumer")
COMMIT_EVERY_S = 0.1  # commits (or transactions) at most this often (CommitPolicy)
MAX_BLOCKING_SHARE = 0.1  # of the poll thread's busy time that commits which block it may take (CommitPolicy)
MAX_STRETCH_S = 1.0  # the longest a slow commit pushes the next one away (CommitPolicy)
Positions = dict[tuple[str, int], int]


class CommitConfirmations:
    def __init__(self, tracker: OffsetTracker, on_failure: Callable[[], None] = lambda: None) -> None:
        self._tracker = tracker
        self._on_failure = on_failure  # the composition root points it at consumer_commit_failures_total

    def __call__(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is not None and error.code() == KafkaError._NO_OFFSET:
            return
        for tp in partitions:
            failure = error or tp.error
            if tp.offset < 0:  # no position in this answer (nothing was committed for it)
                continue
            if failure is None:
                self._tracker.confirmed(tp.topic, tp.partition, tp.offset)
                continue
            retried = self._tracker.commit_failed(tp.topic, tp.partition, tp.offset)
            self._on_failure()
            log.warning(
                "commit_failed",
                topic=tp.topic,
                partition=tp.partition,
                offset=tp.offset,
                error=f"{failure.name()}: {failure.str()}",
                retried=retried,
            )


@dataclass(frozen=True, slots=True)
class CommitPolicy:
    """When finished work is committed.

    Commits go at most every ``every_s`` (``consumer.commit_interval_ms``): with batches that form by
    themselves, hundreds finish a second at everyday rates, and a commit request (or a transaction)
    each would cost the broker and librdkafka more than the writes. A later commit only means more
    redelivery after a crash, which the idempotent writer absorbs, and letters that become visible
    later. Revokes and stops commit synchronously at once (``Committer.commit_now``).

    A commit that blocks the poll thread - a Kafka transaction waits for the broker twice - holds
    back the hand-out and collection of batches while it lasts: a few ms on a quiet host, tens of ms
    under a backlog, when its threads wait for the GIL behind the workers; and each one costs the
    broker CPU. So while work is in flight, the next commit also waits until the last one took at
    most ``max_blocking_share`` of the time since it began, but never more than ``max_stretch_s``
    later (a transaction that failed after its whole timeout must not delay the next try by minutes,
    and the stuck-partition check must keep seeing commits move: ``watched`` keeps it under a
    quarter of ``consumer.stuck_after_s``); once everything polled is finished, nothing waits behind
    a commit and the cadence is ``every_s``."""

    every_s: float = COMMIT_EVERY_S
    max_blocking_share: float = MAX_BLOCKING_SHARE
    max_stretch_s: float = MAX_STRETCH_S

    def __post_init__(self) -> None:
        if not 0 < self.max_blocking_share <= 1:
            raise ValueError(f"max_blocking_share must be in (0, 1], got {self.max_blocking_share}")

    @classmethod
    def watched(cls, every_s: float, stuck_after_s: float) -> CommitPolicy:
        """The policy of a loop whose stuck check fires after ``stuck_after_s`` without a commit:
        the stretch stays under a quarter of that, so a moving partition never looks stuck."""
        return cls(every_s=every_s, max_stretch_s=min(MAX_STRETCH_S, stuck_after_s / 4))


# ---- the outcomes of one commit -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Committed:
    """A commit went out: ``answers`` per partition when it was synchronous (None: asynchronous,
    answered later by ``on_commit``); ``letters`` as they were sent (stubs marked ``truncated``)."""

    answers: list[TopicPartition] | None
    letters: Sequence[DeadLetter] = ()


class CommitFailed(Exception):
    """Nothing was committed and nothing became visible; the same positions are offered again."""


class TransactionAborted(Exception):
    """The transaction was aborted: its letters were never visible, its offsets not committed. The
    partitions it held must be rewound to their last committed offsets and processed again."""


class OffsetsAndLetters(Protocol):
    """How the Committer sends finished work: the offsets, with the letters of exactly that work."""

    transactional: bool  # letters are sent here (True) or by the workers before (False)

    def commit(
        self, offsets: list[TopicPartition], letters: Sequence[DeadLetter], *, synchronous: bool
    ) -> Committed:
        """Commit the offsets and make the letters visible. Raises ``CommitFailed`` (nothing done,
        try again), ``TransactionAborted`` (rewind) or ``FatalError`` (stop: e.g. fenced)."""
        ...


class AtLeastOnceCommit:
    """The offsets alone, as a consumer commit; letters, if any were left for the commit, are sent
    and acknowledged first (the workers send theirs before their batch finishes, so usually none)."""

    transactional = False

    def __init__(self, consumer: KafkaConsumer, letters: DeadLetterSink | None = None) -> None:
        self._consumer = consumer
        self._letters = letters

    def commit(
        self, offsets: list[TopicPartition], letters: Sequence[DeadLetter], *, synchronous: bool
    ) -> Committed:
        sent: Sequence[DeadLetter] = ()
        try:
            if letters:
                assert self._letters is not None, "letters at the commit need a sink"
                sent = self._letters.send(letters)
            if synchronous:
                return Committed(self._consumer.commit(offsets=offsets, asynchronous=False), sent)
            self._consumer.commit(offsets=offsets, asynchronous=True)  # answered by on_commit
            return Committed(None, sent)
        except Exception as exc:  # KafkaException, LettersPending: nothing lost, tried again
            raise CommitFailed(str(exc)) from exc


# ---- the letters waiting for their commit --------------------------------------------------------
class LetterLedger:
    """Letters of finished batches, per partition, until the commit that covers their offsets.

    A letter becomes visible with the commit of its offset and never earlier: ``due`` hands out only
    letters below the positions being committed, so a letter of work that is not yet contiguous (a
    batch still running before it) waits for a later commit. Poll thread only."""

    def __init__(self) -> None:
        self._letters: dict[tuple[str, int], list[DeadLetter]] = {}
        self._bytes = 0

    @property
    def bytes(self) -> int:
        """Bytes of the messages the waiting letters carry (counted in the in-flight byte budget)."""
        return self._bytes

    def __len__(self) -> int:
        return sum(len(v) for v in self._letters.values())

    def add(self, letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            m = letter.message
            self._letters.setdefault((m.topic, m.partition), []).append(letter)
            self._bytes += m.size

    def due(self, positions: Positions) -> list[DeadLetter]:
        """The letters whose offsets the positions commit, in offset order per partition."""
        out: list[DeadLetter] = []
        for tp, position in positions.items():
            waiting = self._letters.get(tp)
            if waiting:
                out.extend(sorted((x for x in waiting if x.message.offset < position), key=_offset))
        return out

    def settle(self, positions: Positions) -> None:
        """The positions were committed (with their letters): forget those letters."""
        for tp, position in positions.items():
            waiting = self._letters.get(tp)
            if not waiting:
                continue
            kept = [x for x in waiting if x.message.offset >= position]
            self._bytes -= sum(x.message.size for x in waiting if x.message.offset < position)
            self._letters[tp] = kept

    def drop(self, partitions: set[tuple[str, int]] | None = None) -> None:
        """Forget the letters of ``partitions`` (all when None): revoked, lost or rewound - their
        messages are delivered and processed again, and compute the letters again."""
        for tp in list(self._letters) if partitions is None else partitions:
            for letter in self._letters.pop(tp, []):
                self._bytes -= letter.message.size


def _offset(letter: DeadLetter) -> int:
    return letter.message.offset


# ---- the one place that commits ------------------------------------------------------------------
class Committer:
    """The one place that decides what is committed and sends it: per partition, only the highest
    contiguous finished offset (``OffsetTracker``), nothing past unfinished work, with the letters of
    exactly that work (``LetterLedger``), through one strategy (``OffsetsAndLetters``).

    Every method runs on the poll thread (it owns the consumer). Asynchronous commits do not block; a
    synchronous one (revoke, stop) and a transaction wait for the broker's answer, each call bounded.
    A failed commit is logged and counted, never raised: nothing is lost, the same positions are
    offered again. An aborted transaction is counted and handed to ``on_abort`` (the loop rewinds the
    partitions); a fatal error (a fenced producer) is raised."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        tracker: OffsetTracker,
        policy: CommitPolicy = CommitPolicy(),
        *,
        clock: Callable[[], float],
        strategy: OffsetsAndLetters | None = None,
        ledger: LetterLedger | None = None,
        on_failure: Callable[[], None] = lambda: None,
        on_committed: Callable[[Sequence[DeadLetter], float], None] = lambda _l, _s: None,
        on_abort: Callable[[set[tuple[str, int]]], None] = lambda _p: None,
    ) -> None:
        self._consumer = consumer
        self._tracker = tracker
        self._policy = policy
        self._clock = clock
        self._strategy: OffsetsAndLetters = strategy or AtLeastOnceCommit(consumer)
        self.ledger = ledger if ledger is not None else LetterLedger()
        self._on_failure = on_failure
        self._on_committed = on_committed  # letters made visible, and how long the commit took
        self._on_abort = on_abort
        self._next_idle = 0.0  # when the next commit is due when nothing is in flight...
        self._next = 0.0  # ... and while work is (never earlier)

    @property
    def transactional(self) -> bool:
        return self._strategy.transactional

    def now_and_then(self) -> None:
        """Commit when it is due (asynchronously unless transactional): ``every_s`` after the last
        one began, or later while work is in flight and that one - a transaction - blocked for long
        (``CommitPolicy``). An asynchronous commit does not block: its cadence is ``every_s``."""
        now = self._clock()
        if now < self._next_idle:  # the common turn: not due in any case, nothing counted
            return
        if now < self._next and self._tracker.in_flight():
            return  # stretched after a slow transaction, and work is still coming
        self._commit(synchronous=False, only=None)
        policy = self._policy
        self._next_idle = self._next = now + policy.every_s
        if self._strategy.transactional:
            took = self._clock() - now
            stretched = min(took / policy.max_blocking_share, policy.max_stretch_s)
            self._next = now + max(policy.every_s, stretched)

    def commit_now(self, only: set[tuple[str, int]] | None = None) -> None:
        """Commit synchronously (a revoke of ``only``, or the stop): blocks for the broker's answer."""
        self._commit(synchronous=True, only=only)

    def _skip_markers(self, only: set[tuple[str, int]] | None) -> None:
        """Where every polled message of a partition is finished, the consumer's position is the
        committable one: it is past transaction markers (control records, never handed to us), which
        would otherwise hold back the commit, show as lag and make a partition look stuck."""
        idle = self._tracker.idle(only)
        if not idle:
            return
        try:
            positions = self._consumer.position([TopicPartition(t, p) for t, p in idle])
        except Exception as exc:  # KafkaException: the contiguous position is still right, if short
            log.warning("position_failed", error=str(exc))
            return
        for tp in positions:
            if tp.error is None and tp.offset >= 0:
                self._tracker.skip_to(tp.topic, tp.partition, tp.offset)

    def _commit(self, *, synchronous: bool, only: set[tuple[str, int]] | None) -> None:
        self._skip_markers(only)
        positions = self._tracker.to_commit(only)
        if not positions:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        letters = self.ledger.due(positions)
        started = time.perf_counter()
        try:
            done = self._strategy.commit(offsets, letters, synchronous=synchronous)
        except CommitFailed as exc:  # nothing lost: the same positions (and letters) are tried again
            self._on_failure()
            log.warning("commit_failed", error=str(exc), synchronous=synchronous)
            return
        except TransactionAborted as exc:
            log.warning("transaction_aborted", error=str(exc), partitions=sorted(p for _, p in positions))
            self._on_abort(set(positions))
            return
        self.ledger.settle(positions)
        self._tracker.committed(positions)
        answers = done.answers
        if answers is not None:  # the answer is here: per partition, confirmed or refused
            for tp in answers:
                if tp.error is None:
                    self._tracker.confirmed(tp.topic, tp.partition, tp.offset)
                else:
                    self._tracker.commit_failed(tp.topic, tp.partition, tp.offset)
                    self._on_failure()
                    log.warning("commit_failed", topic=tp.topic, partition=tp.partition, error=str(tp.error))
        try:
            self._on_committed(done.letters, time.perf_counter() - started)
        except Exception:  # metrics and log lines must never hold back consumption
            log.exception("commit_report_failed")
