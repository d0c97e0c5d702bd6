"""Every error the app answers, in the service's own shapes - never Starlette's plain text, never a
stack trace: registered once as the app's ``exception_handlers`` (an ``HTTPException`` such as the
router's 404 and 405, and any other exception: a bug in a handler), and called by ``routes.FastPath``
for a bug on its path.

A person who mistypes an address in the browser gets the UI's error page (with the search box and a
way home); a client of the JSON API gets the API's one error shape (``answers.error_body``: message,
status, request id). Which is which comes from the route table: JSON for the paths of the API's
routes and for everything under the first segment of its routes with a parameter (``/api/``,
``/order/``): a POST to ``/readyz`` is a client's, not a person's. A 405 keeps its ``Allow`` header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from internal.api.answers import error_body
from internal.api.middleware import request_id
from internal.api.pages import Pages

log = structlog.get_logger(component="api")
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
# status -> (page title, page text, API error); other statuses use the HTTPException's detail.
TEXTS = {
    404: ("Page not found", "There is no page at this address.",
          "no endpoint at this path (see /openapi.json)"),
    405: ("Method not allowed", "This address does not answer that method.",
          "method not allowed at this path"),
    500: ("Something went wrong", "The service failed to answer; try again shortly.",
          "the service failed to answer"),
}  # fmt: skip


class Errors:
    def __init__(self, pages: Pages, api_routes: Iterable[BaseRoute]) -> None:
        self._pages = pages
        paths = [route.path for route in api_routes if isinstance(route, Route)]
        self._json_paths = frozenset(p for p in paths if "{" not in p)
        self._json_prefixes = tuple({"/" + p.split("/")[1] + "/" for p in paths if "{" in p})

    def handlers(self) -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
        """Starlette's ``exception_handlers``: ``Exception`` is its 500 handler (ServerErrorMiddleware
        calls it, then re-raises for the server to log)."""
        return {HTTPException: self.http_error, Exception: self.server_error}

    def is_api(self, path: str) -> bool:
        return path in self._json_paths or path.startswith(self._json_prefixes)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # registered for it
        status = exc.status_code
        texts = TEXTS.get(status, (_phrase(status), exc.detail, exc.detail))
        return self._answer(request, status, texts, exc.headers)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        """A bug: logged with its trace (and the request id, bound by the middleware); the client gets
        a 500 in the service's shape with the request id to quote."""
        log.error("request_failed", path=request.url.path, exc_info=exc)
        return self._answer(request, 500, TEXTS[500], None)

    def _answer(
        self, request: Request, status: int, texts: tuple[str, str, str], headers: Mapping[str, str] | None
    ) -> Response:
        title, message, api_error = texts
        rid = request_id(request)
        if self.is_api(request.url.path):
            return Response(error_body(status, api_error, rid), status, headers, media_type=JSON_TYPE)
        return Response(self._pages.message(title, message, rid), status, headers, media_type=HTML_TYPE)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
