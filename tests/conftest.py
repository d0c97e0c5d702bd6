"""Fixtures that give each test its own Kafka topics and its own PostgreSQL schema.

Integration and e2e tests talk to the real broker and server started by ``make infra-up``. When either
is missing the test FAILS with a message saying what to start - it never skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from internal.app import topic_specs
from internal.config.aliases import DSN_PARTS, ENV_ALIASES
from internal.config.settings import KafkaSettings, Settings
from internal.pkg.kafka_topics import TopicSpec, delete_topics, ensure_topics
from tests.e2e.helpers import stack
from tests.service_proc import SERVICE, ServiceProcess, free_port

DEFAULT_BROKERS = "127.0.0.1:9092"
DEFAULT_DSN = "postgresql://orders:orders@127.0.0.1:5432/orders"
START_HINT = "start the local stack with `make infra-up` (or point {var} at a running server)"


@dataclass(frozen=True)
class Topics:
    orders: str
    dlq: str
    group: str


@pytest.fixture(scope="session")
def kafka_brokers() -> str:
    brokers = os.environ.get("KAFKA_BROKERS", DEFAULT_BROKERS)
    try:
        AdminClient({"bootstrap.servers": brokers}).list_topics(timeout=10)
    except KafkaException as exc:
        pytest.fail(f"Kafka is not reachable at {brokers} ({exc}); {START_HINT.format(var='KAFKA_BROKERS')}")
    return brokers


@pytest.fixture
def topics(kafka_brokers: str) -> Iterator[Topics]:
    """A fresh 6-partition orders topic, its dead-letter topic (sized like the service sizes it) and
    a consumer group name."""
    suffix = uuid.uuid4().hex[:10]
    names = Topics(
        orders=f"test-orders-{suffix}", dlq=f"test-orders-{suffix}.dlq", group=f"test-group-{suffix}"
    )
    specs = topic_specs(replace(Settings(), kafka=KafkaSettings(topic=names.orders, dlq_topic=names.dlq)))
    ensure_topics(kafka_brokers, specs)
    yield names
    delete_topics(kafka_brokers, [names.orders, names.dlq])


@pytest.fixture
def small_dlq(kafka_brokers: str) -> Iterator[str]:
    """A dead-letter topic that takes at most 200,000 bytes per message (an operator's setting)."""
    name = f"test-small-{uuid.uuid4().hex[:10]}.dlq"
    ensure_topics(kafka_brokers, [TopicSpec(name, 1, config=(("max.message.bytes", "200000"),))])
    yield name
    delete_topics(kafka_brokers, [name])


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    dsn = os.environ.get("POSTGRES_DSN", DEFAULT_DSN)
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {_safe(dsn)} ({exc}); {START_HINT.format(var='POSTGRES_DSN')}"
        )
    return dsn


@pytest.fixture
def schema_dsn(pg_dsn: str) -> Iterator[str]:
    """A DSN whose search_path is a new, empty schema - dropped again after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield make_conninfo(pg_dsn, options=f"-c search_path={schema}")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def app_name(topics: Topics) -> str:
    """The application_name prefix of the service a test starts (its connections: <prefix>-writer ...)."""
    return f"l0-{topics.group}"


def _safe(dsn: str) -> str:
    params = conninfo_to_dict(dsn)
    params.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


@pytest.fixture
def service_env(schema_dsn: str, topics: Topics, kafka_brokers: str) -> dict[str, str]:
    """Environment for a service instance bound to this test's schema and topics."""
    return {
        "POSTGRES_DSN": schema_dsn,
        "KAFKA_BROKERS": kafka_brokers,
        "KAFKA_TOPIC": topics.orders,
        "KAFKA_DLQ_TOPIC": topics.dlq,
        "KAFKA_GROUP_ID": topics.group,
        # The test's own name in pg_stat_activity, so that it counts its service's connections only.
        "POSTGRES_APPLICATION_NAME": app_name(topics),
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "HTTP_PORT": str(free_port()),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        "CONSUMER_BATCH_MAX_WAIT_MS": "20",
        "CONSUMER_RETRY_MAX_MS": "1000",
        "CONFIG_FILE": "",
        # The original service's names, empty (= unset): exported in a developer's shell they would
        # otherwise disagree with the names above and stop every service a test starts.
        **{alias.original: "" for alias in ENV_ALIASES},
        **dict.fromkeys(DSN_PARTS, ""),
    }


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start service subprocesses; every one still running at the end of the test is killed."""
    started: list[ServiceProcess] = []

    def start(
        env: dict[str, str], name: str = "service", ready: bool = True, script: Path = SERVICE
    ) -> ServiceProcess:
        service = ServiceProcess(env, tmp_path / f"{name}-{len(started)}.log", script)
        started.append(service)
        if ready:
            service.wait_ready()
        return service

    yield start
    for service in started:
        if service.proc.poll() is None:
            service.kill()


@pytest.fixture
def postgres_restorer(pg_dsn: str) -> Iterator[None]:
    """For tests that stop PostgreSQL: whatever happens in the test, it is running again afterwards."""
    yield
    stack("postgres.sh", "start", pg_dsn)
