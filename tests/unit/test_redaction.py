"""The logs' net under mistakes: a secret of the settings is blanked out of every line the service
writes, in every spelling a line could carry it, whatever logger wrote it."""

from __future__ import annotations

import io
import json
import logging
from contextlib import redirect_stdout
from urllib.parse import quote

import structlog

from internal.pkg.logging import REDACTED, configure_logging, redactor

SECRET = 'Zq8 "dist/inct%ive"\\S3cret'  # noqa: S105 - the secret the test looks for


def test_every_spelling_is_blanked() -> None:
    redact = redactor([SECRET])
    for spelling in (SECRET, json.dumps(SECRET)[1:-1], quote(SECRET, safe=""), quote(SECRET)):
        assert redact(f"before {spelling} after") == f"before {REDACTED} after"


def test_short_secrets_are_left_alone_they_would_blank_ordinary_words() -> None:
    assert redactor(["orders"])("topic orders") == "topic orders"


def test_structlog_and_stdlib_lines_are_redacted() -> None:
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            configure_logging("info", "json", [SECRET])
            structlog.get_logger().warning("connect_failed", dsn=f"postgresql://u:{quote(SECRET)}@h/db")
            logging.getLogger("psycopg.pool").warning("error connecting: password %s", SECRET)
            try:
                raise RuntimeError(SECRET)
            except RuntimeError:
                structlog.get_logger().exception("boom")
    finally:
        configure_logging("info", "json")
    text = out.getvalue()
    assert text.count(REDACTED) >= 3
    for spelling in (SECRET, json.dumps(SECRET)[1:-1], quote(SECRET)):
        assert spelling not in text
