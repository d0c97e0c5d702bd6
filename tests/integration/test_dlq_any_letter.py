"""l0-dlq list and show on letters nobody here wrote, on the real broker: values that are not UTF-8, not
JSON, nested past any parser's depth, huge or cut short; headers missing, repeated, unreadable or by
the ten thousand. Whatever arrives, both commands exit 0, list every letter, and print only escaped,
bounded lines - the tool exists to show exactly the letters nothing else can read."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
from confluent_kafka import KafkaError, Message, Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from internal.tools.dlq import main
from tests.conftest import Topics

pytestmark = pytest.mark.integration

Header = tuple[str, str | bytes | None]
NAMES = [H_REASON, H_ERROR, H_TOPIC, H_PARTITION, H_OFFSET, H_FAILED_AT, H_TRUNCATED, H_TRUNCATED_CAUSE,
         H_ORIGINAL_SIZE, H_ORIGINAL_SHA256, "dlq.replay.count", "created-at-ms"]  # fmt: skip
ODD_BYTES = [b"", b"true", b"-1", b"007", b"99999999999999999999999", b"\x1b[2J\x1b[31mred", b"a\nb\rc\x00",
             b"\xff\xfe\xfd", "\u202e\u2028\ufeff".encode(), b"x" * 30_000, b"invalid"]  # fmt: skip
DEEP = [b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b"[" * 199 + b"1" + b"]" * 199,
        b'{"order_uid":' + b"[" * 5000 + b"]" * 5000 + b"}"]  # fmt: skip
ODD_JSON = [
    b'{"order_uid": "\\u001b[2Jhacked\\n", "x": 1}',
    b'{"order_uid": "' + b"u" * 300_000 + b'"}',  # a huge uid
    b'{"order_uid": 12345678901234567890123456789}',
    b'{"order_uid": "a", "order_uid": "b"}',
    b'{"order_uid": "\\ud800"}',  # a lone surrogate
    b"[" + b'{"k": "' + b"v" * 100 + b'"},' * 20_000 + b"{}]",  # 20,000 lines when indented
    b'{"order_uid": "trunc',  # a stub's first bytes
    b"null",
    b"NaN",
    b"1e999999",
    json.dumps({"order_uid": "ok123", "s": "\u2028\x85\xad"}).encode(),
]
VALUES = (
    st.none()
    | st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | st.sampled_from([*DEEP, *ODD_JSON, b"\x00" * 500_000])
)
HEADER_VALUES = st.none() | st.binary(max_size=40) | st.sampled_from(ODD_BYTES)
HEADER_NAMES = st.sampled_from(NAMES) | st.text(min_size=1, max_size=30)
HEADERS = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=12) | st.just(
    [(f"h{i}", b"v" * 10) for i in range(10_000)] + [(H_REASON, b"invalid"), (H_REASON, b"\x1b]0;title\x07")]
)
LETTERS = st.lists(st.tuples(st.none() | st.binary(max_size=50), VALUES, HEADERS), min_size=1, max_size=3)
ANY_LETTER = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
ROW = re.compile(r"^ *(\d+)  ")
MAX_LINE = 2100  # the widest a list row or a show line gets (a text preview: 2000): everything is cut


def produce(
    brokers: str, topic: str, letters: list[tuple[bytes | None, bytes | None, list[Header]]]
) -> list[int]:
    producer = Producer({"bootstrap.servers": brokers, "acks": "all", "message.max.bytes": 4_000_000})
    offsets: list[int] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        offsets.append(msg.offset() or 0)

    for key, value, headers in letters:
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
    assert producer.flush(30) == 0
    return offsets


def run(brokers: str, topic: str, *args: str) -> tuple[int, list[str]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([args[0], "--brokers", brokers, "--dlq-topic", topic, *args[1:]])
    assert err.getvalue() == ""
    lines = out.getvalue().splitlines()
    for line in lines:
        assert len(line) <= MAX_LINE, line[:200]
        assert line.isprintable(), repr(line[:200])  # escaped: no control, no line break in a value
    return code, lines


@ANY_LETTER
@given(letters=LETTERS)
def test_list_and_show_survive_any_letter(
    kafka_brokers: str, topics: Topics, letters: list[tuple[bytes | None, bytes | None, list[Header]]]
) -> None:
    offsets = produce(kafka_brokers, topics.dlq, letters)
    code, lines = run(kafka_brokers, topics.dlq, "list")
    assert code == 0
    listed = {int(m.group(1)) for line in lines if (m := ROW.match(line))}
    assert set(offsets) <= listed
    for offset in offsets:
        code, lines = run(kafka_brokers, topics.dlq, "show", str(offset))
        assert code == 0
        assert lines[0].startswith(f"letter at offset {offset} of ")
        assert sum(len(line) for line in lines) < 400_000  # bounded, whatever the letter's size
