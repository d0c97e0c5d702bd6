"""Sorting psycopg's exceptions into the error kinds that decide what the consumer does."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg

from internal.domain.errors import FatalError, RecordRejected, TimedOut, TransientError
from internal.store.errors import translate


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (pg.UndefinedTable("no orders"), FatalError),
        (pg.CheckViolation("amount"), RecordRejected),
        (pg.lookup("54000")("too large"), RecordRejected),  # the class 54 program limits
        (pg.lookup("54001")("too complex"), RecordRejected),
        (pg.QueryCanceled("statement timeout"), TimedOut),
        (psycopg.OperationalError("connection refused"), TransientError),
        (pg.SerializationFailure("retry"), TransientError),
    ],
)
def test_known_errors_are_sorted(exc: Exception, kind: type[Exception]) -> None:
    error = translate(exc)
    assert type(error) is kind


@pytest.mark.parametrize(
    "exc", [pg.InternalError_("?"), psycopg.NotSupportedError("?"), pg.DatatypeMismatch("?")]
)
def test_errors_not_known_to_pass_with_time_are_not_called_transient(exc: Exception) -> None:
    # None: the writer lets them through as unexpected (bounded attempts, then processing_error)
    # instead of retrying them forever as an outage.
    assert translate(exc) is None
