"""Replaying dead letters into the orders topic, for ``l0-dlq replay`` (internal/tools/dlq.py).

A replayed message must look to the service exactly like the one the producer first sent: same key
(so it lands on the same partition and keeps the per-order ordering), same value, same headers. Only
the ``dlq.*`` headers of the dead-lettering are removed (a fresh refusal adds new ones) and
``dlq.replay.count`` is set, so that a message that keeps coming back is recognisable and a loop of
replays can be noticed by whoever reads the dead-letter topic.

Where it goes: the topic the letter came from (``dlq.original.topic``); another only with
``--to-topic`` and ``--force``; the dead-letter topic never (a letter sent there is a letter again).
What is not sent: the same message twice in one run - a message refused again after a replay has
a second letter with the same key and value, so the topic is read twice, once to find each message's
highest replay count, once to send it once with that count + 1 -, and an order the database holds
with the same content by now (that check holds across runs).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from confluent_kafka import KafkaError, KafkaException, Producer

from internal.domain.errors import InvalidOrder, UndecodableMessage
from internal.domain.order import content_hash
from internal.domain.reasons import DeadLetterReason
from internal.domain.validation import ValidationPolicy, decode_order
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
TARGET_RULE = (
    "a letter goes back to the topic it came from (dlq.original.topic); another topic needs --to-topic "
    "and --force, and the dead-letter topic is never a target"
)
# Only the content hash is wanted: every rule that could refuse the order again is the service's.
_PARSE_ONLY = ValidationPolicy(
    max_message_bytes=REPLAY_MAX_MESSAGE_BYTES, cross_field_checks=False, plausibility_checks=False
)


class StoredCheck(Protocol):
    """The stored content hashes of those orders that are stored (internal/store/stored.py)."""

    def hashes_of(self, order_uids: Sequence[str]) -> dict[str, bytes]: ...


def replay_count(letter: Letter) -> int:
    """How often the letter's message was replayed before (0 for a first refusal)."""
    previous = letter.header(H_REPLAY_COUNT)
    try:
        return max(0, int(previous)) if previous is not None else 0
    except ValueError:  # not written by this tool; start counting afresh rather than refuse the letter
        return 0


def replay_headers(letter: Letter, count: int | None = None) -> list[tuple[str, bytes | None]]:
    """The letter's original headers without any ``dlq.*`` one, plus the replay count: ``count`` + 1,
    by default the letter's own count + 1."""
    count = replay_count(letter) if count is None else count
    return [*letter.original_headers(), (H_REPLAY_COUNT, str(count + 1).encode())]


def message_id(letter: Letter) -> bytes:
    """What makes two letters the same message to replay: its key and value (a replay sends both
    unchanged, so a message refused again has the same ones in its new letter)."""
    key, value = letter.key or b"", letter.value or b""
    return hashlib.sha256(len(key).to_bytes(8, "big") + key + value).digest()


def order_identity(letter: Letter) -> tuple[str, bytes] | None:
    """The letter's order uid and content hash; None when it holds no order (the service decides)."""
    try:
        order = decode_order(letter.value, _PARSE_ONLY, datetime.now(UTC))
    except (InvalidOrder, UndecodableMessage):
        return None
    return order.order_uid, content_hash(order)


@dataclass
class ReplayStats:
    dry_run: bool
    selected: int = 0
    stubs: int = 0
    conflicts: int = 0
    duplicates: int = 0
    stored: int = 0
    wrong_target: int = 0
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
            f"skipped stubs {self.stubs}, duplicates skipped {self.duplicates}, "
            f"already stored {self.stored}, other target {self.wrong_target}, {sent}"
        )


def open_producer(brokers: str, topic: str | None) -> Producer:
    """An idempotent ``acks=all`` producer, after checking that the broker answers and ``topic``
    exists (the one named by --to-topic; per-letter targets are checked when first met)."""
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
    if topic is not None:
        check_topic(producer, brokers, topic)
    return producer


def _describe(letter: Letter) -> str:
    uid = letter.order_uid
    return (
        f"dlq offset {letter.offset} ({letter.reason}, from p{letter.original_partition}"
        f"@{letter.original_offset}, order_uid {printable(uid) if uid is not None else '-'})"
    )


@dataclass(frozen=True, slots=True)
class Targets:
    """Where letters may go: ``to_topic`` (--to-topic) or each letter's origin; never ``dlq_topic``."""

    brokers: str
    dlq_topic: str
    to_topic: str | None = None

    def of(self, letter: Letter, force: bool) -> tuple[str | None, str]:
        """The letter's target, or None and why it has none."""
        origin = letter.original_topic
        target = self.to_topic or origin
        if target is None:
            return None, "the letter does not name its original topic (use --to-topic and --force)"
        if target == self.dlq_topic:
            return None, "its original topic is the dead-letter topic itself"
        if target != origin and not force:
            return None, f"it came from {printable(origin or '-')}, not {printable(target)} (use --force)"
        return target, ""


def replay(
    read: Callable[[], Iterable[Letter]],
    selection: Selection,
    producer: Producer,
    targets: Targets,
    stored: StoredCheck,
    *,
    force: bool,
    dry_run: bool,
    out: TextIO | None = None,
) -> ReplayStats:
    """Send every selected message once, to its target; conflicts only with ``force``; nothing on a
    dry run. ``read`` gives the letters from the start of the topic each time it is called."""
    out = out or sys.stdout  # looked up per call, so that a redirected stdout is honoured
    stats = ReplayStats(dry_run)
    highest, orders = _survey(read(), selection)
    # One look-up for all of them, now: a letter whose order is stored with the same content needs no
    # replay (this run or an earlier one sent it, or the service stored it meanwhile).
    stored_now = stored.hashes_of(sorted({uid for uid, _ in orders.values()}))
    first_of: dict[bytes, int] = {}
    checked: set[str] = set()
    for letter in read():
        if not selection.matches(letter):
            continue
        stats.selected += 1
        key = message_id(letter)
        skip = _skip(letter, key, stats, first_of, force)
        target, why = targets.of(letter, force) if skip is None else (None, "")
        if skip is None and target is None:
            stats.wrong_target += 1
            skip = f"not sent: {why}"
        order = orders.get(key)
        if skip is None and order is not None and stored_now.get(order[0]) == order[1]:
            stats.stored += 1
            skip = "its order is stored with this content already"
        if skip is not None or target is None:
            print(f"skip {_describe(letter)}: {skip}", file=out)
            continue
        if target not in checked and not dry_run:
            check_topic(producer, targets.brokers, target)
            checked.add(target)
        headers = replay_headers(letter, highest.get(key))
        count = (headers[-1][1] or b"").decode()
        verb = "would send" if dry_run else "send"
        print(f"{verb} {_describe(letter)} -> {printable(target)} with {H_REPLAY_COUNT}={count}", file=out)
        stats.queued += 1
        if not dry_run:
            _produce(producer, target, letter, headers, stats)
    if not dry_run:
        producer.flush(DELIVERY_TIMEOUT_MS / 1000 + 5)
    for skipped, rule in (
        (stats.stubs, STUB_RULE),
        (stats.conflicts, CONFLICT_RULE),
        (stats.wrong_target, TARGET_RULE),
    ):
        if skipped:
            print(rule, file=out)
    return stats


def _survey(
    letters: Iterable[Letter], selection: Selection
) -> tuple[dict[bytes, int], dict[bytes, tuple[str, bytes]]]:
    """The first pass over the selected letters: per message, its highest replay count and its
    order's (uid, content hash)."""
    highest: dict[bytes, int] = {}
    orders: dict[bytes, tuple[str, bytes]] = {}
    for letter in letters:
        if selection.matches(letter) and not letter.truncated:
            key = message_id(letter)
            highest[key] = max(highest.get(key, 0), replay_count(letter))
            if key not in orders and (identity := order_identity(letter)) is not None:
                orders[key] = identity
    return highest, orders


def _skip(
    letter: Letter, key: bytes, stats: ReplayStats, first_of: dict[bytes, int], force: bool
) -> str | None:
    """Why the letter is not sent, by the rules that need no lookup; None when they let it go."""
    if letter.truncated:  # --force does not help: the bytes to send are not here
        stats.stubs += 1
        return (
            f"a stub letter (the original value of {letter.original_size} bytes did not fit the "
            "dead-letter topic)"
        )
    if key in first_of:
        stats.duplicates += 1
        return f"repeats dlq offset {first_of[key]}"
    first_of[key] = letter.offset
    if letter.reason == DeadLetterReason.CONFLICT.value and not force:
        stats.conflicts += 1
        return "conflict (use --force to send it anyway)"
    return None


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
