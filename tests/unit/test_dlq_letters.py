"""The DLQ tool's pure parts: header parsing, filters, escaping and the headers a replay sends."""

from __future__ import annotations

import pytest

from internal.tools.dlq_letters import Letter, Selection, printable, show_bytes
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
    ],
)
def test_order_uid_only_from_a_json_object_with_a_string_uid(value: bytes | None, uid: str | None) -> None:
    assert letter([], value).order_uid == uid


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
