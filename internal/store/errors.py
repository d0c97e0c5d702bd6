"""Sorting psycopg's exceptions into the service's error kinds (internal/domain/errors.py).

The split follows the SQLSTATE classes: connection trouble, shutdowns, serialization failures and
deadlocks pass with time (transient); a statement timeout passes with time too, but may also be the
batch's size (``TimedOut``: split after the bounded attempts); data and constraint errors belong to a
record, and so does a program limit (class 54, e.g. a JSON document beyond jsonb's 256 MB) - permanent,
the batch is split to find the record; a missing table or a syntax error is a deployment bug (fatal:
dead-lettering every message would be wrong).
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg

from internal.domain.causes import Cause
from internal.domain.errors import FatalError, RecordRejected, ServiceError, TimedOut, TransientError
from internal.pkg.exc_text import first_line

RECORD_ERRORS: tuple[type[Exception], ...] = (psycopg.DataError, psycopg.IntegrityError, pg.RaiseException)
PROGRAM_LIMIT_CLASS = "54"  # psycopg's classes of 54xxx derive from OperationalError, not from 54000
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
    """The service error for a database exception, or None when it is none of the known kinds."""
    if isinstance(exc, FATAL_ERRORS):
        return FatalError(f"database: {_named(exc)}", cause=Cause.DATABASE_UNUSABLE)
    if isinstance(exc, RECORD_ERRORS) or _sqlstate(exc).startswith(PROGRAM_LIMIT_CLASS):
        return RecordRejected(_named(exc))
    if isinstance(exc, pg.QueryCanceled):  # 57014: statement_timeout, or a cancel request
        return TimedOut(f"database statement cancelled: {_named(exc)}")
    # OperationalError covers refused/lost connections, admin shutdown, serialization failures,
    # deadlocks, lock timeouts and psycopg_pool's PoolTimeout.
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return TransientError(f"database unavailable: {_named(exc)}")
    # Anything else (InternalError, NotSupportedError, an unexpected ProgrammingError) is not known to
    # pass with time: the writer lets it through as unexpected, so it is retried a bounded number of
    # times and isolated, never retried forever; a read answers 503 (its caller decides).
    return None


def _sqlstate(exc: BaseException) -> str:
    return (exc.sqlstate or "") if isinstance(exc, psycopg.Error) else ""


def _named(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"
