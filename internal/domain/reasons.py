"""Why a message was dead-lettered: the one vocabulary of the dead-letter reasons.

Every other spelling of a reason derives from this enum: the ``dlq.reason`` header the consumer
writes, the ``outcome``/``reason`` labels of the consumer's metrics, the ``--reason`` choices of
``l0-dlq`` and the reason table of docs/consumer.md (tests/unit/test_reasons.py ties the document to
it). A new reason is added here and nowhere else.
"""

from __future__ import annotations

from enum import Enum


class DeadLetterReason(Enum):
    UNDECODABLE = "undecodable"  # not one UTF-8 JSON document of acceptable size
    INVALID = "invalid"  # JSON that breaks one or more rules (all of them listed)
    CONFLICT = "conflict"  # the order_uid is stored already with other content (first write wins)
    DB_REJECTED = "db_rejected"  # PostgreSQL refused this record alone (constraint, data, program limit)
    PROCESSING_ERROR = "processing_error"  # an unexpected exception, still there after the bounded attempts

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(reason.value for reason in cls)
