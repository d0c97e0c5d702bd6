"""Secrets never print: the service runs with a distinctive database password, and every line it, the
producer and l0-dlq write during the run - successes and failures, an unreachable database included -
and every page, API answer, health answer and /metrics are searched for it, in every spelling.

The local PostgreSQL checks passwords (scram-sha-256), so the test makes a role of its own with the
password (as the cluster's superuser, like scripts/postgres.sh does for the service's role) and drops
it afterwards; the role owns what the service creates in the test's schema.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.conftest import Topics
from tests.e2e.helpers import wait_committed_to_end
from tests.orders import order_doc
from tests.service_proc import ROOT, StartService, free_port
from tests.support import wait_until

pytestmark = pytest.mark.e2e
PASSWORD = f"Zq{uuid.uuid4().hex[:12]}-Secret"  # distinctive: found nowhere unless leaked


def spellings(secret: str) -> list[str]:
    return sorted({secret, quote(secret, safe=""), json.dumps(secret)[1:-1]})


def as_superuser(*sql_text: str, port: str, database: str = "postgres") -> None:
    """Statements as the cluster's superuser, on the cluster of the port the test was given."""
    command = ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", port]
    command += ["-d", database]
    for statement in sql_text:
        command += ["-c", statement]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        pytest.fail("this test makes a PostgreSQL role: it needs root and the local cluster (make infra-up)")
    assert result.returncode == 0, f"psql as postgres failed: {result.stderr}"


@pytest.fixture
def secret_dsn(pg_dsn: str, schema_dsn: str) -> Iterator[str]:
    """The test's schema, reached as a role of its own whose password is PASSWORD."""
    role = f"l0_secret_{uuid.uuid4().hex[:10]}"
    schema = str(conninfo_to_dict(schema_dsn)["options"]).split("search_path=", 1)[1]
    database = str(conninfo_to_dict(pg_dsn).get("dbname", "orders"))
    port = str(conninfo_to_dict(pg_dsn).get("port") or 5432)
    as_superuser(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'", port=port)
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(
                    sql.Identifier(schema), sql.Identifier(role)
                )
            )
        yield make_conninfo(schema_dsn, user=role, password=PASSWORD)
    finally:
        as_superuser(f"DROP OWNED BY {role}", f"DROP ROLE {role}", port=port, database=database)


class Transcript:
    """Everything the run wrote or answered, to be searched for the password at the end."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, str]] = []

    def add(self, what: str, text: str | bytes) -> None:
        self.parts.append((what, text.decode("utf-8", "replace") if isinstance(text, bytes) else text))

    def run(self, env: dict[str, str], script: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, str(ROOT / "cmd" / script), *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.add(f"{script} {' '.join(args)}", done.stdout + done.stderr)
        return done


def test_no_line_page_or_metric_shows_the_database_password(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    secret_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    base = {**os.environ, **service_env, "POSTGRES_DSN": secret_dsn}
    unreachable = make_conninfo(secret_dsn, host="127.0.0.1", port="1")
    seen = Transcript()

    checked = seen.run(base, "service.py", "check-config")
    assert checked.returncode == 0
    assert "password=********" in checked.stdout
    assert (
        seen.run(
            {**base, "POSTGRES_DSN": f"postgresql://u:{quote(PASSWORD)}%zz@db/x"},
            "service.py",
            "check-config",
        ).returncode
        == 2
    )
    assert seen.run({**base, "POSTGRES_DSN": unreachable}, "service.py", "migrate").returncode == 1

    service = start_service(
        {"POSTGRES_DSN": secret_dsn, **{k: v for k, v in service_env.items() if k != "POSTGRES_DSN"}}
    )
    docs = [order_doc(900 + i, seed=23) for i in range(4)]
    docs[3]["sm_id"] = 0  # invalid: a letter for l0-dlq to list, show and replay
    orders = tmp_path / "orders.json"
    orders.write_text(json.dumps(docs), encoding="utf-8")
    sent = seen.run(
        base, "producer.py", "-file", str(orders), "-topic", topics.orders, "-brokers", kafka_brokers
    )
    assert sent.returncode == 0
    wait_committed_to_end(
        kafka_brokers, topics.orders, topics.group, len(docs), timeout_s=60, services=[service]
    )
    uid = docs[0]["order_uid"]
    pages = ["/", f"/orders/{uid}", f"/api/orders/{uid}", f"/order/{uid}", f"/search?q={uid[:4]}",
             "/orders/NoSuchOrder1", "/api/orders/bad!", "/readyz", "/healthz", "/metrics",
             "/openapi.json"]  # fmt: skip
    for path in pages:
        answer = service.get(path)
        assert answer.status < 500, path
        seen.add(path, f"{answer.status} {dict(answer.headers)} ".encode() + answer.body)
    dlq = ("--brokers", kafka_brokers, "--dlq-topic", topics.dlq)
    assert seen.run(base, "dlq.py", "list", *dlq).returncode == 0
    assert seen.run(base, "dlq.py", "show", "0", *dlq).returncode == 0
    assert seen.run(base, "dlq.py", "replay", "--dry-run", *dlq).returncode == 0
    assert seen.run({**base, "POSTGRES_DSN": unreachable}, "dlq.py", "replay", *dlq).returncode == 2
    assert service.stop() == 0
    seen.add("service log", "\n".join(service.log_lines()))

    # The database unreachable: readiness says so in fixed words, the driver's text is in the log only.
    down_env = {**service_env, "POSTGRES_DSN": unreachable, "POSTGRES_MIGRATE_ON_START": "false"}
    down = start_service({**down_env, "HTTP_PORT": str(free_port())}, name="down", ready=False)

    def unready() -> bytes | None:
        down.assert_alive()
        try:
            answer = down.get("/readyz", timeout_s=2)
        except OSError:
            return None
        return answer.body if answer.status == 503 and b'"unreachable"' in answer.body else None

    body = wait_until(unready, timeout_s=30, what="readiness naming the database unreachable")
    seen.add("/readyz while down", body)
    assert b"port 1" not in body
    wait_until(
        lambda: any('"db_probe_failed"' in line for line in down.log_lines()), timeout_s=30, what="the log"
    )
    assert down.stop() == 0
    seen.add("down service log", "\n".join(down.log_lines()))

    assert len(seen.parts) > 20
    for what, text in seen.parts:
        for spelling in spellings(PASSWORD):
            assert spelling not in text, f"the password shows in {what}"
