"""The API's observability middleware: request ids on responses and on every log line of a request."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys

import structlog
from starlette.types import Message, Receive, Scope, Send

from internal.api.middleware import ObservabilityMiddleware
from internal.pkg.logging import REQUEST_ID, configure_logging
from internal.pkg.metrics import Metrics


async def logging_app(scope: Scope, _receive: Receive, send: Send) -> None:
    structlog.get_logger(component="test").info("inside_request", path=scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def call(app: ObservabilityMiddleware, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "GET", "path": "/x", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent


def response_id(sent: list[Message]) -> str:
    start = next(m for m in sent if m["type"] == "http.response.start")
    rid: bytes = dict(start["headers"])[b"x-request-id"]
    return rid.decode()


def test_generated_ids_are_unique_and_every_log_line_of_the_request_carries_its_id() -> None:
    out = io.StringIO()
    original, root = sys.stdout, logging.getLogger()
    handlers, level = root.handlers[:], root.level
    sys.stdout = out
    try:
        configure_logging("info", "json")
        app = ObservabilityMiddleware(logging_app, Metrics("test"))
        ids = [response_id(call(app, [])) for _ in range(50)]
        structlog.get_logger(component="test").info("outside_request")
    finally:
        sys.stdout = original
        structlog.reset_defaults()
        root.handlers[:], root.level = handlers, level
    assert len(set(ids)) == 50
    assert len({i.rsplit("-", 1)[0] for i in ids}) == 1  # one random prefix per process, then a counter
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    inside = [line for line in lines if line["event"] == "inside_request"]
    assert [line["request_id"] for line in inside] == ids
    outside = next(line for line in lines if line["event"] == "outside_request")
    assert "request_id" not in outside  # the id is reset when the request ends
    assert REQUEST_ID.get() is None


def test_a_sane_caller_id_is_kept_and_an_insane_one_replaced() -> None:
    app = ObservabilityMiddleware(logging_app, Metrics("test"))
    assert response_id(call(app, [(b"x-request-id", b"trace-42")])) == "trace-42"
    replaced = response_id(call(app, [(b"x-request-id", b"bad id\n<script>")]))
    assert replaced != "bad id\n<script>"
    assert "<" not in replaced
