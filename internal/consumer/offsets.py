"""Per-partition offset tracking: commit only the highest contiguous offset that is finished.

A message is *finished* when it is durably stored or its dead-letter was acknowledged. Batches finish
out of order across workers; the tracker holds back the commit position of a partition until every
earlier offset of that partition is finished, so a crash can only cause re-delivery, never loss.

Commits are asynchronous, so a position goes through three states: *committable* (finished),
*requested* (a commit was sent) and *confirmed* (the broker's answer came back through ``on_commit``).
A failed commit puts the partition back to its confirmed position, so the same position is offered
again by ``to_commit`` - retried from the tracker's state, never lost. Used by the poll thread only
(``on_commit`` runs inside ``consume``, on that thread too; no locking).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class _PartitionState:
    generation: int
    in_order: deque[int] = field(default_factory=deque)  # offsets as polled (increasing)
    finished: set[int] = field(default_factory=set)
    committable: int | None = None  # next offset to commit (last finished contiguous + 1)
    committed: int | None = None  # the position last sent in a commit
    confirmed: int | None = None  # the position the broker last confirmed
    first: int | None = None  # the first offset polled in this assignment
    # False after a rewind until a message of the new generation is polled: until then the consumer's
    # position may still be the one before the seek, and must not be taken as committable.
    settled: bool = True


class OffsetTracker:
    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], _PartitionState] = {}
        self._generation = 0

    def assign(self, topic: str, partition: int) -> int:
        """Start a fresh state for a newly assigned partition; returns its generation."""
        self._generation += 1
        self._partitions[(topic, partition)] = _PartitionState(self._generation)
        return self._generation

    def rewind(self, topic: str, partition: int) -> int | None:
        """Forget the partition's in-flight work (a new generation: results of the old one are
        ignored) and return where it is to be read again from - its last confirmed commit, else the
        first offset polled; None when nothing was polled (nothing to read again)."""
        state = self._partitions.get((topic, partition))
        if state is None or state.first is None:
            return None
        position = state.confirmed if state.confirmed is not None else state.first
        fresh = _PartitionState(self.assign(topic, partition), settled=False)
        fresh.confirmed = fresh.committed = state.confirmed
        self._partitions[(topic, partition)] = fresh
        return position

    def partitions(self) -> set[tuple[str, int]]:
        return set(self._partitions)

    def idle(self, partitions: set[tuple[str, int]] | None = None) -> list[tuple[str, int]]:
        """Partitions whose every polled message is finished (``skip_to`` may move them)."""
        return [
            tp
            for tp, s in self._partitions.items()
            if (partitions is None or tp in partitions) and not s.in_order and s.settled
        ]

    def skip_to(self, topic: str, partition: int, position: int) -> None:
        """The consumer's position of an idle partition: past every message polled and past the
        transaction markers after them, so it is committable when it is ahead."""
        state = self._partitions.get((topic, partition))
        if state is None or state.in_order or not state.settled:
            return
        known = state.committable if state.committable is not None else state.confirmed
        if known is None or position > known:
            state.committable = position

    def drop(self, topic: str, partition: int) -> None:
        self._partitions.pop((topic, partition), None)

    def generation(self, topic: str, partition: int) -> int | None:
        state = self._partitions.get((topic, partition))
        return state.generation if state else None

    def track(self, topic: str, partition: int, offset: int) -> None:
        state = self._partitions[(topic, partition)]
        if state.first is None:
            state.first = offset
        state.settled = True
        state.in_order.append(offset)

    def finish(self, topic: str, partition: int, offset: int, generation: int) -> bool:
        """Mark one offset finished; False (and ignored) if it belongs to an older assignment."""
        state = self._partitions.get((topic, partition))
        if state is None or state.generation != generation:
            return False
        state.finished.add(offset)
        while state.in_order and state.in_order[0] in state.finished:
            done = state.in_order.popleft()
            state.finished.discard(done)
            state.committable = done + 1
        return True

    def in_flight(self, topic: str | None = None, partition: int | None = None) -> int:
        """Offsets polled and not yet committable: of all partitions, or of the one given."""
        if topic is not None and partition is not None:
            state = self._partitions.get((topic, partition))
            return len(state.in_order) if state is not None else 0
        return sum(len(s.in_order) for s in self._partitions.values())

    def to_commit(self, partitions: set[tuple[str, int]] | None = None) -> dict[tuple[str, int], int]:
        """Commit positions that moved since the last ``committed`` call (all or the given partitions)."""
        return {
            tp: s.committable
            for tp, s in self._partitions.items()
            if (partitions is None or tp in partitions) and _moved(s) and s.committable is not None
        }

    def has_to_commit(self) -> bool:
        """Whether ``to_commit()`` would offer anything (the poll loop asks every turn: no dict)."""
        return any(_moved(s) for s in self._partitions.values())

    def committed(self, positions: dict[tuple[str, int], int]) -> None:
        """The positions were sent in a commit (not yet confirmed)."""
        for tp, offset in positions.items():
            state = self._partitions.get(tp)
            if state is not None:
                state.committed = offset

    def confirmed(self, topic: str, partition: int, offset: int) -> None:
        """The broker confirmed a commit of ``offset`` (a later answer never moves it back)."""
        state = self._partitions.get((topic, partition))
        if state is not None and (state.confirmed is None or offset > state.confirmed):
            state.confirmed = offset

    def commit_failed(self, topic: str, partition: int, offset: int) -> bool:
        """A commit of ``offset`` failed: unless a later one was sent since, the partition is back to
        its confirmed position, so ``to_commit`` offers the position again. True when it will be."""
        state = self._partitions.get((topic, partition))
        if state is None or state.committed != offset:
            return False
        state.committed = state.confirmed
        return state.committable is not None and state.committable != state.committed

    def confirmed_at(self, topic: str, partition: int) -> int | None:
        """The last position the broker confirmed for the partition (None: none yet, or not ours)."""
        state = self._partitions.get((topic, partition))
        return state.confirmed if state is not None else None

    def progress(self, topic: str, partition: int) -> int | None:
        """Where the partition's committed position stands as far as this assignment knows: the last
        confirmed commit, else the first offset polled (the group's position when it was assigned)."""
        state = self._partitions.get((topic, partition))
        if state is None:
            return None
        return state.confirmed if state.confirmed is not None else state.first


def _moved(state: _PartitionState) -> bool:
    return state.committable is not None and state.committable != state.committed
