"""Bounds on a request's head, enforced in the HTTP protocol before the application sees the request.

uvicorn's httptools protocol accepts a request line and headers of any size: one 4 MiB header, or 200
headers of 8,000 bytes, reached the application and answered 200. Go's net/http, which the original
service uses, refuses a head over 1 MiB with 431; nginx over 8-32 KiB. Here a request line longer than
``max_request_line_bytes`` is refused with 414, more than ``max_headers`` headers or more than
``max_header_bytes`` of them with 431, and the connection is closed; the service keeps serving others.

The check costs the fast path almost nothing: the raw bytes of a head still incomplete are counted
per chunk read (which bounds what a slow or endless head can make the parser buffer to the limits plus
one read), and the finished head is measured once in ``on_headers_complete``. Bodies are the routes'
business: only the console's POST actions take one, read in chunks up to its own bound
(``dlq_console.FORM_BYTES``); uvicorn's flow control stops reading a body no route consumes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SECURITY_HEADERS = b"x-content-type-options: nosniff\r\ncache-control: no-store\r\n"


@dataclass(frozen=True, slots=True)
class RequestLimits:
    max_request_line_bytes: int
    max_headers: int
    max_header_bytes: int

    def protocol(self) -> type[HttpToolsProtocol]:
        """uvicorn's httptools protocol with these limits (``uvicorn.Config(http=...)`` takes a class)."""
        # The raw head also holds the framing around the counted bytes: the method and " HTTP/1.1",
        # ": " and CRLF per field (spaces around a value are allowed, so a margin), the final CRLF.
        framing = HEAD_FRAMING_BYTES + self.max_headers * FIELD_FRAMING_BYTES
        head_bound = self.max_request_line_bytes + self.max_header_bytes + framing
        attributes = {"limits": self, "_head_bound": head_bound}
        return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), attributes)


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; httptools re-raises it as an HttpParserError."""


HEAD_FRAMING_BYTES = 64
FIELD_FRAMING_BYTES = 8

_REASONS = {414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


def refusal(status: int, message: str) -> bytes:
    """The whole response of a refused request: a JSON error like the API's, then the connection closes."""
    body = json.dumps({"error": message, "status": status}).encode()
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            SECURITY_HEADERS,
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Every request passes through here, so the hooks are as few and as cheap as they can be: the
    head in progress is told apart by the identity of uvicorn's header list (a new list per message,
    remembered when its head completes), and the headers' bytes are only added up when the reads since
    the head began hold more than the limit - never for an ordinary request."""

    limits: RequestLimits  # set on the subclass RequestLimits.protocol() makes
    _head_bound: int  # no valid head is longer: the request line and the headers at their limits
    _refusal: bytes | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Instance attributes from the start: read on every request, they are found at once.
        self._done_headers: list[tuple[bytes, bytes]] | None = None  # the list of the last complete head
        self._head_read = 0  # bytes read since the read in which the current head may have begun

    def data_received(self, data: bytes) -> None:
        # Between messages or in a body, a head may begin in this read: count from here.
        read = len(data) if self.headers is self._done_headers else self._head_read + len(data)
        self._head_read = read
        HttpToolsProtocol.data_received(self, data)  # not super(): this runs for every read
        if (
            self._head_read > self._head_bound  # reset to 0 when a head completed in this read
            and self.headers is not self._done_headers
            and not self.transport.is_closing()
        ):
            # Still no end of the head after more bytes than a valid one can have: refused now, before
            # the parser buffers more of it.
            self._refuse(*self._head_too_large())
            self.send_400_response("")

    def on_headers_complete(self) -> None:
        self._done_headers = headers = self.headers
        limits = self.limits
        if len(self.url) > limits.max_request_line_bytes:
            self._refuse(414, f"the request target is over {limits.max_request_line_bytes} bytes")
            raise _Refused
        if len(headers) > limits.max_headers:
            self._refuse(431, f"more than {limits.max_headers} header fields")
            raise _Refused
        if (
            self._head_read > limits.max_header_bytes
            and sum(map(len, itertools.chain.from_iterable(headers))) > limits.max_header_bytes
        ):
            self._refuse(431, f"the header fields are over {limits.max_header_bytes} bytes")
            raise _Refused
        # This head is done: the next is counted from the next read (the rest of this read, at most
        # one read's bytes, is not), so pipelined requests never add up to one false refusal.
        self._head_read = 0
        HttpToolsProtocol.on_headers_complete(self)

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers every parser error with 400; a refusal of ours answers with its own status."""
        if self._refusal is None:
            super().send_400_response(msg)
            return
        self.transport.write(self._refusal)
        self.transport.close()

    def _head_too_large(self) -> tuple[int, str]:
        url: bytes = getattr(self, "url", b"")  # none before the parser saw a message begin
        if not self.headers and len(url) > self.limits.max_request_line_bytes:
            return 414, f"the request target is over {self.limits.max_request_line_bytes} bytes"
        return 431, f"the request head is over {self.limits.max_header_bytes} bytes"

    def _refuse(self, status: int, message: str) -> None:
        self._refusal = refusal(status, message)
        self.logger.info("request refused: %s (%d)", message, status)
