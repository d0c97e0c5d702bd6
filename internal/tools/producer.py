"""Replay an orders file into Kafka: the load and fault generator for the L0 service.

The file is streamed, never loaded whole, so a generated file of millions of orders replays in constant
memory. Each order is sent as the exact text it has in the file (not re-serialized), because the service
is tested on what producers really send, whitespace and key order included. Deliberately broken messages
(truncated JSON, random bytes) exercise the service's dead-letter path. docs/producer.md is the manual.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TextIO

from confluent_kafka import KafkaError, KafkaException, Producer

from internal.config.cli import add_config_option, settings_for
from internal.pkg import kafka_produce

CHUNK_SIZE = 64 * 1024
HEADER_CREATED_AT = "created-at-ms"
TOPIC_CHECK_TIMEOUT_S = 5.0
INTERRUPT_FLUSH_S = 10.0
MIN_WAIT_S = 0.001  # librdkafka's timeouts are whole milliseconds
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NUMBER_TAIL = re.compile(r"[0-9.eE+-]*")
# A parse error this close to the end of the buffer may only mean the value goes on in the next chunk.
_CUT_MARGIN = 32
_MAX_SAMPLES = 1000
# What --invalid-json cuts short when the file holds no order to take.
_FALLBACK_ORDER = '{"order_uid": "no-orders-in-file", "track_number": "WBILMTESTTRACK", "entry": "WBIL"}'


class JsonStreamError(ValueError):
    """The text is not a sequence of JSON values; ``line`` and ``column`` are 1-based."""

    def __init__(self, msg: str, line: int, column: int) -> None:
        super().__init__(f"{msg} at line {line} column {column}")
        self.msg, self.line, self.column = msg, line, column


@dataclass(frozen=True, slots=True)
class JsonValue:
    text: str  # the value's exact source text
    value: object


class _Buffer:
    """A window on the stream: the unconsumed text plus the line/column where it starts (for errors)."""

    def __init__(self, stream: TextIO, chunk_size: int) -> None:
        self.stream, self.chunk_size = stream, chunk_size
        self.text, self.pos, self.eof = "", 0, False
        self._line, self._col = 1, 0

    def fill(self) -> None:
        done = self.text[: self.pos]
        if (newlines := done.count("\n")) > 0:
            self._line, self._col = self._line + newlines, len(done) - done.rfind("\n") - 1
        else:
            self._col += len(done)
        self.text, self.pos = self.text[self.pos :], 0
        # Reading at least as much as is already buffered keeps re-parsing a value that spans many chunks
        # linear in its size instead of quadratic.
        chunk = self.stream.read(max(self.chunk_size, len(self.text)))
        self.text += chunk
        self.eof = not chunk

    def peek(self) -> str:
        """Skip whitespace and return the next character, or "" at the end of the stream."""
        while True:
            match = _WHITESPACE.match(self.text, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.text):
                return self.text[self.pos]
            if self.eof:
                return ""
            self.fill()

    def decode(self, decoder: json.JSONDecoder) -> JsonValue:
        while True:
            try:
                value, end = decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                cut = exc.msg.startswith("Unterminated string") or exc.pos >= len(self.text) - _CUT_MARGIN
                if self.eof or not cut:
                    raise self.error(exc.msg, exc.pos) from None
            else:
                # A number is whole only once something that cannot extend it follows ("12" of "123", "4." of
                # "4.5"); any other value ends with its own closing character.
                number = self.text[self.pos] in "-0123456789"
                if self.eof or not (number and _NUMBER_TAIL.fullmatch(self.text, end)):
                    text, self.pos = self.text[self.pos : end], end
                    return JsonValue(text, value)
            self.fill()

    def error(self, msg: str, index: int) -> JsonStreamError:
        newlines = self.text.count("\n", 0, index)
        column = index - self.text.rfind("\n", 0, index) if newlines else self._col + index + 1
        return JsonStreamError(msg, self._line + newlines, column)


def iter_json_values(stream: TextIO, chunk_size: int = CHUNK_SIZE) -> Iterator[JsonValue]:
    """Yield the JSON values of ``stream`` one by one, in bounded memory.

    A top-level array is unrolled into its elements (gen_orders.py files, pretty-printed arrays); other
    top-level values follow each other freely (JSON Lines, a single object). Nested arrays stay whole.
    Raises ``JsonStreamError`` at the first syntax error, after yielding every value before it.
    Not a streaming library's (ijson): none returns a value's source text, and parsing then dumping
    would merge repeated keys and respell escapes and numbers (docs/producer.md, measured).
    """
    buf, decoder = _Buffer(stream, chunk_size), json.JSONDecoder()
    state = "top"  # or, inside the top-level array: "open" (after "["), "item" (after ","), "next"
    while ch := buf.peek():
        if state == "top" and ch == "[":
            state = "open"
        elif state in ("open", "next") and ch == "]":
            state = "top"
        elif state == "next":
            if ch != ",":
                raise buf.error("Expecting ',' delimiter", buf.pos)
            state = "item"
        else:
            yield buf.decode(decoder)
            state = "top" if state == "top" else "next"
            continue
        buf.pos += 1
    if state != "top":
        raise buf.error("Unterminated array", buf.pos)


@dataclass(frozen=True, slots=True)
class Message:
    value: bytes
    key: bytes | None = None


def order_message(order: JsonValue) -> Message:
    """The value's own text, keyed by its order_uid when it has a string one."""
    uid = order.value.get("order_uid") if isinstance(order.value, dict) else None
    # surrogatepass: an escaped lone surrogate ("\ud800") in a uid must not crash the run.
    return Message(order.text.encode(), uid.encode(errors="surrogatepass") if isinstance(uid, str) else None)


def truncated_message(order_text: str, rng: random.Random) -> Message:
    # A proper prefix of an object's text lacks its closing brace, so it never parses.
    return Message(order_text[: rng.randint(1, len(order_text) - 1)].encode())


def gibberish_message(rng: random.Random) -> Message:
    while True:
        data = rng.randbytes(rng.randint(16, 256))
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return Message(data)


def build_messages(
    values: Iterable[JsonValue], invalid_json: int, gibberish: int, rng: random.Random
) -> Iterator[Message]:
    """The file's values first, then ``invalid_json`` truncated orders, then ``gibberish`` random ones."""
    samples: list[str] = []
    for value in values:
        if isinstance(value.value, dict) and len(samples) < min(invalid_json, _MAX_SAMPLES):
            samples.append(value.text)
        yield order_message(value)
    samples = samples or [_FALLBACK_ORDER]
    for i in range(invalid_json):
        yield truncated_message(samples[i % len(samples)], rng)
    for _ in range(gibberish):
        yield gibberish_message(rng)


Headers = kafka_produce.Headers


class ProducerLike(kafka_produce.ProducerLike, Protocol):
    """The part of confluent_kafka.Producer the send loop uses, so that tests can stand in for it."""

    def flush(self, timeout: float) -> int: ...


class Stats:
    """The run's counts, printed as a progress line about once a second and as a final summary."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.sent = self.delivered = self.failed = 0
        self.clock = clock
        self.start = self._last_at = clock()
        self._last_sent = 0
        self._errors_seen: set[str] = set()

    def __str__(self) -> str:
        return f"sent={self.sent} delivered={self.delivered} failed={self.failed}"

    def fail(self, why: str) -> None:
        self.failed += 1
        if self.failed <= 5:  # the first few tell the cause; thousands of copies would bury it
            print(f"producer: delivery failed: {why}", file=sys.stderr)

    def on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.fail(kafka_produce.failure_text(err))

    def on_error(self, err: KafkaError) -> None:
        # A down broker reports the same error many times a second; once is enough to say what is wrong.
        if err.str() not in self._errors_seen:
            self._errors_seen.add(err.str())
            print(f"producer: kafka: {err.str()}", file=sys.stderr)

    def tick(self) -> None:
        now = self.clock()
        if now - self._last_at >= 1.0:
            rate = (self.sent - self._last_sent) / (now - self._last_at)
            print(f"producer: {self} rate={rate:.1f} msg/s", file=sys.stderr)
            self._last_at, self._last_sent = now, self.sent

    def summary(self, outcome: str) -> None:
        elapsed = self.clock() - self.start
        avg = self.sent / elapsed if elapsed > 0 else 0.0
        print(f"producer: {outcome}: {self} elapsed={elapsed:.2f}s avg={avg:.1f} msg/s", file=sys.stderr)


def send_messages(
    producer: ProducerLike,
    topic: str,
    messages: Iterable[Message],
    *,
    rps: int,
    stats: Stats,
    stop: threading.Event | None = None,
) -> None:
    """Produce every message, paced to ``rps`` per second (0: as fast as the client takes them).

    Returns early, between two messages, once ``stop`` is set.
    """
    stop = stop or threading.Event()
    clock = stats.clock
    start = clock()
    for i, message in enumerate(messages):
        # Sending on a fixed schedule absorbs the time spent producing, so the rate does not drift.
        while rps > 0 and not stop.is_set() and (delay := start + i / rps - clock()) >= MIN_WAIT_S / 2:
            # librdkafka counts whole milliseconds: a shorter wait would be poll(0), and at rates
            # near 1,000/s and above nearly every wait is shorter - the loop would spin a core. So a
            # message goes up to half a millisecond early, or up to one late (the schedule catches up:
            # the next ones are due at once).
            producer.poll(min(max(delay, MIN_WAIT_S), 0.1))
            stats.tick()
        if stop.is_set():
            return
        _produce(producer, topic, message, stats)
        producer.poll(0)
        stats.tick()


def _produce(producer: ProducerLike, topic: str, message: Message, stats: Stats) -> None:
    headers: Headers = [(HEADER_CREATED_AT, str(time.time_ns() // 1_000_000).encode())]
    try:
        kafka_produce.produce(
            producer,
            topic,
            value=message.value,
            key=message.key,
            headers=headers,
            on_delivery=stats.on_delivery,
        )
    except kafka_produce.ProduceError as exc:  # refused before queuing, e.g. larger than message.max.bytes
        stats.fail(f"a message of {len(message.value)} bytes: {kafka_produce.failure_text(exc.error)}")
    else:
        stats.sent += 1


def _flush(producer: ProducerLike, stop: threading.Event, timeout_s: float) -> None:
    """Wait for outstanding deliveries: up to ``timeout_s``, or INTERRUPT_FLUSH_S once Ctrl-C was pressed."""
    start = time.monotonic()
    while producer.flush(0.2) > 0:
        waited = time.monotonic() - start
        if waited >= timeout_s or (stop.is_set() and waited >= INTERRUPT_FLUSH_S):
            return


@contextlib.contextmanager
def _ctrl_c_sets(stop: threading.Event) -> Iterator[None]:
    """Make the first Ctrl-C set ``stop`` instead of raising; a second one exits at once.

    A KeyboardInterrupt raised while confluent-kafka runs a delivery callback surfaces as a SystemError on
    Python < 3.12 (confluent-kafka 2.16), so the interrupt must not be an exception.
    """

    def on_sigint(_signum: int, _frame: object) -> None:
        if stop.is_set():
            print("producer: interrupted twice, not waiting for deliveries", file=sys.stderr, flush=True)
            os._exit(EXIT_INTERRUPTED)
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="producer",
        allow_abbrev=False,
        description="Replay an orders file into a Kafka topic: its values, then broken ones.",
    )
    add, count = parser.add_argument, _non_negative
    add(
        "-file",
        "--file",
        default="mock.json",
        help="JSON array, JSON Lines or one object (default: mock.json)",
    )
    add("-rps", "--rps", type=count, default=1, help="messages per second, 0 = no limit (default: 1)")
    add(
        "-invalid-json",
        "--invalid-json",
        type=count,
        default=0,
        metavar="N",
        help="truncated orders to add (default: 0)",
    )
    add(
        "-gibberish",
        "--gibberish",
        type=count,
        default=0,
        metavar="N",
        help="random-byte messages to add (default: 0)",
    )
    # Where to send: the service's settings (kafka.topic, kafka.brokers, kafka.client_id: config file,
    # then environment, the original's names included); these flags override them.
    add("-topic", "--topic", help="default: the setting kafka.topic (env KAFKA_TOPIC)")
    add("-brokers", "--brokers", help="default: the setting kafka.brokers (env KAFKA_BROKERS)")
    add("-client-id", "--client-id", help="default: the setting kafka.client_id (env KAFKA_CLIENT_ID)")
    add_config_option(parser, "-config")
    add(
        "-message-timeout-ms",
        "--message-timeout-ms",
        type=count,
        default=30_000,
        help="per message, 0 = none (default: 30000)",
    )
    return parser


def _fail(text: str) -> int:
    print(f"producer: {text}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_for(args)
    args.topic = args.topic or settings.kafka.topic
    args.brokers = args.brokers or settings.kafka.brokers
    args.client_id = args.client_id or settings.kafka.client_id
    try:
        with open(args.file, encoding="utf-8-sig", newline="") as source:
            return _run(args, source)
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror or exc}")
    except KeyboardInterrupt:  # before anything was sent
        print("producer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace, source: TextIO) -> int:
    stats = Stats()
    config = {
        "bootstrap.servers": args.brokers,
        "client.id": args.client_id,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": args.message_timeout_ms,
        "log_level": 0,  # librdkafka's raw log floods stderr when a broker is down; error_cb says it once
        "error_cb": stats.on_error,
    }
    try:
        producer = Producer(config)
    except KafkaException as exc:  # e.g. message.timeout.ms not above linger.ms
        return _fail(f"bad producer settings: {exc.args[0].str()}")
    try:
        # The producer's own metadata request, not an AdminClient, so that the check stays quiet.
        topic = producer.list_topics(topic=args.topic, timeout=TOPIC_CHECK_TIMEOUT_S).topics.get(args.topic)
    except KafkaException as exc:
        return _fail(f"cannot reach Kafka at {args.brokers}: {exc.args[0].str()}")
    if topic is None or topic.error is not None:
        return _fail(
            f'topic "{args.topic}" does not exist on {args.brokers} '
            "(the service creates it at start; or run make topics)"
        )

    stop = threading.Event()
    messages = build_messages(iter_json_values(source), args.invalid_json, args.gibberish, random.Random())
    # librdkafka reports every message within message.timeout.ms (0 means never gives up; flush likewise).
    flush_s = args.message_timeout_ms / 1000 + 5 if args.message_timeout_ms else math.inf
    code, outcome = EXIT_OK, "done"
    with _ctrl_c_sets(stop):
        try:
            send_messages(producer, args.topic, messages, rps=args.rps, stats=stats, stop=stop)
        except JsonStreamError as exc:
            code, outcome = _fail(f"{args.file}: not valid JSON: {exc}"), "stopped"
        except UnicodeDecodeError as exc:
            code, outcome = _fail(f"{args.file}: not UTF-8 text ({exc.reason})"), "stopped"
        except OSError as exc:
            code, outcome = _fail(f"cannot read {args.file}: {exc.strerror or exc}"), "stopped"
        _flush(producer, stop, flush_s)
    if stop.is_set():
        code, outcome = EXIT_INTERRUPTED, "interrupted"
    # Whatever is still unconfirmed will not be once the process is gone: it counts as failed.
    stats.failed += max(0, stats.sent - stats.delivered - stats.failed)
    stats.summary(outcome)
    if code == EXIT_OK and stats.failed:
        return EXIT_FAILED
    return code
