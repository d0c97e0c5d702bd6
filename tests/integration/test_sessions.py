"""The service's database sessions against the real PostgreSQL: the pools' configure callbacks give
every connection its statement timeout and keep PostgreSQL from JIT-compiling the warm-up's read."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from internal.domain.order import Order
from internal.domain.records import OrderRecord
from internal.store import migrations
from internal.store.reader import LATEST
from internal.store.sessions import configure_session
from internal.store.writer import PostgresOrderWriter
from tests.orders import order_doc

pytestmark = pytest.mark.integration


def explain_latest(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    # JIT's threshold at zero: any plan would be compiled where JIT is on.
    conn.execute("SET jit_above_cost = 0")
    plan = conn.execute("EXPLAIN (ANALYZE) " + LATEST, (1000,)).fetchall()  # COSTS OFF hides JIT
    return "\n".join(str(row[0]) for row in plan)


def test_sessions_never_jit_compile_and_carry_the_statement_timeout(schema_dsn: str) -> None:
    migrations.apply_pending(schema_dsn)
    records = [OrderRecord.of(Order.model_validate_json(json.dumps(order_doc(i)))) for i in range(3)]
    with ConnectionPool(schema_dsn, min_size=1, max_size=1, timeout=5) as pool:
        PostgresOrderWriter(pool).write_batch(records)  # JIT compiles expressions as rows flow
    with psycopg.connect(schema_dsn, autocommit=True) as control:
        available = control.execute("SELECT pg_jit_available()").fetchone()
        assert available == (True,), "this PostgreSQL has no JIT provider: the test proves nothing here"
        assert "JIT:" in explain_latest(control)  # the control: an unconfigured session compiles
    with psycopg.connect(schema_dsn, autocommit=True) as conn:
        configure_session(conn, 2500)
        assert "JIT:" not in explain_latest(conn)
        timeout = conn.execute("SHOW statement_timeout").fetchone()
        assert timeout == ("2500ms",)
