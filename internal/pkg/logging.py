"""structlog set-up: JSON lines on stdout (or a console renderer for people), one pipeline for all.

Every line carries timestamp, level, event and component; the standard library's loggers (uvicorn,
yoyo, psycopg_pool, librdkafka's) are routed through the same renderer so that stdout holds nothing
but JSON. The secrets of the settings (a DSN's password) are blanked out of every rendered line, in
every spelling a line could carry them (as is, JSON-escaped, percent-encoded): no code path that logs
an exception, a URI or a libpq message can print one.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote

import structlog
from structlog.typing import EventDict

# The id of the HTTP request being served (set by the API's middleware); every line logged while it
# runs carries it. A plain ContextVar rather than structlog's bound_contextvars: the middleware sets it
# on every request, cache hits included, and this is several times cheaper.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

# librdkafka writes its own log lines to stderr unless a client is given a logger; through this one
# they become JSON lines like every other. Every Kafka client of the service gets it.
KAFKA_LOG = logging.getLogger("kafka")

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


REDACTED = "[redacted]"
# Shorter secrets are not blanked out: the local default password "orders" is also the database, the
# user and the topic, and blanking it would blank those from every line. Nothing logs a DSN or a
# password on purpose; this is the net under mistakes, for passwords worth the name.
MIN_REDACTED_LENGTH = 8


def redactor(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function that blanks every spelling of every secret out of a text (identity when none)."""
    long_enough = [s for s in secrets if len(s) >= MIN_REDACTED_LENGTH]
    spellings = sorted(
        {form for s in long_enough for form in (s, json.dumps(s)[1:-1], quote(s, safe=""), quote(s))},
        key=len,
        reverse=True,  # the longest first: a spelling that contains another is replaced whole
    )

    def redact(text: str) -> str:
        for spelling in spellings:
            if spelling in text:
                text = text.replace(spelling, REDACTED)
        return text

    return redact


def configure_logging(level: str = "info", fmt: str = "json", secrets: Iterable[str] = ()) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _default_component,
    ]
    render: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    redact = redactor(secrets)

    def renderer(logger: Any, name: str, event: EventDict) -> str:
        return redact(render(logger, name, event))

    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_color_message],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "yoyo"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the API logs its own access lines when asked


def _drop_color_message(_logger: Any, _name: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate of "event"
    return event


def _add_request_id(_logger: Any, _name: str, event: EventDict) -> EventDict:
    rid = REQUEST_ID.get()
    if rid is not None:
        event.setdefault("request_id", rid)
    return event


def _default_component(_logger: Any, _name: str, event: EventDict) -> EventDict:
    event.setdefault("component", "app")
    return event
