"""The DLQ tool's pure parts: header parsing, filters, escaping and the headers a replay sends."""

from __future__ import annotations

from typing import cast

import pytest
from confluent_kafka import Message

from internal.tools.dlq_display import printable, show_bytes
from internal.tools.dlq_letters import UNREADABLE_HEADERS, Letter, Selection, read_message
from internal.tools.dlq_replay import replay_headers


def letter(headers: list[tuple[str, bytes | None]], value: bytes | None = b"{}", offset: int = 0) -> Letter:
    return Letter(offset, None, value, tuple(headers))


def test_the_last_header_of_a_name_wins_and_bad_numbers_read_as_unknown() -> None:
    one = letter([("dlq.reason", b"invalid"), ("dlq.reason", b"conflict"), ("dlq.original.offset", b"x")])
    assert one.reason == "conflict"
    assert one.original_offset is None
    assert one.origin == (None, None, None)
    assert letter([]).reason == "-"


@pytest.mark.parametrize(
    ("value", "uid"),
    [
        (b'{"order_uid": "abc"}', "abc"),
        (b'{"order_uid": 5}', None),
        (b"[1, 2]", None),
        (b"\xff\xfe", None),
        (b'{"order_uid": "ab', None),
        (None, None),
        (b"[" * 100_000, None),  # past any parser's depth: json.loads raised RecursionError here
        (b'{"order_uid": "x", "deep": ' + b"[" * 5000 + b"]" * 5000 + b"}", None),
    ],
)
def test_order_uid_only_from_a_json_object_with_a_string_uid(value: bytes | None, uid: str | None) -> None:
    assert letter([], value).order_uid == uid


class HeadersNotUtf8:
    """A message whose header names another client wrote in bytes that are not UTF-8: confluent-kafka
    raises when asked for its headers."""

    def error(self) -> None:
        return None

    def headers(self) -> list[tuple[str, bytes]]:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    def offset(self) -> int:
        return 7

    def partition(self) -> int:
        return 0

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"{}"


def test_a_letter_whose_headers_cannot_be_read_is_still_a_letter() -> None:
    read = read_message("orders.dlq", cast(Message, HeadersNotUtf8()))
    assert (read.offset, read.key, read.value) == (7, b"k", b"{}")
    assert [name for name, _ in read.headers] == [UNREADABLE_HEADERS]
    assert read.reason == "-"


def test_selection_combines_filters_and_offsets_are_inclusive() -> None:
    at = letter(
        [("dlq.reason", b"db_rejected"), ("dlq.original.partition", b"2"), ("dlq.original.offset", b"7")]
    )
    assert Selection().matches(at)
    assert Selection(reasons=frozenset({"invalid", "db_rejected"}), partition=2).matches(at)
    assert Selection(from_offset=7, to_offset=7).matches(at)
    assert not Selection(from_offset=8).matches(at)
    assert not Selection(to_offset=6).matches(at)
    assert not Selection(partition=3).matches(at)
    assert not Selection(reasons=frozenset({"conflict"})).matches(at)
    assert not Selection(uid="x").matches(at)
    assert not Selection(from_offset=0).matches(letter([]))  # no origin: not in any range


def test_printable_escapes_controls_so_a_line_stays_one_line() -> None:
    assert printable("plain ü") == "plain ü"
    assert printable("a\nb\x1b[31m\u009b") == "a\\nb\\x1b[31m\\x9b"
    assert show_bytes(b"\xff" * 100, 30) == "(not UTF-8, 100 bytes) " + " ".join(["ff"] * 10) + " ..."
    assert show_bytes(None) == "(none)"


def test_replay_headers_keep_the_originals_drop_dlq_ones_and_count_up() -> None:
    first = letter(
        [("created-at-ms", b"1"), ("trace", None), ("dlq.reason", b"invalid"), ("dlq.attempts", b"1")]
    )
    assert replay_headers(first) == [("created-at-ms", b"1"), ("trace", None), ("dlq.replay.count", b"1")]
    again = letter([("created-at-ms", b"1"), ("dlq.replay.count", b"2"), ("dlq.reason", b"db_rejected")])
    assert replay_headers(again) == [("created-at-ms", b"1"), ("dlq.replay.count", b"3")]
    garbled = letter([("dlq.replay.count", b"many")])
    assert replay_headers(garbled) == [("dlq.replay.count", b"1")]
