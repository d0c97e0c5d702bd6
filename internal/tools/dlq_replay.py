"""Replaying dead letters into the orders topic, for ``l0-dlq replay`` (internal/tools/dlq.py).

A replayed message must look to the service exactly like the one the producer first sent: same key
(so it lands on the same partition and keeps the per-order ordering), same value, same headers. Only
the ``dlq.*`` headers of the dead-lettering are removed (a fresh refusal adds new ones) and
``dlq.replay.count`` is set, so that a message that keeps coming back is recognisable and a loop of
replays can be noticed by whoever reads the dead-letter topic.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from confluent_kafka import KafkaError, KafkaException, Producer

from internal.domain.reasons import DeadLetterReason
from internal.pkg.kafka_produce import ProduceError, failure_text, produce
from internal.tools.dlq_display import printable
from internal.tools.dlq_letters import Letter, Selection, ToolError, check_topic, quiet

H_REPLAY_COUNT = "dlq.replay.count"
REPLAY_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DELIVERY_TIMEOUT_MS = 30_000
STUB_RULE = (
    "stub letters are never replayed: they hold only the first bytes of a message that did not fit the "
    "dead-letter topic; the original is still in the orders topic at the partition and offset shown, "
    "for as long as its retention keeps it (docs/dlq.md#stub-letters)"
)
CONFLICT_RULE = (
    "conflict letters are not replayed without --force: the stored order wins (first write wins), so "
    "replaying a conflict only dead-letters it again unless the stored order was deleted"
)


def replay_headers(letter: Letter) -> list[tuple[str, bytes | None]]:
    """The letter's original headers without any ``dlq.*`` one, plus the incremented replay count."""
    previous = letter.header(H_REPLAY_COUNT)
    try:
        count = int(previous) if previous is not None else 0
    except ValueError:  # not written by this tool; start counting afresh rather than refuse the letter
        count = 0
    return [*letter.original_headers(), (H_REPLAY_COUNT, str(count + 1).encode())]


@dataclass
class ReplayStats:
    dry_run: bool
    selected: int = 0
    stubs: int = 0
    conflicts: int = 0
    duplicates: int = 0
    queued: int = 0
    delivered: int = 0
    failures: list[str] = field(default_factory=list)

    def on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failures.append(failure_text(err))

    @property
    def failed(self) -> int:
        # Whatever is still unconfirmed after the final flush will not be confirmed: it counts as failed.
        return 0 if self.dry_run else self.queued - self.delivered

    def summary(self) -> str:
        sent = f"would send {self.queued}" if self.dry_run else f"sent {self.delivered}, failed {self.failed}"
        return (
            f"replay: selected {self.selected}, skipped conflicts {self.conflicts}, "
            f"skipped stubs {self.stubs}, duplicates skipped {self.duplicates}, {sent}"
        )


def open_producer(brokers: str, topic: str) -> Producer:
    """An idempotent ``acks=all`` producer, after checking that the broker answers and ``topic`` exists."""
    try:
        producer = Producer(
            {
                "bootstrap.servers": brokers,
                "client.id": "l0-dlq-replay",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": DELIVERY_TIMEOUT_MS,
                # A letter holds a message the orders topic once took: let the broker be the judge of
                # its size (librdkafka's own default, 1,000,000 bytes, is below Kafka's 1 MiB).
                "message.max.bytes": REPLAY_MAX_MESSAGE_BYTES,
                "log_level": 0,
                "error_cb": quiet,
            }
        )
    except KafkaException as exc:
        raise ToolError(f"bad Kafka settings: {exc.args[0].str()}") from None
    check_topic(producer, brokers, topic)
    return producer


def _describe(letter: Letter) -> str:
    uid = letter.order_uid
    return (
        f"dlq offset {letter.offset} ({letter.reason}, from p{letter.original_partition}"
        f"@{letter.original_offset}, order_uid {printable(uid) if uid is not None else '-'})"
    )


def replay(
    letters: Iterable[Letter],
    selection: Selection,
    producer: Producer,
    topic: str,
    *,
    force: bool,
    dry_run: bool,
    out: TextIO | None = None,
) -> ReplayStats:
    """Send every selected letter once to ``topic``; conflicts only with ``force``; nothing on a dry run."""
    out = out or sys.stdout  # looked up per call, so that a redirected stdout is honoured
    stats = ReplayStats(dry_run)
    first_of: dict[tuple[str | None, int | None, int | None], int] = {}
    for letter in letters:
        if not selection.matches(letter):
            continue
        stats.selected += 1
        origin = letter.origin
        if None not in origin:  # a letter that does not say where it came from cannot be matched
            if origin in first_of:
                stats.duplicates += 1
                print(f"skip {_describe(letter)}: repeats dlq offset {first_of[origin]}", file=out)
                continue
            first_of[origin] = letter.offset
        if letter.truncated:  # --force does not help: the bytes to send are not here
            stats.stubs += 1
            print(
                f"skip {_describe(letter)}: a stub letter (the original value of {letter.original_size} "
                "bytes did not fit the dead-letter topic)",
                file=out,
            )
            continue
        if letter.reason == DeadLetterReason.CONFLICT.value and not force:
            stats.conflicts += 1
            print(f"skip {_describe(letter)}: conflict (use --force to send it anyway)", file=out)
            continue
        headers = replay_headers(letter)
        count = (headers[-1][1] or b"").decode()
        verb = "would send" if dry_run else "send"
        print(f"{verb} {_describe(letter)} -> {topic} with {H_REPLAY_COUNT}={count}", file=out)
        stats.queued += 1
        if not dry_run:
            _produce(producer, topic, letter, headers, stats)
    if not dry_run:
        producer.flush(DELIVERY_TIMEOUT_MS / 1000 + 5)
    if stats.stubs:
        print(STUB_RULE, file=out)
    if stats.conflicts:
        print(CONFLICT_RULE, file=out)
    return stats


def _produce(
    producer: Producer,
    topic: str,
    letter: Letter,
    headers: list[tuple[str, bytes | None]],
    stats: ReplayStats,
) -> None:
    try:
        produce(
            producer,
            topic,
            value=letter.value,
            key=letter.key,
            headers=list(headers),
            on_delivery=stats.on_delivery,
        )
    except ProduceError as exc:  # refused before queuing, e.g. larger than the topic allows
        stats.failures.append(failure_text(exc.error))
    producer.poll(0)
