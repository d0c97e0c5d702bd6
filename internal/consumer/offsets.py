"""Per-partition offset tracking: commit only the highest contiguous offset that is finished.

A message is *finished* when it is durably stored or its dead-letter was acknowledged. Batches finish
out of order across workers; the tracker holds back the commit position of a partition until every
earlier offset of that partition is finished, so a crash can only cause re-delivery, never loss.
Used by the poll thread only (no locking).
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
    committed: int | None = None


class OffsetTracker:
    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], _PartitionState] = {}
        self._generation = 0

    def assign(self, topic: str, partition: int) -> int:
        """Start a fresh state for a newly assigned partition; returns its generation."""
        self._generation += 1
        self._partitions[(topic, partition)] = _PartitionState(self._generation)
        return self._generation

    def drop(self, topic: str, partition: int) -> None:
        self._partitions.pop((topic, partition), None)

    def generation(self, topic: str, partition: int) -> int | None:
        state = self._partitions.get((topic, partition))
        return state.generation if state else None

    def track(self, topic: str, partition: int, offset: int) -> None:
        self._partitions[(topic, partition)].in_order.append(offset)

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

    def in_flight(self) -> int:
        return sum(len(s.in_order) for s in self._partitions.values())

    def to_commit(self, partitions: set[tuple[str, int]] | None = None) -> dict[tuple[str, int], int]:
        """Commit positions that moved since the last ``committed`` call (all or the given partitions)."""
        return {
            tp: s.committable
            for tp, s in self._partitions.items()
            if (partitions is None or tp in partitions)
            and s.committable is not None
            and s.committable != s.committed
        }

    def committed(self, positions: dict[tuple[str, int], int]) -> None:
        for tp, offset in positions.items():
            state = self._partitions.get(tp)
            if state is not None:
                state.committed = offset
