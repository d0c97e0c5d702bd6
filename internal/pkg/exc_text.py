"""One line that says what an exception is about, for a log field or a line on stderr."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s text, or its type's name when it has no text.

    Driver errors carry several lines (psycopg adds DETAIL, HINT and the server's context; librdkafka
    its own); the first says what happened, and one line keeps a log record or a message one line.
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
