"""What a dead letter looks like on the wire: its headers, its size budget, and the stub form.

A *full* letter is the refused message unchanged - key, value and headers byte for byte, so that a
replay sends exactly what the producer sent - plus the ``dlq.*`` headers that say why and where from.

Letters always fit: the dead-letter producer's ``message.max.bytes`` and the dead-letter topic's
``max.message.bytes`` are sized from ``consumer.max_message_bytes`` plus a bounded budget for keys
and headers (``letter_max_bytes``). When the broker still refuses a full letter for good (a message
larger than the consumer's limit, a topic configured smaller, an invalid record), a *stub* goes
instead: the original key and headers (bounded), the same ``dlq.*`` headers, the first
``STUB_VALUE_BYTES`` of the value, the value's size and SHA-256, and ``dlq.truncated: true``. A
stub is never replayed (internal/tools/dlq_replay.py): the original is still in the orders topic at
the offset the stub names, for as long as that topic's retention keeps it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from internal.consumer.messages import DeadLetter

Headers = list[tuple[str, str | bytes | None]]

H_REASON = "dlq.reason"
H_ERROR = "dlq.error"
H_TOPIC = "dlq.original.topic"
H_PARTITION = "dlq.original.partition"
H_OFFSET = "dlq.original.offset"
H_TIMESTAMP = "dlq.original.timestamp"
H_GROUP = "dlq.consumer.group"
H_FAILED_AT = "dlq.failed.at"
H_ATTEMPTS = "dlq.attempts"
H_VERSION = "dlq.service.version"
DLQ_HEADERS = (
    H_REASON,
    H_ERROR,
    H_TOPIC,
    H_PARTITION,
    H_OFFSET,
    H_TIMESTAMP,
    H_GROUP,
    H_FAILED_AT,
    H_ATTEMPTS,
    H_VERSION,
)
# Only on stubs:
H_TRUNCATED = "dlq.truncated"  # "true"
H_TRUNCATED_CAUSE = "dlq.truncated.cause"  # why the full letter was refused (librdkafka's error)
H_ORIGINAL_SIZE = "dlq.original.size"  # bytes of the original value
H_ORIGINAL_SHA256 = "dlq.original.sha256"  # hex SHA-256 of the original value
H_HEADERS_DROPPED = "dlq.truncated.headers.dropped"  # original headers left out of the stub, if any

# The room a letter needs besides the original value and the error header: the original key and
# headers, and the other dlq.* headers (about 400 bytes). Keys and headers larger than this still
# reach the dead-letter topic, as a stub.
HEADER_BUDGET = 64 * 1024
# A record batch's own framing, on top of its one record, when the topic's limit is checked.
BATCH_OVERHEAD = 1024
STUB_VALUE_BYTES = 1024
STUB_KEY_BYTES = 1024
STUB_HEADER_BYTES = 16 * 1024
STUB_HEADER_COUNT = 64  # a header costs its framing even when empty: the count is bounded too
HEADER_FRAMING = 16  # bytes a header costs on the wire besides its name and value, at most
LETTER_FRAMING = 1024  # a record's own framing and the dlq.* headers but the error, generously


def letter_max_bytes(max_message_bytes: int, max_error_bytes: int) -> int:
    """The largest full letter: the dead-letter producer's ``message.max.bytes``."""
    return max_message_bytes + max_error_bytes + HEADER_BUDGET


def topic_max_message_bytes(max_message_bytes: int, max_error_bytes: int) -> int:
    """The ``max.message.bytes`` the dead-letter topic needs so that every full letter fits."""
    return letter_max_bytes(max_message_bytes, max_error_bytes) + BATCH_OVERHEAD


def dlq_headers(letter: DeadLetter, group: str, version: str, max_error_bytes: int) -> Headers:
    """The ``dlq.*`` headers of a letter (without the original ones)."""
    m = letter.message
    error = letter.error.encode("utf-8", "replace")
    if len(error) > max_error_bytes:
        error = error[: max_error_bytes - 3] + b"..."
    return [
        (H_REASON, letter.reason.value.encode()),
        (H_ERROR, error),
        (H_TOPIC, m.topic.encode()),
        (H_PARTITION, str(m.partition).encode()),
        (H_OFFSET, str(m.offset).encode()),
        (H_TIMESTAMP, str(m.timestamp_ms if m.timestamp_ms is not None else -1).encode()),
        (H_GROUP, group.encode()),
        (H_FAILED_AT, datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()),
        (H_ATTEMPTS, str(letter.attempts).encode()),
        (H_VERSION, version.encode()),
    ]


def letter_headers(letter: DeadLetter, group: str, version: str, max_error_bytes: int) -> Headers:
    """A full letter's headers: the original ones unchanged, then the dlq.* ones."""
    return [*letter.message.headers, *dlq_headers(letter, group, version, max_error_bytes)]


def stub_headers(letter: DeadLetter, group: str, version: str, max_error_bytes: int) -> Headers:
    """A stub's headers: the original ones while they fit STUB_HEADER_BYTES, the dlq.* ones, and what
    says it is a stub of which value."""
    kept: Headers = []
    room = STUB_HEADER_BYTES
    for name, value in letter.message.headers:
        cost = len(name.encode("utf-8", "replace")) + len(value or b"") + HEADER_FRAMING
        if cost > room or len(kept) >= STUB_HEADER_COUNT:
            break
        kept.append((name, value))
        room -= cost
    dropped = len(letter.message.headers) - len(kept)
    value = letter.message.value or b""
    stub: Headers = [
        (H_TRUNCATED, b"true"),
        (H_TRUNCATED_CAUSE, (letter.truncated or "").encode("utf-8", "replace")[:512]),
        (H_ORIGINAL_SIZE, str(len(value)).encode()),
        (H_ORIGINAL_SHA256, hashlib.sha256(value).hexdigest().encode()),
    ]
    if dropped:
        stub.append((H_HEADERS_DROPPED, str(dropped).encode()))
    return [*kept, *dlq_headers(letter, group, version, max_error_bytes), *stub]


def stub_key(letter: DeadLetter) -> bytes | None:
    key = letter.message.key
    return key[:STUB_KEY_BYTES] if key is not None else None


def stub_value(letter: DeadLetter) -> bytes | None:
    value = letter.message.value
    return value[:STUB_VALUE_BYTES] if value is not None else None


def wire_form(
    letter: DeadLetter, group: str, version: str, max_error_bytes: int
) -> tuple[bytes | None, bytes | None, Headers]:
    """What is produced for a letter - value, key, headers: the full letter, or its stub when
    ``truncated`` is set (both producers of letters, at-least-once and transactional, send this)."""
    if letter.truncated is None:
        return (
            letter.message.value,
            letter.message.key,
            letter_headers(letter, group, version, max_error_bytes),
        )
    return stub_value(letter), stub_key(letter), stub_headers(letter, group, version, max_error_bytes)
