"""Unit tests of the producer CLI's pure parts: the streaming JSON reader, message building, the send loop.

The reader is checked against ``json`` itself as the oracle (same values, same error positions) for every
chunk size down to one character, because chunk boundaries falling inside a value are where a streaming
parser goes wrong. The send loop runs against a fake producer and a fake clock, so pacing and the
failure/interrupt exit codes are exact; tests/integration/test_producer.py proves the real Kafka path.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError

from internal.tools import producer
from internal.tools.producer import (
    JsonStreamError,
    JsonValue,
    Message,
    Stats,
    build_messages,
    iter_json_values,
    order_message,
    send_messages,
    truncated_message,
)

CHUNK_SIZES = [1, 2, 3, 7, 64, producer.CHUNK_SIZE]
ORDERS: list[dict[str, Any]] = [
    {"order_uid": f"uid-{i}", "track_number": "WBILMTESTTRACK", "items": [{"price": 10 * i, "sale": 30}]}
    for i in range(1, 6)
]


def read_all(text: str, chunk_size: int) -> list[JsonValue]:
    return list(iter_json_values(io.StringIO(text), chunk_size))


def texts(text: str, chunk_size: int) -> list[str]:
    return [v.text for v in read_all(text, chunk_size)]


def assert_consistent(values: list[JsonValue]) -> None:
    for v in values:
        assert v.value == json.loads(v.text)


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_gen_orders_format_gives_each_line_verbatim(chunk_size: int) -> None:
    lines = [json.dumps(o, separators=(",", ":")) for o in ORDERS]
    values = read_all("[\n" + ",\n".join(lines) + "\n]\n", chunk_size)
    assert [v.text for v in values] == lines
    assert [v.value for v in values] == ORDERS


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_json_lines_keep_their_own_spacing(chunk_size: int) -> None:
    lines = [json.dumps(o) for o in ORDERS]  # ", " and ": " separators must survive untouched
    assert texts("\n".join(lines) + "\n", chunk_size) == lines
    assert texts("\r\n".join(lines), chunk_size) == lines


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_pretty_printed_array_yields_each_element_as_its_source_slice(chunk_size: int) -> None:
    source = json.dumps(ORDERS, indent=2)
    values = read_all(source, chunk_size)
    assert [v.value for v in values] == ORDERS
    position = 0
    for v in values:
        assert "\n" in v.text
        position = source.index(v.text, position) + len(v.text)  # slices, in order


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_single_pretty_object_is_one_value(chunk_size: int) -> None:
    source = "\n" + json.dumps(ORDERS[0], indent=4) + "\n\n"
    assert texts(source, chunk_size) == [source.strip()]


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_numbers_cut_by_a_chunk_boundary_stay_whole(chunk_size: int) -> None:
    source = "123 -4.5e3\n[67890, 1.25E-2]\n7\n-0.5"
    assert [v.value for v in read_all(source, chunk_size)] == [123, -4500.0, 67890, 0.0125, 7, -0.5]


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_only_the_top_level_array_is_unrolled_and_any_value_is_kept(chunk_size: int) -> None:
    source = '[[1, 2], [], "x", null, {"a": [3]}, 4]'
    assert texts(source, chunk_size) == ["[1, 2]", "[]", '"x"', "null", '{"a": [3]}', "4"]


@pytest.mark.parametrize("source", ["", "  \n", "[]", "[\n]\n", " [ ] "])
def test_empty_inputs_yield_nothing(source: str) -> None:
    assert read_all(source, 2) == []


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_unicode_text_and_escapes_are_kept_verbatim(chunk_size: int) -> None:
    line = '{"order_uid":"ю-1","name":"Тест Тестов 😀","city":"Kiryat\\u00e9","note":"\\ud83d\\ude00"}'
    values = read_all(f"[\n{line},\n{line}\n]", chunk_size)
    assert [v.text for v in values] == [line, line]
    assert values[0].value == {"order_uid": "ю-1", "name": "Тест Тестов 😀", "city": "Kiryaté", "note": "😀"}


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_what_a_parse_and_dump_would_change_is_sent_as_written(chunk_size: int) -> None:
    """Why the reader is ours and not a streaming library's parse followed by a dump (docs/producer.md):
    a repeated key (which the service must dead-letter), a lone surrogate and the spelling of numbers
    would not survive the round trip (ijson: {"entry": "X"}, "?", Decimal("1E+2"))."""
    lines = ['{"entry": "WBIL", "entry": "X"}', '{"note": "\\ud800", "p": 1.10, "q": 1E2, "r": -0.0}']
    assert texts("[" + ",\n".join(lines) + "]", chunk_size) == lines


def test_a_real_file_keeps_crlf_and_drops_a_byte_order_mark(tmp_path: Path) -> None:
    order = json.dumps(ORDERS[0] | {"name": "Тест"}, indent=2, ensure_ascii=False).replace("\n", "\r\n")
    path = tmp_path / "orders.json"
    path.write_bytes(b"\xef\xbb\xbf" + f"[\r\n{order},\r\n{order}\r\n]\r\n".encode())
    with open(path, encoding="utf-8-sig", newline="") as f:
        values = list(iter_json_values(f, chunk_size=5))
    assert [v.text.encode() for v in values] == [order.encode(), order.encode()]
    assert_consistent(values)


BAD_DOCUMENTS = [
    "hello world",
    '[\n{"a": 1},\n{"a": 2,,}\n]',
    '[{"a": 1}\n {"b": 2}]',  # missing comma between elements
    "[1, 2,]",
    '[\n  {"a": 1},\n  {"a": tru}\n]',
    '[\n  {"a": "unterminated\n  }\n]',
    '[\n  {"a": 1}\n',  # array never closed
    '{"a": 1',
    "[1, 2\n",
    "\n\n   ]",
]


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("source", BAD_DOCUMENTS)
def test_syntax_error_position_matches_the_json_module(source: str, chunk_size: int) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(source)
    with pytest.raises(JsonStreamError) as got:
        read_all(source, chunk_size)
    assert (got.value.line, got.value.column) == (expected.value.lineno, expected.value.colno)
    assert f"line {got.value.line} column {got.value.column}" in str(got.value)


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_values_before_an_error_are_yielded_first(chunk_size: int) -> None:
    got: list[str] = []
    with pytest.raises(JsonStreamError) as err:
        got.extend(v.text for v in iter_json_values(io.StringIO('{"a":1}\n{"b":2}\n{"c":}\n'), chunk_size))
    assert got == ['{"a":1}', '{"b":2}']
    assert (err.value.line, err.value.column) == (3, 6)


class RecordingStream(io.StringIO):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.reads: list[int] = []

    def read(self, size: int | None = -1, /) -> str:
        self.reads.append(-1 if size is None else size)
        return super().read(size)


def test_memory_stays_bounded_by_chunk_and_value_size() -> None:
    line = json.dumps(ORDERS[0], separators=(",", ":"))
    stream = RecordingStream("[\n" + ",\n".join([line] * 5000) + "\n]\n")
    assert sum(1 for _ in iter_json_values(stream, chunk_size=256)) == 5000
    assert max(stream.reads) == 256  # never more than a chunk at a time: the consumed prefix is dropped


def test_a_value_spanning_many_chunks_is_read_in_growing_steps() -> None:
    big = json.dumps({"order_uid": "big", "blob": "x" * 200_000})
    stream = RecordingStream(big)
    assert [v.text for v in iter_json_values(stream, chunk_size=16)] == [big]
    assert len(stream.reads) < 30  # doubling reads: re-parsing stays linear, not one retry per chunk


def test_order_message_keys_by_string_order_uid_only() -> None:
    def message(text: str) -> Message:
        return order_message(JsonValue(text, json.loads(text)))

    assert message('{"order_uid": "ю1", "x": 1}') == Message(
        '{"order_uid": "ю1", "x": 1}'.encode(), "ю1".encode()
    )
    assert message('{"order_uid": 5}').key is None
    assert message('{"order_uid": "\\ud800"}').key == b"\xed\xa0\x80"  # a lone surrogate must not crash
    assert message('{"x": 1}').key is None
    assert message("[1]") == Message(b"[1]", None)


def test_build_messages_orders_then_truncated_then_gibberish() -> None:
    lines = [json.dumps(o) for o in ORDERS[:2]]
    values = read_all("\n".join([*lines, "7"]), 64)
    messages = list(build_messages(values, invalid_json=3, gibberish=4, rng=random.Random(1)))
    assert [m.value for m in messages[:3]] == [lines[0].encode(), lines[1].encode(), b"7"]
    truncated, gibberish = messages[3:6], messages[6:]
    for m, source in zip(truncated, [lines[0], lines[1], lines[0]], strict=True):
        text = m.value.decode()
        assert source.startswith(text)
        assert text != source
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    assert len(gibberish) == 4
    for m in gibberish:
        with pytest.raises(UnicodeDecodeError):
            m.value.decode()
    assert all(m.key is None for m in messages[3:])


def test_truncated_orders_without_orders_in_the_file_still_come() -> None:
    messages = list(build_messages([], invalid_json=2, gibberish=0, rng=random.Random(2)))
    assert len(messages) == 2
    for m in messages:
        with pytest.raises(json.JSONDecodeError):
            json.loads(m.value)


@pytest.mark.parametrize("seed", range(200))
def test_any_cut_of_an_order_is_invalid_json(seed: int) -> None:
    rng = random.Random(seed)
    order = json.dumps(ORDERS[seed % len(ORDERS)], indent=rng.choice([None, 2]))
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated_message(order, rng).value)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeProducer:
    """Queues like librdkafka: deliveries are reported on poll/flush; ``fail`` picks the failing values."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        produce_cost_s: float = 0.0,
        full_times: int = 0,
        fail: Callable[[bytes], bool] = lambda _: False,
    ) -> None:
        self.clock, self.produce_cost_s, self.full_times, self.fail = clock, produce_cost_s, full_times, fail
        self.produced: list[tuple[float, bytes, bytes | None, Any]] = []
        self.pending: list[tuple[bytes, Any]] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: Any) -> None:
        assert value is not None
        if self.full_times:
            self.full_times -= 1
            raise BufferError("queue full")
        self.produced.append((self.clock(), value, key, kw["headers"]))
        self.pending.append((value, kw["on_delivery"]))
        self.clock.now += self.produce_cost_s

    def poll(self, timeout: float) -> int:
        self.clock.now += timeout
        done, self.pending = self.pending, []
        for value, callback in done:
            callback(KafkaError(KafkaError._MSG_TIMED_OUT, "timed out") if self.fail(value) else None, None)
        return len(done)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0


def messages(n: int) -> Iterator[Message]:
    return (Message(f'{{"n": {i}}}'.encode(), None) for i in range(n))


@pytest.mark.parametrize("produce_cost_s", [0.0, 0.03])
def test_rps_follows_a_fixed_schedule_without_drift(produce_cost_s: float) -> None:
    clock = FakeClock()
    fake = FakeProducer(clock, produce_cost_s=produce_cost_s)
    stats = Stats(clock)
    send_messages(fake, "t", messages(20), rps=10, stats=stats)
    offsets = [at - 100.0 for at, *_ in fake.produced]
    assert offsets == pytest.approx([i / 10 for i in range(20)])
    assert (stats.sent, stats.delivered, stats.failed) == (20, 20, 0)


@pytest.mark.parametrize("rps", [1000, 2500, 10_000])
def test_pacing_never_waits_less_than_a_millisecond_and_keeps_the_rate(rps: int) -> None:
    # librdkafka rounds a poll timeout down to whole milliseconds: poll(0.0004) is poll(0), and a
    # pacing loop of such waits spins a core (it did: 100 % of one at 1,000/s).
    clock = FakeClock()
    fake = FakeProducer(clock)
    waits: list[float] = []
    poll = fake.poll

    def recording_poll(timeout: float) -> int:
        if timeout > 0:
            waits.append(timeout)
        return poll(timeout)

    fake.poll = recording_poll  # type: ignore[method-assign]
    n = rps  # one second of messages
    send_messages(fake, "t", messages(n), rps=rps, stats=Stats(clock))
    assert waits
    assert min(waits) >= 0.001
    assert len(waits) <= 1000  # at most one wait per millisecond of the run
    lateness = [at - 100.0 - i / rps for i, (at, *_) in enumerate(fake.produced)]
    assert min(lateness) >= -0.0005 - 1e-9  # at most half a millisecond early
    assert max(lateness) <= 0.001 + 1e-9  # at most one wait late: the schedule catches up


def test_full_queue_is_drained_and_the_same_message_retried() -> None:
    fake = FakeProducer(FakeClock(), full_times=3)
    stats = Stats(fake.clock)
    send_messages(fake, "t", messages(2), rps=0, stats=stats)
    assert [value for _, value, *_ in fake.produced] == [b'{"n": 0}', b'{"n": 1}']
    assert stats.sent == 2


def test_every_message_carries_created_at_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1_700_000_000_123_456_789)
    fake = FakeProducer(FakeClock())
    send_messages(fake, "t", messages(1), rps=0, stats=Stats(fake.clock))
    assert fake.produced[0][3] == [("created-at-ms", b"1700000000123")]


def test_progress_line_about_once_a_second(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeProducer(FakeClock())
    stats = Stats(fake.clock)
    send_messages(fake, "t", messages(30), rps=10, stats=stats)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2  # at about 1 s and 2 s of the 2.9 s run
    for line in lines:
        assert re.fullmatch(r"producer: sent=1?\d+ delivered=\d+ failed=0 rate=1[01]\.\d msg/s", line), line
    stats.summary("done")
    assert capsys.readouterr().err.startswith("producer: done: sent=30 delivered=30 failed=0 elapsed=2.90s")


def run_main(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeProducer, *args: str
) -> tuple[int, FakeProducer]:
    def make_producer(config: dict[str, Any]) -> FakeProducer:
        assert config["acks"] == "all"
        assert config["enable.idempotence"] is True
        return fake

    fake_any: Any = fake
    fake_any.list_topics = lambda topic, timeout: SimpleNamespace(topics={topic: SimpleNamespace(error=None)})
    monkeypatch.setattr(producer, "Producer", make_producer)
    path = tmp_path / "orders.json"
    path.write_text("[\n" + ",\n".join(json.dumps(o) for o in ORDERS) + "\n]\n", encoding="utf-8")
    return producer.main(["-file", str(path), "-rps", "0", "-topic", "t", *args]), fake


def test_exit_1_when_any_delivery_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeProducer(FakeClock(), fail=lambda value: b"uid-2" in value)
    code, _ = run_main(monkeypatch, tmp_path, fake)
    assert code == 1
    err = capsys.readouterr().err
    assert "producer: delivery failed: _MSG_TIMED_OUT: timed out" in err
    assert "producer: done: sent=5 delivered=4 failed=1" in err


def test_exit_0_when_all_are_acknowledged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code, fake = run_main(monkeypatch, tmp_path, FakeProducer(FakeClock()), "--gibberish", "2")
    assert code == 0
    assert len(fake.produced) == 7


def test_ctrl_c_stops_sending_flushes_and_exits_130(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class CtrlCOnThirdOrder(FakeProducer):
        def produce(
            self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: Any
        ) -> None:
            super().produce(topic, value, key, **kw)
            if len(self.produced) == 3:
                os.kill(os.getpid(), signal.SIGINT)

    previous = signal.getsignal(signal.SIGINT)
    code, fake = run_main(monkeypatch, tmp_path, CtrlCOnThirdOrder(FakeClock()))
    assert code == 130
    assert len(fake.produced) == 3
    assert fake.pending == []  # flushed
    err = capsys.readouterr().err
    assert "producer: interrupted: sent=3 delivered=3 failed=0" in err
    assert "Traceback" not in err
    assert signal.getsignal(signal.SIGINT) is previous
