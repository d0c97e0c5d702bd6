"""Readiness's database check against the real PostgreSQL: a recent answer, wrong at once when the
database refuses, and wrong after a while when it stops answering."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from internal.store.observe import DbObserver
from internal.store.probe import DatabaseProbe
from tests.support import wait_until

pytestmark = pytest.mark.integration


def test_a_reachable_database_is_no_problem(pg_dsn: str) -> None:
    probe = DatabaseProbe(pg_dsn, DbObserver())
    assert probe.problem() == "not probed yet"
    conn = probe.probe_once(None)
    assert conn is not None
    assert probe.problem() is None
    conn.close()


def test_an_unreachable_database_is_a_problem_at_once_in_fixed_words() -> None:
    """Readiness answers anyone: it says "unreachable"; the driver's text (host, port) is logged, once."""
    probe = DatabaseProbe("postgresql://orders:orders@127.0.0.1:1/orders", DbObserver(), timeout_s=1)
    with capture_logs() as logs:
        assert probe.probe_once(None) is None
        assert probe.probe_once(None) is None
    assert probe.problem() == "unreachable"
    (failed,) = [e for e in logs if e["event"] == "db_probe_failed"]
    assert "port 1 failed" in failed["error"]
    assert failed["error_type"] == "OperationalError"


def test_a_database_that_stops_answering_is_a_problem_after_stale_after_s(pg_dsn: str) -> None:
    hang = threading.Event()

    class Hanging(psycopg.Connection[tuple[object, ...]]):
        def execute(self, *args: Any, **kwargs: Any) -> Any:
            if hang.is_set():
                time.sleep(10)  # a frozen server: no error ever comes back
            return super().execute(*args, **kwargs)

    probe = DatabaseProbe(pg_dsn, DbObserver(), interval_s=0.05, stale_after_s=0.5, connect=Hanging.connect)
    probe.start()
    wait_until(lambda: probe.problem() is None, timeout_s=10, what="a first answer")
    hang.set()
    problem = wait_until(probe.problem, timeout_s=10, what="the stale answer to count as a problem")
    assert problem.startswith("no answer for")
    probe.stop()
