"""The dead-letter storm guard: stop consuming after too many dead letters in a row.

A bad deploy (a validator bug, a producer sending a new format) would otherwise dead-letter the whole
topic at full speed. The guard counts consecutive dead-lettered outcomes across batches, in the order
the poll thread finishes them; any stored or duplicate message resets the count. It acts per batch:
the batch that crosses the limit is finished (its letters are acknowledged, its offsets committed),
nothing after it is touched.
"""

from __future__ import annotations

from collections.abc import Iterable

from internal.domain.causes import Cause
from internal.domain.errors import FatalError
from internal.domain.outcomes import Outcome


class StormGuard:
    def __init__(self, limit: int) -> None:
        """``limit`` consecutive dead letters are allowed; 0 turns the guard off."""
        self._limit = limit
        self._streak = 0

    def observe(self, outcomes: Iterable[Outcome]) -> None:
        """Count a finished batch's outcomes; raises ``FatalError`` once the streak exceeds the limit."""
        for outcome in outcomes:
            self._streak = self._streak + 1 if outcome.dead_lettered else 0
        if self._limit and self._streak > self._limit:
            raise FatalError(
                f"{self._streak} dead-letters in a row (dlq.max_consecutive={self._limit}): "
                "consumption stopped to protect the topic; see docs/runbook.md#dead-letter-storm",
                cause=Cause.DEAD_LETTER_STORM,
            )
