"""Sorting psycopg's exceptions into the service's error kinds (internal/domain/errors.py).

The split follows the SQLSTATE classes: connection trouble, timeouts, shutdowns, serialization
failures and deadlocks pass with time (transient); data and constraint errors belong to a record
(permanent, the batch is split to find it); a missing table or a syntax error is a deployment bug
(fatal: dead-lettering every message would be wrong).
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg

from internal.domain.errors import FatalError, RecordRejected, ServiceError, TransientError

RECORD_ERRORS: tuple[type[Exception], ...] = (psycopg.DataError, psycopg.IntegrityError, pg.RaiseException)
FATAL_ERRORS: tuple[type[Exception], ...] = (
    pg.UndefinedTable,
    pg.UndefinedColumn,
    pg.UndefinedFunction,
    pg.SyntaxError,
    pg.InsufficientPrivilege,
    pg.InvalidCatalogName,
    pg.InvalidAuthorizationSpecification,
    pg.InvalidPassword,
)


def translate(exc: BaseException) -> ServiceError | None:
    """The service error for a database exception, or None when it is not a database exception."""
    if isinstance(exc, FATAL_ERRORS):
        return FatalError(f"database: {_first_line(exc)}")
    if isinstance(exc, RECORD_ERRORS):
        return RecordRejected(_first_line(exc))
    # OperationalError covers refused/lost connections, admin shutdown, query cancel (statement
    # timeout), serialization failures, deadlocks, lock timeouts and psycopg_pool's PoolTimeout.
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return TransientError(f"database unavailable: {_first_line(exc)}")
    if isinstance(exc, psycopg.Error):
        return TransientError(f"database error: {_first_line(exc)}")
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
