"""Every command finds its settings the same way (internal/config/cli.py): ``--config`` > ``$CONFIG_FILE`` >
``./config.yaml``, then the environment with the original's names, and its own flags over both.

Each test starts from an environment without any setting and gives a tool only a config file that names
the test's broker address (spelled ``localhost`` where the default says ``127.0.0.1``), topics and
database, then checks that the tool used them: the messages are on the test's topic, the letters read
from the test's dead-letter topic, the stored orders found in the test's schema. A file naming a closed
port shows that no command falls back to the default broker.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from psycopg_pool import ConnectionPool

from internal.config.loader import environment_names
from internal.domain.order import Order
from internal.domain.records import OrderRecord
from internal.store import migrations
from internal.store.writer import PostgresOrderWriter
from internal.tools import dlq, producer
from tests.conftest import Topics
from tests.e2e.helpers import read_topic
from tests.integration.test_dlq_tool import Spec, put_letters
from tests.orders import encode, order_doc
from tests.service_proc import ROOT, SERVICE

pytestmark = pytest.mark.integration

HOW = ["--config", "CONFIG_FILE", "./config.yaml"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the machine; the working directory is the test's own (for ./config.yaml)."""
    for name in environment_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def other_spelling(brokers: str) -> str:
    """The same broker under an address that is not the default's text."""
    return brokers.replace("127.0.0.1", "localhost")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_file(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch, settings: Mapping[str, object]
) -> list[str]:
    """Write the settings where ``how`` says and return the command-line arguments that go with it."""
    path = tmp_path / "config.yaml" if how == "./config.yaml" else tmp_path / "elsewhere" / "settings.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    if how == "CONFIG_FILE":
        monkeypatch.setenv("CONFIG_FILE", str(path))
    return ["--config", str(path)] if how == "--config" else []


def orders_file(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    docs = [order_doc(i, seed=77) for i in range(n)]
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(docs), encoding="utf-8")
    return path, [d["order_uid"] for d in docs]


@pytest.mark.parametrize("how", HOW)
def test_producer_sends_to_the_broker_and_topic_of_the_config_file(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_brokers: str, topics: Topics
) -> None:
    kafka = {"brokers": other_spelling(kafka_brokers), "topic": topics.orders}
    args = config_file(tmp_path, how, monkeypatch, {"kafka": kafka})
    path, uids = orders_file(tmp_path, 3)
    assert producer.main(["-file", str(path), "-rps", "0", *args]) == 0
    assert sorted((m.key() or b"").decode() for m in read_topic(kafka_brokers, topics.orders)) == sorted(uids)


def test_producer_flags_override_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_brokers: str, topics: Topics
) -> None:
    args = config_file(tmp_path, "--config", monkeypatch, {"kafka": {"topic": "not-this-one"}})
    monkeypatch.setenv("KAFKA_BROKERS", f"127.0.0.1:{closed_port()}")
    path, uids = orders_file(tmp_path, 2)
    code = producer.main(
        ["-file", str(path), "-rps", "0", *args, "-topic", topics.orders, "-brokers", kafka_brokers]
    )
    assert code == 0
    assert len(read_topic(kafka_brokers, topics.orders)) == len(uids)


def test_producer_honours_the_original_services_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_brokers: str, topics: Topics
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", other_spelling(kafka_brokers))
    monkeypatch.setenv("CONSUMER_TOPIC", topics.orders)
    path, uids = orders_file(tmp_path, 2)
    assert producer.main(["-file", str(path), "-rps", "0"]) == 0
    assert len(read_topic(kafka_brokers, topics.orders)) == len(uids)


@pytest.mark.parametrize("variable", ["KAFKA_BROKERS", "KAFKA_BOOTSTRAP_SERVERS"])
def test_producer_reports_the_broker_it_was_given_never_another(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv(variable, address)
    path, _ = orders_file(tmp_path, 1)
    assert producer.main(["-file", str(path)]) == 2
    assert f"producer: cannot reach Kafka at {address}" in capsys.readouterr().err


def test_producer_stops_on_a_bad_setting_like_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = config_file(tmp_path, "--config", monkeypatch, {"kafka": {"topic": "no spaces allowed"}})
    path, _ = orders_file(tmp_path, 1)
    with pytest.raises(SystemExit) as stop:
        producer.main(["-file", str(path), *args])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("config: kafka.topic: must be a Kafka topic name")


@pytest.mark.parametrize("how", HOW)
def test_dlq_tool_reads_the_letters_and_the_database_of_the_config_file(
    how: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kafka_brokers: str,
    topics: Topics,
    schema_dsn: str,
) -> None:
    """list reads the test's dead-letter topic (kafka.topic + '.dlq'); replay finds the stored order
    in the test's schema (postgres.dsn) and sends only the other one."""
    migrations.apply_pending(schema_dsn)
    stored, waiting = order_doc(1, seed=78), order_doc(2, seed=78)
    with ConnectionPool(schema_dsn, min_size=1, max_size=1) as pool:
        PostgresOrderWriter(pool).write_batch([OrderRecord.of(Order.model_validate_json(encode(stored)))])
    put_letters(
        kafka_brokers,
        topics,
        [
            Spec("db_rejected", 0, offset, encode(doc), doc["order_uid"].encode())
            for offset, doc in enumerate([stored, waiting])
        ],
    )
    settings = {
        "kafka": {"brokers": other_spelling(kafka_brokers), "topic": topics.orders},
        "postgres": {"dsn": schema_dsn},
    }
    args = config_file(tmp_path, how, monkeypatch, settings)

    assert dlq.main(["list", *args]) == 0
    assert "db_rejected" in capsys.readouterr().out
    assert dlq.main(["replay", *args]) == 0
    assert (
        capsys.readouterr()
        .out.splitlines()[-1]
        .endswith("already stored 1, other target 0, sent 1, failed 0")
    )
    assert [m.key() for m in read_topic(kafka_brokers, topics.orders)] == [waiting["order_uid"].encode()]


def test_dlq_tool_reports_the_broker_it_was_given_never_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    args = config_file(tmp_path, "--config", monkeypatch, {"kafka": {"brokers": address}})
    assert dlq.main(["list", *args]) == 2
    assert address in capsys.readouterr().err


@pytest.mark.parametrize("how", HOW)
def test_service_reads_the_same_file(how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = {
        "kafka": {"brokers": "localhost:19092", "topic": "orders-elsewhere"},
        "postgres": {"dsn": "postgresql://orders@localhost:15432/elsewhere"},
    }
    args = config_file(tmp_path, how, monkeypatch, settings)
    # A process of its own: the service configures logging for the whole process.
    shown = subprocess.run(
        [sys.executable, str(SERVICE), *args, "check-config"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "localhost:19092" in shown
    assert "orders-elsewhere" in shown
    assert "localhost:15432/elsewhere" in shown
