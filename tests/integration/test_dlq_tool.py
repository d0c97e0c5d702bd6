"""The dead-letter tool (l0-dlq) against the real broker.

Letters are written straight into the test's dead-letter topic with the service's own header builder
(internal.consumer.letters.letter_headers), so the tool is tested on exactly what the consumer writes, and
the orders topic's contents after a replay are read back byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from confluent_kafka import Message, Producer
from psycopg_pool import ConnectionPool

from internal.consumer.dlq import KafkaDeadLetterSink
from internal.consumer.letters import DLQ_HEADERS, letter_headers
from internal.consumer.messages import DeadLetter, Inbound
from internal.domain.order import Order
from internal.domain.reasons import DeadLetterReason
from internal.domain.records import OrderRecord
from internal.pkg.kafka_offsets import partition_ends
from internal.pkg.kafka_topics import TopicSpec, delete_topics, ensure_topics
from internal.store import migrations
from internal.store.writer import PostgresOrderWriter
from internal.tools.dlq import main
from tests.conftest import Topics
from tests.e2e.helpers import read_topic
from tests.orders import encode, order_doc

pytestmark = pytest.mark.integration

RawHeaders = tuple[tuple[str, str | bytes | None], ...]
LONG_ERROR = "delivery.email: not an e-mail address\n" + "items[0].price: must be >= 0; " * 10


@dataclass(frozen=True)
class Spec:
    reason: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: RawHeaders = (("created-at-ms", b"1700000000000"),)
    error: str = "RaiseException: customer is blocked"


def order(index: int) -> tuple[str, bytes]:
    doc = order_doc(index, seed=31)
    return doc["order_uid"], encode(doc)


UID_A, VALUE_A = order(1)
UID_B, VALUE_B = order(2)
UID_C, VALUE_C = order(3)
UID_D, VALUE_D = order(4)
UID_I, VALUE_I = order(5)
GIBBERISH = b"\xff\xfe\x00garbage" * 8
REPLAYED_ONCE: RawHeaders = (("created-at-ms", b"1"), ("dlq.replay.count", b"1"))

# DLQ offset = index. Letter 5 repeats letter 2 (at-least-once publishing); letter 6 was replayed once.
SPECS = [
    Spec("invalid", 0, 10, VALUE_I, UID_I.encode(), error=LONG_ERROR),
    Spec("undecodable", 1, 11, GIBBERISH),
    Spec("db_rejected", 2, 12, VALUE_A, UID_A.encode()),
    Spec("db_rejected", 2, 13, VALUE_B, UID_B.encode()),
    Spec("conflict", 3, 14, VALUE_C, UID_C.encode(), error="same order_uid, different content"),
    Spec("db_rejected", 2, 12, VALUE_A, UID_A.encode()),
    Spec("processing_error", 4, 20, VALUE_D, UID_D.encode(), REPLAYED_ONCE),
]


def put_letters(brokers: str, topics: Topics, specs: list[Spec]) -> None:
    producer = Producer({"bootstrap.servers": brokers, "acks": "all", "enable.idempotence": True})
    for s in specs:
        inbound = Inbound(topics.orders, s.partition, s.offset, s.key, s.value, s.headers, 1700000000000, 1)
        headers = letter_headers(
            DeadLetter(inbound, DeadLetterReason(s.reason), s.error, 1), topics.group, "test", 4096
        )
        producer.produce(topics.dlq, key=s.key, value=s.value, headers=headers)
    assert producer.flush(30) == 0


@pytest.fixture
def db(schema_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test's own schema, migrated, as the database replay checks stored orders in (env POSTGRES_DSN,
    as in a shell set up for the service)."""
    migrations.apply_pending(schema_dsn)
    monkeypatch.setenv("POSTGRES_DSN", schema_dsn)
    monkeypatch.setenv("CONFIG_FILE", "")
    return schema_dsn


@pytest.fixture
def letters(kafka_brokers: str, topics: Topics, db: str) -> Topics:
    put_letters(kafka_brokers, topics, SPECS)
    return topics


def run(capsys: pytest.CaptureFixture[str], brokers: str, topics: Topics, *args: str) -> tuple[int, str, str]:
    command, *rest = args
    code = main([command, "--brokers", brokers, "--dlq-topic", topics.dlq, *rest])
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str) -> dict[int, str]:
    """The listed letters by DLQ offset: the lines between the column header and the totals."""
    lines = out.splitlines()
    body = lines[1 : lines.index("--")]
    return {int(line.split()[0]): line for line in body}


def totals(out: str) -> dict[str, str]:
    lines = out.splitlines()
    return {line.split()[0]: line.split(maxsplit=1)[1] for line in lines[lines.index("--") + 1 :]}


def test_list_prints_one_line_per_letter_and_totals_per_reason(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics
) -> None:
    code, out, err = run(capsys, kafka_brokers, letters, "list")
    assert (code, err) == (0, "")
    listed = rows(out)
    assert sorted(listed) == list(range(7))
    _, reason, part, offset, uid, failed_at, error = listed[0].split(maxsplit=6)
    assert (reason, part, offset, uid) == ("invalid", "0", "10", UID_I)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", failed_at)
    assert error.startswith("delivery.email: not an e-mail address\\n")  # escaped, still one line
    assert len(error) == 100
    assert error.endswith("...")
    assert listed[1].split()[1:5] == ["undecodable", "1", "11", "-"]  # not JSON: no order_uid
    assert listed[2].split()[1:5] == ["db_rejected", "2", "12", UID_A]
    assert listed[4].split()[1:5] == ["conflict", "3", "14", UID_C]
    assert totals(out) == {
        "undecodable": "1",
        "invalid": "1",
        "conflict": "1",
        "db_rejected": "3",
        "processing_error": "1",
        "total": "7  (6 distinct original messages)",
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--reason", "db_rejected"], [2, 3, 5]),
        (["--reason", "conflict", "--reason", "invalid"], [0, 4]),
        (["--partition", "2"], [2, 3, 5]),
        (["--from-offset", "12", "--to-offset", "14"], [2, 3, 4, 5]),
        (["--partition", "2", "--from-offset", "13"], [3]),
        (["--to-offset", "11"], [0, 1]),
        (["--uid", UID_B], [3]),
        (["--uid", "no-such-uid"], []),
    ],
)
def test_list_filters_select_by_original_partition_offset_reason_and_uid(
    capsys: pytest.CaptureFixture[str],
    kafka_brokers: str,
    letters: Topics,
    args: list[str],
    expected: list[int],
) -> None:
    code, out, _ = run(capsys, kafka_brokers, letters, "list", *args)
    assert code == 0
    assert sorted(rows(out)) == expected
    assert totals(out)["total"].split()[0] == str(len(expected))


def test_list_limit_prints_the_first_letters_and_still_counts_all(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics
) -> None:
    code, out, _ = run(capsys, kafka_brokers, letters, "list", "--limit", "2")
    assert code == 0
    assert sorted(rows(out)) == [0, 1]
    assert totals(out)["total"].startswith("7 ")
    assert out.splitlines()[-1] == "shown 2 of 7 (--limit 2)"


def test_show_prints_headers_key_pretty_value_and_the_full_error(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics
) -> None:
    code, out, err = run(capsys, kafka_brokers, letters, "show", "0")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    header_lines = lines[
        lines.index("headers:") + 1 : next(i for i, x in enumerate(lines) if x.startswith("key:"))
    ]
    names = [line.split(":", 1)[0].strip() for line in header_lines]
    assert names == [*DLQ_HEADERS, "created-at-ms"]  # dlq.* first, then the message's own
    assert "  dlq.reason: invalid" in lines
    assert "  dlq.original.offset: 10" in lines
    assert f"key: {UID_I}" in lines
    pretty = out[out.index("JSON:\n") + len("JSON:\n") : out.index("\nerror:")]
    assert json.loads(pretty) == json.loads(VALUE_I)
    assert f'  "order_uid": "{UID_I}",' in pretty.splitlines()  # indented, one field a line
    error = lines[lines.index("error:") + 1 :]
    assert error == [f"  {line}" for line in LONG_ERROR.splitlines()]  # whole, not cut


def test_show_previews_bytes_that_are_not_text_and_refuses_a_missing_offset(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics
) -> None:
    code, out, _ = run(capsys, kafka_brokers, letters, "show", "1")
    assert code == 0
    assert "key: (none)" in out
    assert "value: 80 bytes, not UTF-8; first bytes in hex:" in out
    assert f"  {GIBBERISH[:64].hex(' ')} ..." in out.splitlines()

    code, out, err = run(capsys, kafka_brokers, letters, "show", "99")
    assert code == 2
    assert err == f"l0-dlq: no letter at offset 99 of {letters.dlq} (it holds offsets 0..6)\n"


def test_replay_dry_run_prints_what_it_would_send_and_sends_nothing(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics
) -> None:
    code, out, _ = run(capsys, kafka_brokers, letters, "replay", "--dry-run", "--to-topic", letters.orders)
    assert code == 0
    assert out.count("would send dlq offset") == 5  # 7 - the repeated letter - the conflict
    assert out.splitlines()[-1] == (
        "replay: selected 7, skipped conflicts 1, skipped stubs 0, duplicates skipped 1, already stored 0, "
        "other target 0, would send 5"
    )
    assert sum(partition_ends(kafka_brokers, letters.orders).values()) == 0


def raw_headers(message: Message) -> list[tuple[str, str | bytes | None]]:
    raw = message.headers() or []
    return list(raw.items() if isinstance(raw, dict) else raw)


def _by_key(messages: list[Message]) -> dict[bytes | None, Message]:
    return {m.key(): m for m in messages}


def test_replay_sends_key_value_and_own_headers_once_and_counts_replays(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics
) -> None:
    code, out, _ = run(
        capsys, kafka_brokers, letters, "replay", "--to-topic", letters.orders,
        "--reason", "db_rejected", "--reason", "processing_error",
    )  # fmt: skip
    assert code == 0
    assert "skip dlq offset 5 (db_rejected, from p2@12" in out
    assert out.splitlines()[-1] == (
        "replay: selected 4, skipped conflicts 0, skipped stubs 0, duplicates skipped 1, already stored 0, "
        "other target 0, sent 3, failed 0"
    )
    sent = read_topic(kafka_brokers, letters.orders)
    assert len(sent) == 3  # the repeated letter of p2@12 went once
    by_key = _by_key(sent)
    assert {k: m.value() for k, m in by_key.items()} == {
        UID_A.encode(): VALUE_A,
        UID_B.encode(): VALUE_B,
        UID_D.encode(): VALUE_D,
    }
    assert raw_headers(by_key[UID_A.encode()]) == [
        ("created-at-ms", b"1700000000000"),
        ("dlq.replay.count", b"1"),
    ]
    assert raw_headers(by_key[UID_D.encode()]) == [("created-at-ms", b"1"), ("dlq.replay.count", b"2")]

    # The replayed A is refused again; its new letter carries count 1, so replaying it makes 2.
    again = by_key[UID_A.encode()]
    p, offset = again.partition() or 0, again.offset() or 0
    refused_again = Spec("db_rejected", p, offset, again.value(), again.key(), tuple(raw_headers(again)))
    put_letters(kafka_brokers, letters, [refused_again])
    code, out, _ = run(
        capsys, kafka_brokers, letters, "replay", "--to-topic", letters.orders, "--uid", UID_A,
        "--partition", str(p), "--from-offset", str(offset), "--to-offset", str(offset),
    )  # fmt: skip
    assert code == 0
    assert (
        out.splitlines()[-1]
        == "replay: selected 1, skipped conflicts 0, skipped stubs 0, duplicates skipped 0, "
        "already stored 0, "
        "other target 0, sent 1, failed 0"
    )
    copies_of_a = [m for m in read_topic(kafka_brokers, letters.orders) if m.key() == UID_A.encode()]
    assert [m.value() for m in copies_of_a] == [VALUE_A, VALUE_A]
    assert sorted(raw_headers(m) for m in copies_of_a) == [
        [("created-at-ms", b"1700000000000"), ("dlq.replay.count", b"1")],
        [("created-at-ms", b"1700000000000"), ("dlq.replay.count", b"2")],
    ]


def test_conflict_is_refused_without_force_and_sent_with_it(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics
) -> None:
    args = ("replay", "--to-topic", letters.orders, "--reason", "conflict")
    code, out, _ = run(capsys, kafka_brokers, letters, *args)
    assert code == 0
    assert "skip dlq offset 4 (conflict" in out
    assert "the stored order wins" in out
    assert out.splitlines()[-1].endswith(
        "skipped conflicts 1, skipped stubs 0, duplicates skipped 0, already stored 0, other target 0, "
        "sent 0, failed 0"
    )
    assert sum(partition_ends(kafka_brokers, letters.orders).values()) == 0

    code, out, _ = run(capsys, kafka_brokers, letters, *args, "--force")
    assert code == 0
    assert out.splitlines()[-1].endswith(
        "skipped conflicts 0, skipped stubs 0, duplicates skipped 0, already stored 0, other target 0, "
        "sent 1, failed 0"
    )
    [sent] = read_topic(kafka_brokers, letters.orders)
    assert (sent.key(), sent.value()) == (UID_C.encode(), VALUE_C)


def test_missing_topic_or_unreachable_broker_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics
) -> None:
    code = main(["list", "--brokers", kafka_brokers, "--dlq-topic", "no-such-topic-dlq"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err == f'l0-dlq: topic "no-such-topic-dlq" does not exist on {kafka_brokers}\n'

    code, out, err = run(capsys, kafka_brokers, letters, "replay", "--to-topic", "no-such-orders")
    assert (code, out) == (2, "")
    assert err == f'l0-dlq: topic "no-such-orders" does not exist on {kafka_brokers}\n'

    code = main(["show", "0", "--brokers", "127.0.0.1:1", "--dlq-topic", letters.dlq])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith("l0-dlq: cannot reach Kafka at 127.0.0.1:1: ")
    assert err.count("\n") == 1


def test_brokers_and_topics_default_to_the_service_settings_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kafka_brokers: str,
    letters: Topics,
) -> None:
    monkeypatch.setenv("KAFKA_BROKERS", kafka_brokers)
    monkeypatch.setenv("KAFKA_TOPIC", letters.orders)
    monkeypatch.setenv("KAFKA_DLQ_TOPIC", letters.dlq)
    assert main(["list", "--reason", "conflict"]) == 0
    assert sorted(rows(capsys.readouterr().out)) == [4]

    monkeypatch.delenv("KAFKA_DLQ_TOPIC")  # the service's default: <topic>.dlq
    assert main(["replay", "--dry-run", "--uid", UID_A]) == 0
    out = capsys.readouterr().out
    assert f"would send dlq offset 2 (db_rejected, from p2@12, order_uid {UID_A}) -> {letters.orders} " in out


@pytest.fixture
def stub(kafka_brokers: str, topics: Topics, db: str) -> Iterator[tuple[Topics, bytes]]:
    """One stub letter in the dead-letter topic, written by the service's own sink: a topic that
    takes at most 50,000 bytes per message and a 300,000-byte refused value."""
    small = Topics(topics.orders, f"{topics.dlq}-small", topics.group)
    ensure_topics(kafka_brokers, [TopicSpec(small.dlq, 1, config=(("max.message.bytes", "50000"),))])
    value = b"\xff" * 300_000
    inbound = Inbound(topics.orders, 5, 42, b"k", value, (("created-at-ms", b"1"),), 1700000000000, 1)
    sink = KafkaDeadLetterSink(
        kafka_brokers,
        small.dlq,
        group=topics.group,
        version="t",
        max_message_bytes=1_048_576,
        max_error_bytes=4096,
    )
    (sent,) = sink.send([DeadLetter(inbound, DeadLetterReason.UNDECODABLE, "message is 300000 bytes", 1)])
    assert sent.truncated is not None
    yield small, value
    delete_topics(kafka_brokers, [small.dlq])


def test_stub_letters_are_marked_in_the_list_and_explained_by_show(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, stub: tuple[Topics, bytes]
) -> None:
    topics, value = stub
    code, out, _ = run(capsys, kafka_brokers, topics, "list")
    assert code == 0
    assert "[stub of 300000 bytes] message is 300000 bytes" in rows(out)[0]
    assert "1 of them are stub letters" in out
    code, out, _ = run(capsys, kafka_brokers, topics, "show", "0")
    assert code == 0
    assert "STUB LETTER" in out
    assert f"The original value was 300000 bytes, SHA-256 {hashlib.sha256(value).hexdigest()}" in out
    assert f"still at {topics.orders} partition 5 offset 42" in out
    assert "value: 1024 bytes, not UTF-8" in out


def test_replay_refuses_stub_letters_even_with_force(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, stub: tuple[Topics, bytes]
) -> None:
    topics, _ = stub
    code, out, _ = run(capsys, kafka_brokers, topics, "replay", "--to-topic", topics.orders, "--force")
    assert code == 0
    assert "a stub letter (the original value of 300000 bytes did not fit the dead-letter topic)" in out
    assert "stub letters are never replayed" in out
    assert out.splitlines()[-1].endswith(
        "skipped stubs 1, duplicates skipped 0, already stored 0, other target 0, sent 0, failed 0"
    )
    assert sum(partition_ends(kafka_brokers, topics.orders).values()) == 0  # nothing was sent


# --- where replays go, and what is not sent again ---------------------------------------------------------


def test_replay_goes_to_each_letters_original_topic_by_default(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics
) -> None:
    code, out, _ = run(capsys, kafka_brokers, letters, "replay", "--reason", "db_rejected")
    assert code == 0
    assert f"-> {letters.orders} with dlq.replay.count=1" in out
    assert sorted(m.key() or b"" for m in read_topic(kafka_brokers, letters.orders)) == sorted(
        [UID_A.encode(), UID_B.encode()]
    )


def test_another_target_needs_to_topic_and_force_and_the_dlq_is_never_one(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics
) -> None:
    other = f"{letters.orders}-other"
    ensure_topics(kafka_brokers, [TopicSpec(other, 1)])
    try:
        args = ("replay", "--reason", "db_rejected", "--to-topic", other)
        code, out, _ = run(capsys, kafka_brokers, letters, *args)
        assert code == 0
        assert f"not sent: it came from {letters.orders}, not {other} (use --force)" in out
        assert "other target 2, sent 0" in out.splitlines()[-1]
        assert sum(partition_ends(kafka_brokers, other).values()) == 0
        code, out, _ = run(capsys, kafka_brokers, letters, *args, "--force")
        assert (code, sum(partition_ends(kafka_brokers, other).values())) == (0, 2)
        for forced in ((), ("--force",)):
            code, out, err = run(capsys, kafka_brokers, letters, "replay", "--to-topic", letters.dlq, *forced)
            assert (code, out) == (2, "")
            assert err == f"l0-dlq: --to-topic {letters.dlq} is the dead-letter topic: never a target\n"
    finally:
        delete_topics(kafka_brokers, [other])


def test_a_letter_naming_the_dead_letter_topic_or_no_topic_as_origin_is_not_sent(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, topics: Topics, db: str
) -> None:
    producer = Producer({"bootstrap.servers": kafka_brokers})
    producer.produce(
        topics.dlq, key=b"k1", value=VALUE_A, headers=[("dlq.original.topic", topics.dlq.encode())]
    )
    producer.produce(topics.dlq, key=b"k2", value=VALUE_B, headers=[("dlq.reason", b"db_rejected")])
    assert producer.flush(30) == 0
    code, out, _ = run(capsys, kafka_brokers, topics, "replay", "--force")
    assert code == 0
    assert "its original topic is the dead-letter topic itself" in out
    assert "does not name its original topic" in out
    assert sum(partition_ends(kafka_brokers, topics.dlq).values()) == 2  # nothing was added to it
    assert sum(partition_ends(kafka_brokers, topics.orders).values()) == 0


def test_a_stored_order_is_skipped_in_every_later_run(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics, db: str
) -> None:
    """The service stored A since its letter was written (the cause was fixed and it was sent again):
    no run sends it again; B, stored with other content, is still sent (the service calls it)."""
    with ConnectionPool(db, min_size=1, max_size=1) as pool:
        stored_b = json.loads(VALUE_B)
        stored_b["customer_id"] = "someone else"
        PostgresOrderWriter(pool).write_batch(
            [
                OrderRecord.of(Order.model_validate_json(VALUE_A)),
                OrderRecord.of(Order.model_validate_json(json.dumps(stored_b))),
            ]
        )
    for _ in range(2):
        code, out, _ = run(capsys, kafka_brokers, letters, "replay", "--reason", "db_rejected")
        assert code == 0
        assert (
            "skip dlq offset 2 (db_rejected, from p2@12, order_uid " + UID_A + "): its order is stored" in out
        )
        assert "already stored 1" in out.splitlines()[-1]
    assert [m.key() for m in read_topic(kafka_brokers, letters.orders)] == [UID_B.encode(), UID_B.encode()]


def test_a_message_refused_again_after_a_replay_is_sent_once_with_the_next_count(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics
) -> None:
    """Run 1 sends A; the cause is not fixed, so A is refused again: a second letter, same key and value,
    another origin. Run 2 must send A once (not once per letter, doubling each run), counted 2."""
    first = ("replay", "--uid", UID_A)
    assert run(capsys, kafka_brokers, letters, *first)[0] == 0
    [again] = read_topic(kafka_brokers, letters.orders)
    refused = Spec("db_rejected", again.partition() or 0, again.offset() or 0, again.value(), again.key(),
                   tuple(raw_headers(again)))  # fmt: skip
    put_letters(kafka_brokers, letters, [refused])
    code, out, _ = run(capsys, kafka_brokers, letters, *first)
    assert code == 0
    assert out.count("send dlq offset") == 1
    assert "skip dlq offset 7 (db_rejected" in out  # the letter of the second refusal repeats offset 2
    copies = [m for m in read_topic(kafka_brokers, letters.orders) if m.key() == UID_A.encode()]
    assert [dict(raw_headers(m))["dlq.replay.count"] for m in copies] == [b"1", b"2"]


def test_reindex_fills_the_console_read_model_once(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics, db: str
) -> None:
    """Letters written before the read model existed: one row per origin (letter 5 repeats letter 2)."""
    code, out, err = run(capsys, kafka_brokers, letters, "reindex")
    assert code == 0, err
    assert (
        out.strip()
        == "reindex: read 7 letters, added 6 rows (1 indexed already, 0 without an origin or a known reason)"
    )
    code, out, _ = run(capsys, kafka_brokers, letters, "reindex")
    assert out.strip().startswith("reindex: read 7 letters, added 0 rows (7 indexed already")
    with psycopg.connect(db) as conn:
        groups: dict[str, int] = dict(
            conn.execute("SELECT group_key, letters FROM dead_letter_groups").fetchall()
        )
        places = conn.execute(
            "SELECT dlq_partition, dlq_offset FROM dead_letters ORDER BY dlq_offset"
        ).fetchall()
    assert groups["db_rejected · refused by PostgreSQL"] == 2
    assert groups["undecodable · not UTF-8"] == 1
    assert groups["processing_error · RaiseException"] == 1
    assert [offset for _, offset in places] == [0, 1, 2, 3, 4, 6]


def test_revalidate_runs_the_current_rules_over_the_selected_letters(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, letters: Topics
) -> None:
    code, out, err = run(
        capsys, kafka_brokers, letters, "revalidate", "--reason", "db_rejected", "--reason", "undecodable"
    )
    assert code == 0, err
    assert out.splitlines()[0] == (
        "re-validate: chosen 4, fetched 4, would store 3, already stored 0, would conflict 0, "
        "stubs 0, still failing 1"
    )
    assert out.splitlines()[1].split(maxsplit=1) == ["1", "undecodable · not UTF-8"]


def test_only_letters_of_committed_transactions_are_listed_shown_and_replayed(
    capsys: pytest.CaptureFixture[str], kafka_brokers: str, topics: Topics, db: str
) -> None:
    """The service writes letters in transactions (docs/dlq.md#exactly-once): a letter of an aborted
    transaction was never a fact. The tool reads read_committed, and the markers after the last
    letter do not keep it waiting for an offset that never comes."""
    producer = Producer({"bootstrap.servers": kafka_brokers, "transactional.id": f"{topics.group}-txn"})
    producer.init_transactions(30)
    for spec, commit in ((SPECS[0], True), (SPECS[1], False), (SPECS[4], True)):
        producer.begin_transaction()
        inbound = Inbound(
            topics.orders, spec.partition, spec.offset, spec.key, spec.value, spec.headers, 1, 1
        )
        headers = letter_headers(
            DeadLetter(inbound, DeadLetterReason(spec.reason), spec.error, 1), topics.group, "test", 4096
        )
        producer.produce(topics.dlq, key=spec.key, value=spec.value, headers=headers)
        assert producer.flush(30) == 0  # written to the log, aborted or not (an abort purges unsent ones)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    code, out, _ = run(capsys, kafka_brokers, topics, "list")
    assert code == 0
    listed = rows(out)
    assert [line.split()[1] for line in listed.values()] == ["invalid", "conflict"]  # not the aborted one
    aborted = 2  # offset 0: the first letter, 1: its marker, 2: the aborted letter, 3: its marker
    code, out, err = run(capsys, kafka_brokers, topics, "show", str(aborted))
    assert code != 0, out
    assert "no letter at offset" in err
    code, out, _ = run(capsys, kafka_brokers, topics, "replay", "--dry-run", "--force")
    assert code == 0
    assert "undecodable" not in out
