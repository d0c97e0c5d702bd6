"""Reading the dead-letter topic for the DLQ tool (internal/tools/dlq.py): letters, filters, display.

Reading must never disturb the service: the consumer gets a throwaway group, is only ever *assigned*
partitions (it never joins a group) and never commits. It reads from the beginning to the end the
topic had when the read started, so a tool run always terminates even while letters keep arriving.
Every byte shown comes from producers we do not control, so text is escaped before it reaches a
terminal (an order_uid holding an escape sequence must not repaint the operator's screen), cut to a
bound before it is printed, and parsed only by a parser with a depth limit: the tool exists for the
letters nobody could read, so no letter may stop it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from internal.consumer.letters import (
    H_ERROR,
    H_FAILED_AT,
    H_OFFSET,
    H_ORIGINAL_SHA256,
    H_ORIGINAL_SIZE,
    H_PARTITION,
    H_REASON,
    H_TOPIC,
    H_TRUNCATED,
    H_TRUNCATED_CAUSE,
)
from internal.domain.reasons import DeadLetterReason
from internal.pkg.kafka_offsets import partition_ends
from internal.tools.dlq_display import parse_json

REASONS = DeadLetterReason.values()
DLQ_PREFIX = "dlq."
CHECK_TIMEOUT_S = 5.0
# A read that makes no progress for this long is stuck (broker gone mid-read), not slow.
IDLE_TIMEOUT_S = 30.0

Headers = tuple[tuple[str, bytes | None], ...]
UNREADABLE_HEADERS = "(headers not readable)"


class ToolError(Exception):
    """A problem the operator must fix (bad argument, missing topic, unreachable broker): one line."""


@dataclass(frozen=True, slots=True)
class Letter:
    """One message of the dead-letter topic, with its dlq.* headers parsed for filtering and display."""

    offset: int  # in the dead-letter topic
    key: bytes | None
    value: bytes | None
    headers: Headers
    partition: int = 0  # of the dead-letter topic

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` as text: the service appends its dlq.* headers last."""
        for k, v in reversed(self.headers):
            if k == name:
                return None if v is None else v.decode("utf-8", "replace")
        return None

    def _int_header(self, name: str) -> int | None:
        text = self.header(name)
        try:
            return int(text) if text is not None else None
        except ValueError:
            return None

    @property
    def reason(self) -> str:
        return self.header(H_REASON) or "-"

    @property
    def error(self) -> str:
        return self.header(H_ERROR) or ""

    @property
    def failed_at(self) -> str:
        return self.header(H_FAILED_AT) or "-"

    @property
    def original_topic(self) -> str | None:
        return self.header(H_TOPIC)

    @property
    def original_partition(self) -> int | None:
        return self._int_header(H_PARTITION)

    @property
    def original_offset(self) -> int | None:
        return self._int_header(H_OFFSET)

    @property
    def origin(self) -> tuple[str | None, int | None, int | None]:
        """Where the refused message came from: the identity that de-duplicates repeated letters."""
        return (self.original_topic, self.original_partition, self.original_offset)

    @property
    def truncated(self) -> bool:
        """A stub: the full letter did not fit the dead-letter topic; the value is only its first bytes."""
        return self.header(H_TRUNCATED) == "true"

    @property
    def original_size(self) -> int | None:
        return self._int_header(H_ORIGINAL_SIZE)

    @property
    def original_sha256(self) -> str | None:
        return self.header(H_ORIGINAL_SHA256)

    @property
    def truncated_cause(self) -> str:
        return self.header(H_TRUNCATED_CAUSE) or ""

    @property
    def order_uid(self) -> str | None:
        """The value's order_uid when the value is a JSON object with a string one."""
        doc = parse_json(self.value)
        uid = doc.get("order_uid") if isinstance(doc, dict) else None
        return uid if isinstance(uid, str) else None

    def original_headers(self) -> list[tuple[str, bytes | None]]:
        """The headers the message had before any dead-lettering: everything outside ``dlq.*``."""
        return [(k, v) for k, v in self.headers if not k.startswith(DLQ_PREFIX)]


@dataclass(frozen=True, slots=True)
class Selection:
    """The filters shared by ``list`` and ``replay``; offsets and partition are the ORIGINAL ones."""

    reasons: frozenset[str] = frozenset()
    from_offset: int | None = None
    to_offset: int | None = None
    partition: int | None = None
    uid: str | None = None

    def matches(self, letter: Letter) -> bool:
        offset = letter.original_offset
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.partition is not None and letter.original_partition != self.partition:
            return False
        if self.from_offset is not None and (offset is None or offset < self.from_offset):
            return False
        if self.to_offset is not None and (offset is None or offset > self.to_offset):
            return False
        return self.uid is None or letter.order_uid == self.uid


def quiet(_err: KafkaError) -> None:
    """librdkafka reports a down broker many times a second; the tool says it once, as its own error."""


def _consumer(brokers: str) -> Consumer:
    try:
        return Consumer(
            {
                "bootstrap.servers": brokers,
                "group.id": f"l0-dlq-tool-{uuid.uuid4().hex}",  # throwaway: never joined, never committed
                "client.id": "l0-dlq-tool",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                # Only letters of committed transactions (the service writes letters in transactions,
                # docs/dlq.md#exactly-once): an aborted letter was never a fact. The default of
                # librdkafka, explicit here because listing, showing and replaying depend on it.
                "isolation.level": "read_committed",
                # The end of a partition is where reading stops: with transactions the last offsets
                # are markers, never delivered, so the last letter's offset + 1 may never be reached.
                "enable.partition.eof": True,
                "log_level": 0,
                "error_cb": quiet,
            }
        )
    except KafkaException as exc:
        raise ToolError(f"bad Kafka settings: {exc.args[0].str()}") from None


def check_topic(client: Consumer | Producer, brokers: str, topic: str) -> int:
    """The partition count of ``topic``; ToolError when the broker is unreachable or the topic missing.

    Uses the client's own metadata request (not an AdminClient) so that the check stays quiet.
    """
    try:
        found = client.list_topics(topic=topic, timeout=CHECK_TIMEOUT_S).topics.get(topic)
    except KafkaException as exc:
        raise ToolError(f"cannot reach Kafka at {brokers}: {exc.args[0].str()}") from None
    if found is None or found.error is not None:
        raise ToolError(f'topic "{topic}" does not exist on {brokers}')
    return len(found.partitions)


def read_message(topic: str, message: Message) -> Letter:
    error = message.error()
    if error is not None:
        raise ToolError(f"reading {topic}: {error.str()}")
    try:
        raw = message.headers() or []
    except (UnicodeDecodeError, ValueError) as exc:
        # The client decodes header names as UTF-8 and raises on any other name (another client wrote
        # it): the letter is still listed, with the failure as its only header.
        raw = [(UNREADABLE_HEADERS, str(exc).encode())]
    items = raw.items() if isinstance(raw, dict) else raw
    headers = tuple((k, v.encode() if isinstance(v, str) else v) for k, v in items)
    return Letter(message.offset() or 0, message.key(), message.value(), headers, message.partition() or 0)


def open_letters(brokers: str, topic: str) -> Iterator[Letter]:
    """Every letter from the beginning of ``topic`` to its end as of now, in offset order per partition.

    The broker and the topic are checked here, before the first letter is asked for, so that a caller
    can fail with one line before it prints anything.
    """
    consumer = _consumer(brokers)
    try:
        check_topic(consumer, brokers, topic)
        ends = partition_ends(brokers, topic, timeout_s=CHECK_TIMEOUT_S)
        # Letters below the low watermark were deleted by retention: they will never arrive.
        starts = {
            p: max(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=CHECK_TIMEOUT_S)[0], 0)
            for p in ends
        }
    except KafkaException as exc:
        consumer.close()
        raise ToolError(f"reading {topic} on {brokers}: {exc.args[0].str()}") from None
    except BaseException:
        consumer.close()
        raise
    return _read(consumer, topic, starts, ends)


def _read(
    consumer: Consumer, topic: str, positions: dict[int, int], ends: dict[int, int]
) -> Iterator[Letter]:
    pending = {p for p, end in ends.items() if positions[p] < end}
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        idle_since = time.monotonic()
        while pending:
            batch = consumer.consume(500, 0.5)
            for message in batch:
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition() or 0)  # past its last committed letter
                    continue
                letter, p = read_message(topic, message), message.partition() or 0
                if p not in pending or letter.offset >= ends[p]:
                    continue  # newer than the end this run reads to
                positions[p] = letter.offset + 1
                yield letter
                if positions[p] >= ends[p]:
                    pending.discard(p)
            if batch:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > IDLE_TIMEOUT_S:
                stuck = ", ".join(f"partition {p} at {positions[p]} of {ends[p]}" for p in sorted(pending))
                raise ToolError(f"reading {topic} made no progress for {IDLE_TIMEOUT_S:.0f}s ({stuck})")
    except KafkaException as exc:
        raise ToolError(f"reading {topic}: {exc.args[0].str()}") from None
    finally:
        consumer.close()


def read_letter(brokers: str, topic: str, offset: int, partition: int = 0) -> Letter:
    """The letter at ``offset``; ToolError naming the readable range when there is none."""
    consumer = _consumer(brokers)
    try:
        if partition >= check_topic(consumer, brokers, topic):
            raise ToolError(f'topic "{topic}" has no partition {partition}')
        tp = TopicPartition(topic, partition)
        low, high = consumer.get_watermark_offsets(tp, timeout=CHECK_TIMEOUT_S)
        if not low <= offset < high:
            held = f"offsets {low}..{high - 1}" if high > low else "no letters"
            raise ToolError(f"no letter at offset {offset} of {topic} (it holds {held})")
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + IDLE_TIMEOUT_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                break  # nothing committed at that offset (an aborted letter, or a marker)
            letter = read_message(topic, message)
            if letter.offset == offset:
                return letter
            if letter.offset > offset:  # the offset was a gap (compaction, transaction marker)
                break
        raise ToolError(f"no letter at offset {offset} of {topic}")
    except KafkaException as exc:
        raise ToolError(f"reading {topic} on {brokers}: {exc.args[0].str()}") from None
    finally:
        consumer.close()


def read_letters_at(brokers: str, topic: str, places: Sequence[tuple[int, int]]) -> list[Letter]:
    """The letters at these (partition, offset) places, in that order; a place that holds no letter
    (deleted by retention, a gap) is left out. One consumer for all of them: a place right after the
    previous one is read on, any other is sought to. Memory: the letters asked for, no more."""
    if not places:
        return []
    consumer = _consumer(brokers)
    found: dict[tuple[int, int], Letter] = {}
    try:
        partitions = check_topic(consumer, brokers, topic)
        position: tuple[int, int] | None = None  # (partition, next offset) the consumer reads from
        for partition, offset in sorted(set(places)):
            if partition >= partitions:
                continue
            if position != (partition, offset):
                consumer.assign([TopicPartition(topic, partition, offset)])
            position = None
            deadline = time.monotonic() + IDLE_TIMEOUT_S
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=CHECK_TIMEOUT_S
                    )
                    if not low <= offset < high:
                        break  # no such letter (any more)
                    continue
                letter = read_message(topic, message)
                if letter.offset >= offset:
                    if letter.offset == offset:
                        found[(partition, offset)] = letter
                    position = (partition, letter.offset + 1)
                    break
    except KafkaException as exc:
        raise ToolError(f"reading {topic} on {brokers}: {exc.args[0].str()}") from None
    finally:
        consumer.close()
    return [found[p] for p in places if p in found]
