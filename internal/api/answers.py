"""An answer as bytes ready to send (status, raw headers, body), and the pieces every answer shares:
the API's one error shape, HTML answers, ETag comparison, and the step to a Starlette ``Response``.

Answers are plain data so a cached one (an order's JSON or page, the home page's snapshot) can be
sent as it is by ``routes.FastPath`` or wrapped by ``respond`` for the routed path: both give the
same status, headers and body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import Scope

Headers = list[tuple[bytes, bytes]]
JSON = (b"content-type", b"application/json")
HTML = (b"content-type", b"text/html; charset=utf-8")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Headers
    body: bytes


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110's weak comparison of If-None-Match (one ETag, a list, ``W/`` forms or ``*``)."""
    if if_none_match is None:
        return False
    if if_none_match == etag:
        return True
    for listed in if_none_match.split(","):
        candidate = listed.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def html_answer(status: int, body: bytes) -> Answer:
    return Answer(status, [HTML, (b"content-length", str(len(body)).encode())], body)


def error_body(status: int, message: str, request_id: str) -> bytes:
    """The one shape of every API error: a message, the status and the request id - no stack trace."""
    document = {"error": message, "status": status, "request_id": request_id}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def error_answer(status: int, message: str, request_id: str) -> Answer:
    body = error_body(status, message, request_id)
    return Answer(status, [JSON, (b"content-length", str(len(body)).encode())], body)


def respond(found: Answer) -> Response:
    """The answer as a Starlette response, for the routed path (HEAD, exception handlers)."""
    response = Response(found.body, status_code=found.status)
    response.raw_headers = list(found.headers)  # answers may be shared (cached): never mutated
    return response


def header(scope: Scope, name: bytes) -> str | None:
    """A request header by its lower-case name (the first, as Starlette's ``headers.get``)."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None
