"""What happened to one message: the one outcome type, from the store's answer to the metrics.

An outcome is ``stored``, ``duplicate`` or dead-lettered with its reason; the dead-lettered members
take their values from ``DeadLetterReason`` (internal/domain/reasons.py, the one vocabulary of
reasons). The store answers with an outcome per record (``stored``, ``duplicate`` or ``conflict`` -
the one dead-letter reason only the store can tell), the batch processor adds the others, and an
outcome's value is the ``outcome`` label of consumer_messages_total and, for a dead letter, the
``dlq.reason`` header and the ``reason`` label of dlq_messages_total.
"""

from __future__ import annotations

from enum import Enum

from internal.domain.reasons import DeadLetterReason


class Outcome(Enum):
    """Every outcome lets the message's offset be committed."""

    STORED = "stored"  # new order, now durable
    DUPLICATE = "duplicate"  # same uid, same content: nothing to do
    UNDECODABLE = DeadLetterReason.UNDECODABLE.value
    INVALID = DeadLetterReason.INVALID.value
    CONFLICT = DeadLetterReason.CONFLICT.value  # same uid, other content: the stored one wins
    DB_REJECTED = DeadLetterReason.DB_REJECTED.value
    PROCESSING_ERROR = DeadLetterReason.PROCESSING_ERROR.value

    @property
    def dead_lettered(self) -> bool:
        return self not in (Outcome.STORED, Outcome.DUPLICATE)

    @property
    def reason(self) -> DeadLetterReason:
        """The dead-letter reason of a dead-lettered outcome (ValueError for stored/duplicate)."""
        return DeadLetterReason(self.value)

    @classmethod
    def dead_letter(cls, reason: DeadLetterReason) -> Outcome:
        """The outcome of a message dead-lettered with ``reason``."""
        return cls(reason.value)
