"""The database check of readiness: a recent answer, kept by a thread with a connection of its own.

``/readyz`` must answer at once and truthfully while searches and look-ups keep the event loop and
the pools busy. So readiness never queries the database itself: a daemon thread runs ``SELECT 1`` on
a connection of its own about once a second and keeps the outcome; ``problem()`` reads it. An answer
older than ``stale_after_s`` - a query that hangs, a thread that stopped - is a problem in itself, so
a database that stops answering turns readiness red within that time even when no error comes back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import structlog

from internal.pkg.exc_text import first_line
from internal.store.observe import DbObserver

log = structlog.get_logger(component="store")
UNREACHABLE = "unreachable"


class DatabaseProbe:
    def __init__(
        self,
        dsn: str,
        observer: DbObserver,
        *,
        interval_s: float = 1.0,
        stale_after_s: float = 5.0,
        timeout_s: float = 2.0,
        application_name: str = "l0-orders-probe",
        connect: Callable[..., psycopg.Connection[tuple[object, ...]]] = psycopg.connect,
    ) -> None:
        self._dsn = dsn
        self._observer = observer
        self._interval_s = interval_s
        self._stale_after_s = stale_after_s
        self._timeout_s = timeout_s
        self._application_name = application_name
        self._connect = connect
        self._last_ok: float | None = None
        self._error: str | None = "not probed yet"
        self._logged: str | None = None  # the failure last logged, so that a long outage logs once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="db-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def problem(self) -> str | None:
        """None when the last probe answered, within ``stale_after_s``; else what is wrong."""
        if self._error is not None:
            return self._error
        age = time.monotonic() - (self._last_ok or 0.0)
        return f"no answer for {age:.0f}s" if age >= self._stale_after_s else None

    def probe_once(
        self, conn: psycopg.Connection[tuple[object, ...]] | None
    ) -> psycopg.Connection[tuple[object, ...]] | None:
        """One ``SELECT 1``; returns the connection to use next time (None after a failure)."""
        try:
            if conn is None or conn.closed:
                conn = self._connect(
                    self._dsn,
                    autocommit=True,
                    connect_timeout=max(1, int(self._timeout_s)),
                    application_name=self._application_name,
                    options=f"-c statement_timeout={int(self._timeout_s * 1000)}",
                )
            conn.execute("SELECT 1")
        except psycopg.Error as exc:
            # Readiness shows fixed words; the driver's text (host, port, user) goes to the log only,
            # once per change of it, not once a second.
            detail = first_line(exc)
            if detail != self._logged:
                log.warning("db_probe_failed", error_type=type(exc).__name__, error=detail)
                self._logged = detail
            self._error = UNREACHABLE
            self._observer.up(False)
            if conn is not None:
                conn.close()
            return None
        if self._logged is not None:
            log.info("db_probe_recovered")
            self._logged = None
        self._last_ok, self._error = time.monotonic(), None
        self._observer.up(True)
        return conn

    def _run(self) -> None:
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        while not self._stop.is_set():
            conn = self.probe_once(conn)
            self._stop.wait(self._interval_s)
        if conn is not None:
            conn.close()
