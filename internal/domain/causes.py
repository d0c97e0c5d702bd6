"""Why something failed, as a value: the one vocabulary of failure causes.

An error that changes what the service does (retry and pause, stop consuming, end the process)
carries a ``Cause``: which component failed and how. Everything that names a failure to the outside
derives its words from the cause - readiness and liveness (internal/pkg/health.py), the ``cause``
field of the log events ``transient_error``, ``partitions_paused``, ``consumer_stopped`` and
``consumer_crashed`` - so rewording an exception's message never changes behaviour. The message
itself (a driver's text, naming hosts and users) only goes to the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Component(Enum):
    """The part that failed; its value is the word readiness shows for it."""

    DATABASE = "database"
    KAFKA = "kafka"
    DEAD_LETTER_TOPIC = "dead-letter topic"
    CONSUMER = "consumer"  # the service's own consumer: a guard tripped, or a bug
    HTTP = "http"  # the service's HTTP server


class Kind(Enum):
    UNAVAILABLE = "unavailable"  # passes with time: retry with backoff, partitions paused
    TIMEOUT = "timeout"  # passes with time, or with a smaller batch
    UNUSABLE = "unusable"  # a deployment or configuration problem: stop consuming
    GUARD = "guard"  # a deliberate stop by a guard of the service (the dead-letter storm guard)
    BUG = "bug"  # an unexpected exception or an impossible answer


STORM_WORDS = "too many dead-letters in a row (dlq.max_consecutive)"
DRIFT_WORDS = (
    "dead-letter drift: most recent messages were dead-lettered (consumer.drift_ratio); see /dlq, "
    "resume there or with l0-dlq resume"
)
SEE_LOG = "see the log"


class Cause(Enum):
    """A failure cause: ``component`` + ``kind``; ``value`` is the ``cause`` field of log events."""

    DATABASE_UNAVAILABLE = "database_unavailable"
    DATABASE_TIMEOUT = "database_timeout"
    DATABASE_UNUSABLE = "database_unusable"  # schema missing, no privilege, wrong password
    KAFKA_FATAL = "kafka_fatal"  # librdkafka reported a fatal error
    TRANSACTIONS_UNAVAILABLE = "transactions_unavailable"  # init_transactions failed at the start
    TRANSACTION_FATAL = "transaction_fatal"  # the dead-letter producer was fenced, or an abort hung
    DEAD_LETTER_UNACKNOWLEDGED = "dead_letter_unacknowledged"
    DEAD_LETTER_REFUSED = "dead_letter_refused"  # the topic refuses even a stub letter
    DEAD_LETTERING_BUG = "dead_lettering_bug"  # unexpected exceptions while dead-lettering
    DEAD_LETTER_STORM = "dead_letter_storm"
    DEAD_LETTER_DRIFT = "dead_letter_drift"  # the drift guard paused consumption (consumer/drift.py)
    STORE_ANSWER_MISMATCH = "store_answer_mismatch"  # the store answered a wrong number of results
    POLL_THREAD_CRASHED = "poll_thread_crashed"  # an exception escaped the poll loop
    WARMUP_CRASHED = "warmup_crashed"  # an exception escaped the cache warm-up
    HTTP_SERVER_FAILED = "http_server_failed"  # the HTTP server ended by itself (e.g. port in use)

    @property
    def component(self) -> Component:
        return _TRAITS[self][0]

    @property
    def kind(self) -> Kind:
        return _TRAITS[self][1]

    @property
    def words(self) -> str:
        """What /readyz says about this cause: the component, never an exception's text; a guard says
        which one; a bug points to the log."""
        if self is Cause.DEAD_LETTER_STORM:
            return STORM_WORDS
        if self is Cause.DEAD_LETTER_DRIFT:
            return DRIFT_WORDS
        if self.kind is Kind.BUG and self.component is Component.CONSUMER:
            return SEE_LOG
        return self.component.value


_TRAITS: dict[Cause, tuple[Component, Kind]] = {
    Cause.DATABASE_UNAVAILABLE: (Component.DATABASE, Kind.UNAVAILABLE),
    Cause.DATABASE_TIMEOUT: (Component.DATABASE, Kind.TIMEOUT),
    Cause.DATABASE_UNUSABLE: (Component.DATABASE, Kind.UNUSABLE),
    Cause.KAFKA_FATAL: (Component.KAFKA, Kind.UNUSABLE),
    Cause.TRANSACTIONS_UNAVAILABLE: (Component.KAFKA, Kind.UNUSABLE),
    Cause.TRANSACTION_FATAL: (Component.KAFKA, Kind.UNUSABLE),
    Cause.DEAD_LETTER_UNACKNOWLEDGED: (Component.DEAD_LETTER_TOPIC, Kind.UNAVAILABLE),
    Cause.DEAD_LETTER_REFUSED: (Component.DEAD_LETTER_TOPIC, Kind.UNUSABLE),
    Cause.DEAD_LETTERING_BUG: (Component.DEAD_LETTER_TOPIC, Kind.BUG),
    Cause.DEAD_LETTER_STORM: (Component.CONSUMER, Kind.GUARD),
    Cause.DEAD_LETTER_DRIFT: (Component.CONSUMER, Kind.GUARD),
    Cause.STORE_ANSWER_MISMATCH: (Component.CONSUMER, Kind.BUG),
    Cause.POLL_THREAD_CRASHED: (Component.CONSUMER, Kind.BUG),
    Cause.WARMUP_CRASHED: (Component.CONSUMER, Kind.BUG),
    Cause.HTTP_SERVER_FAILED: (Component.HTTP, Kind.UNUSABLE),
}


@dataclass(frozen=True, slots=True)
class Failure:
    """A recorded failure: its cause (what behaviour and words follow from) and its text (for the log
    only)."""

    cause: Cause
    detail: str
