"""structlog set-up: JSON lines on stdout (or a console renderer for people), one pipeline for all.

Every line carries timestamp, level, event and component; the standard library's loggers (uvicorn,
yoyo) are routed through the same renderer so that stdout holds nothing but JSON.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

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


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _default_component,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
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
