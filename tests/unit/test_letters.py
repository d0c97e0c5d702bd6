"""The stub letter: bounded whatever the original message holds."""

from __future__ import annotations

from internal.consumer.letters import (
    STUB_HEADER_BYTES,
    STUB_HEADER_COUNT,
    stub_headers,
    stub_key,
    stub_value,
)
from internal.consumer.messages import DeadLetter, Inbound
from internal.domain.reasons import DeadLetterReason


def stub_size(
    headers: tuple[tuple[str, str | bytes | None], ...], key: bytes = b"k", value: bytes = b"v"
) -> int:
    letter = DeadLetter(
        Inbound("orders", 0, 1, key, value, headers, None, 1),
        DeadLetterReason.UNDECODABLE,
        "e" * 4096,
        1,
        "cause",
    )
    names = stub_headers(letter, "group", "1.0", 4096)
    wire = sum(len(n) + len(v or b"") + 16 for n, v in names)  # 16: a header's own framing, at most
    return wire + len(stub_key(letter) or b"") + len(stub_value(letter) or b"")


def test_a_stub_of_a_message_of_many_empty_headers_stays_small() -> None:
    empty: tuple[tuple[str, str | bytes | None], ...] = tuple(("", None) for _ in range(100_000))
    assert stub_size(empty) < 32 * 1024


def test_a_stub_keeps_no_more_than_its_header_budget() -> None:
    heavy = tuple((f"h{i}", b"x" * 1000) for i in range(100))
    letter = DeadLetter(
        Inbound("orders", 0, 1, None, b"v", heavy, None, 1), DeadLetterReason.INVALID, "e", 1, "c"
    )
    kept = [n for n, _v in stub_headers(letter, "g", "v", 100) if n.startswith("h")]
    assert 0 < len(kept) <= min(STUB_HEADER_COUNT, STUB_HEADER_BYTES // 1000)
    assert stub_size(heavy, key=b"k" * 2_000_000, value=b"v" * 2_000_000) < 32 * 1024
