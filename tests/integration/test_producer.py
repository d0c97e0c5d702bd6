"""The producer CLI against the real broker: what lands in the topic is exactly what the file holds.

Each test gets fresh topics from conftest; messages are read back with a real consumer, and the topic's
high watermarks prove that nothing beyond the expected messages was written.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from internal.tools.producer import main
from tests.conftest import Topics
from tests.support import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "cmd" / "producer.py"
CANONICAL = ROOT / "tests" / "fixtures" / "order-canonical.json"


def write_gen_like_file(path: Path, count: int) -> dict[str, str]:
    """gen_orders.py's layout (an array, one compact order per line); returns order_uid -> line."""
    canonical = json.loads(CANONICAL.read_text(encoding="utf-8"))
    run = uuid.uuid4().hex[:8]
    lines = {}
    for i in range(count):
        uid = f"it{run}{i:04d}"
        order = canonical | {
            "order_uid": uid,
            "delivery": canonical["delivery"] | {"name": f"Тест Тестов {i}"},
        }
        lines[uid] = json.dumps(order, ensure_ascii=False, separators=(",", ":"))
    path.write_text("[\n" + ",\n".join(lines.values()) + "\n]\n", encoding="utf-8")
    return lines


def produce(kafka_brokers: str, topics: Topics, path: Path, *args: str) -> int:
    return main(["--file", str(path), "--topic", topics.orders, "--brokers", kafka_brokers, *args])


def consume(kafka_brokers: str, topics: Topics, count: int, timeout_s: float = 30.0) -> list[Any]:
    """Read ``count`` messages from the orders topic and check that the topic holds no more than that."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_brokers,
            "group.id": topics.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    got: list[Any] = []

    def probe() -> bool:
        msg = consumer.poll(0.2)
        if msg is not None:
            assert msg.error() is None, msg.error()
            got.append(msg)
        return len(got) >= count

    try:
        consumer.subscribe([topics.orders])
        if count:
            wait_until(probe, timeout_s=timeout_s, what=f"{count} messages on {topics.orders}", interval_s=0)
        written = count_written(consumer, topics.orders)
    finally:
        consumer.close()
    assert written == count
    return got


def count_written(client: Consumer, topic: str) -> int:
    """The messages in ``topic``: the sum of its partitions' high watermarks.

    Right after a topic is created the broker may still answer NOT_LEADER for a partition it is taking over,
    so a failed look-up is asked again.
    """

    def probe() -> tuple[int] | None:
        try:
            partitions = client.list_topics(topic, timeout=10).topics[topic].partitions
            highs = [
                client.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
            ]
        except KafkaException:
            return None
        return (sum(highs),)  # a tuple, so that an empty topic's 0 still ends the wait

    return wait_until(probe, timeout_s=30, what=f"the high watermarks of {topic}")[0]


def created_at_ms(msg: Any) -> int:
    headers = dict(msg.headers() or [])
    return int(headers["created-at-ms"].decode("ascii"))


def test_gen_file_is_replayed_verbatim_keyed_by_order_uid(
    kafka_brokers: str, topics: Topics, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = write_gen_like_file(tmp_path / "mock.json", 7)
    before_ms = time.time_ns() // 1_000_000
    assert produce(kafka_brokers, topics, tmp_path / "mock.json", "--rps", "0") == 0
    after_ms = time.time_ns() // 1_000_000

    messages = consume(kafka_brokers, topics, 7)
    assert {m.key(): m.value() for m in messages} == {k.encode(): v.encode() for k, v in lines.items()}
    for m in messages:
        assert before_ms <= created_at_ms(m) <= after_ms
    assert "producer: done: sent=7 delivered=7 failed=0" in capsys.readouterr().err


def test_invalid_json_and_gibberish_follow_the_orders(
    kafka_brokers: str, topics: Topics, tmp_path: Path
) -> None:
    lines = write_gen_like_file(tmp_path / "mock.json", 3)
    # 100 msg/s puts the messages 10 ms apart, so their created-at-ms show the order they were sent in.
    args = ("-rps", "100", "-invalid-json", "2", "-gibberish", "3")
    assert produce(kafka_brokers, topics, tmp_path / "mock.json", *args) == 0

    orders, invalid, gibberish = [], [], []
    for m in consume(kafka_brokers, topics, 8):
        try:
            text = m.value().decode("utf-8")
        except UnicodeDecodeError:
            gibberish.append(m)
            continue
        if text in lines.values():
            orders.append(m)
            continue
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        assert any(line.startswith(text) for line in lines.values())
        invalid.append(m)
    assert (len(orders), len(invalid), len(gibberish)) == (3, 2, 3)
    assert all(m.key() is None for m in invalid + gibberish)
    sent_at = [sorted(created_at_ms(m) for m in group) for group in (orders, invalid, gibberish)]
    assert sent_at[0][-1] < sent_at[1][0] <= sent_at[1][-1] < sent_at[2][0]


def test_canonical_pretty_printed_fixture_is_one_verbatim_message(kafka_brokers: str, topics: Topics) -> None:
    assert produce(kafka_brokers, topics, CANONICAL, "--rps", "0") == 0
    (message,) = consume(kafka_brokers, topics, 1)
    assert message.value() == CANONICAL.read_bytes().strip()
    assert message.key() == b"b563feb7b2b84b6test"


def test_missing_topic_is_one_clear_line_and_exit_2(
    kafka_brokers: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_gen_like_file(tmp_path / "mock.json", 1)
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    code = main(["-file", str(tmp_path / "mock.json"), "-topic", missing, "-brokers", kafka_brokers])
    assert code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f'producer: topic "{missing}" does not exist on {kafka_brokers} '
        "(the service creates it at start; or run make topics)"
    ]


def test_file_that_is_not_json_names_file_and_position_exit_2(
    kafka_brokers: str, topics: Topics, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("\n  these are not orders\n", encoding="utf-8")
    assert produce(kafka_brokers, topics, path) == 2
    err = capsys.readouterr().err
    assert f"producer: {path}: not valid JSON: Expecting value at line 2 column 3" in err
    assert "sent=0" in err
    assert "Traceback" not in err
    consume(kafka_brokers, topics, 0)


def test_missing_file_exit_2(kafka_brokers: str, topics: Topics, capsys: pytest.CaptureFixture[str]) -> None:
    assert produce(kafka_brokers, topics, Path("/nonexistent/orders.json")) == 2
    assert (
        "producer: cannot read /nonexistent/orders.json: No such file or directory" in capsys.readouterr().err
    )


def test_ctrl_c_flushes_what_was_sent_and_exits_130(
    kafka_brokers: str, topics: Topics, tmp_path: Path
) -> None:
    write_gen_like_file(tmp_path / "mock.json", 100)
    # The script with topic and brokers from the environment, run from elsewhere, like a user would.
    env = os.environ | {"KAFKA_TOPIC": topics.orders, "KAFKA_BROKERS": kafka_brokers}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "-rps", "20"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = Consumer({"bootstrap.servers": kafka_brokers, "group.id": f"{topics.group}-probe"})

        try:
            wait_until(
                lambda: count_written(client, topics.orders) >= 5,
                timeout_s=30,
                what="the first messages from the producer script",
            )
        finally:
            client.close()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    summary = re.search(r"producer: interrupted: sent=(\d+) delivered=(\d+) failed=0 ", err)
    assert summary, err
    sent, delivered = int(summary[1]), int(summary[2])
    assert 5 <= sent < 100
    assert delivered == sent
    consume(kafka_brokers, topics, sent)
