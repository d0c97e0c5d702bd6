"""The one helper that shortens an exception to a line (store errors, the probe, the service's start)."""

from __future__ import annotations

import psycopg

from internal.pkg.exc_text import first_line


def test_the_first_line_of_a_multi_line_text() -> None:
    exc = psycopg.OperationalError("\n  connection failed: refused\nDETAIL:  more\nHINT:  even more\n")
    assert first_line(exc) == "connection failed: refused"


def test_the_type_name_when_there_is_no_text() -> None:
    assert first_line(psycopg.OperationalError()) == "OperationalError"
    assert first_line(ValueError("  \n ")) == "ValueError"


def test_a_one_line_text_is_kept_whole() -> None:
    assert first_line(KeyError("uid")) == "'uid'"
