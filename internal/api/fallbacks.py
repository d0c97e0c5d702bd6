"""What an address no route serves answers: in the service's own shapes, not Starlette's plain text.

A person who mistypes an address in the browser gets the UI's error page (with the search box and a
way home); a client of the JSON API gets the API's one error shape (``order_endpoint.error_body``:
message, status, request id). JSON for the paths under ``/api/`` and the original service's
``/order/`` and for the machine endpoints (a POST to ``/readyz`` is a client's, not a person's), HTML
for everything else. A 405 keeps its ``Allow`` header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from internal.api.middleware import request_id
from internal.api.order_endpoint import error_body
from internal.api.pages import Pages

JSON_PREFIXES = ("/api/", "/order/")
JSON_PATHS = frozenset({"/openapi.json", "/healthz", "/readyz", "/metrics"})
# status -> (page title, page text, API error)
TEXTS = {
    404: (
        "Page not found",
        "There is no page at this address.",
        "no endpoint at this path (see /openapi.json)",
    ),
    405: (
        "Method not allowed",
        "This address does not answer that method.",
        "method not allowed at this path",
    ),
}


class Fallbacks:
    def __init__(self, pages: Pages) -> None:
        self._pages = pages

    def handlers(self) -> dict[int, Callable[[Request, Exception], Awaitable[Response]]]:
        """Starlette's ``exception_handlers``: it calls one for an HTTPException of its status only."""
        return dict.fromkeys(TEXTS, self.answer)

    async def answer(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # registered by status: Starlette's own 404/405
        title, message, api_error = TEXTS[exc.status_code]
        rid = request_id(request)
        path = request.url.path
        if path.startswith(JSON_PREFIXES) or path in JSON_PATHS:
            return Response(error_body(exc.status_code, api_error, rid), exc.status_code, exc.headers,
                            media_type="application/json")  # fmt: skip
        return Response(self._pages.message(title, message, rid), exc.status_code, exc.headers,
                        media_type="text/html; charset=utf-8")  # fmt: skip
