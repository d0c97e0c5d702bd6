"""How each of the service's database sessions is set up: the pools' ``configure`` callbacks.

Every session gets:

* ``statement_timeout``: the pool's time budget, enforced by PostgreSQL itself, so a statement that
  outlives its caller's budget is cancelled server-side, not left running.
* ``jit = off``: the service runs short OLTP statements and one long streamed read (the cache's
  warm-up), and PostgreSQL decides on JIT compilation by estimated cost alone. The warm-up's
  estimate is over the threshold whenever it reads many orders, and far over it on tables not yet
  analyzed (after a bulk load): compiling the query then took 0.3-0.6 s while the JIT-compiled
  expressions saved nothing, because the time goes to building JSON row by row. Measured: warm-up of
  10,000 orders on a fresh table 0.72-1.09 s with JIT, 0.25-0.28 s without; 100,000 analyzed
  2.50-2.90 s vs 2.15-2.36 s (docs/performance.md).

The API's look-up sessions also plan their one query once (``plan_cache_mode``; see
``internal/store/async_reader.py``). The warm-up's reads, one statement of seconds each, set a budget
of their own for their transaction (``set_transaction_statement_timeout``). ``set_config`` takes
parameters where ``SET`` cannot.
"""

from __future__ import annotations

from typing import Any

import psycopg

SESSION = "SELECT set_config('statement_timeout', %s, false), set_config('jit', 'off', false)"
LOOKUP_SESSION = SESSION + ", set_config('plan_cache_mode', 'force_generic_plan', false)"
# A statement budget for the current transaction only (the warm-up's long reads).
TRANSACTION_STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', %s, true)"


def configure_session(conn: psycopg.Connection[Any], statement_timeout_ms: int) -> None:
    """Set up a new connection of the writer or reader pool."""
    conn.execute(SESSION, (f"{statement_timeout_ms}ms",))


async def configure_lookup_session(conn: psycopg.AsyncConnection[Any], statement_timeout_ms: int) -> None:
    """Set up a new connection of the API's look-up pool."""
    await conn.execute(LOOKUP_SESSION, (f"{statement_timeout_ms}ms",))


def set_transaction_statement_timeout(cur: psycopg.Cursor[Any], timeout_ms: int) -> None:
    """Give the transaction ``cur`` is in a statement budget of its own; the session's comes back
    with the next transaction."""
    cur.execute(TRANSACTION_STATEMENT_TIMEOUT, (f"{timeout_ms}ms",))
