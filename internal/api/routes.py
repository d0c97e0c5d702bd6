"""Routes whose endpoint is an ``Answer`` function, and the plain-ASGI fast path derived from them.

The app has ONE route table (``app.py``). A route made with ``AnswerRoute`` is an ordinary Starlette
``Route`` (GET, and HEAD as Starlette gives every GET route) whose endpoint calls ``hit`` - a
synchronous answer from memory, or None - and else awaits ``answer``. ``FastPath`` reads the same
table and answers those routes' GETs ahead of Starlette with the same two functions: a cache hit then
costs no routing, no Request/Response objects, no thread and no coroutine, and a miss skips
Starlette's layers, which cost about a quarter of a miss's CPU (docs/performance.md). Nothing else
writes a URL: FastPath matches exactly the paths Starlette's router would give these routes.

Anything FastPath does not take (other methods, other routes, a mounted app's root path, a path
Starlette's ``{param}`` would not match) goes to the Starlette app unchanged. A bug while answering
is handed to the same error handler Starlette's ``exception_handlers`` use (``errors.py``), so both
paths fail in the service's shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from internal.api.answers import Answer, respond

Hit = Callable[[Scope, str], Answer | None]
Answering = Callable[[Scope, str], Awaitable[Answer]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


def split_path(path: str) -> tuple[str, str | None]:
    """``"/orders/{order_uid}"`` -> ``("/orders/", "order_uid")``, ``"/"`` -> ``("/", None)``: the
    shapes the fast path can match by a string prefix (one trailing ``{param}`` of Starlette's default
    ``str`` convertor, which matches one non-empty segment). ValueError for any other shape."""
    start = path.find("{")
    if start < 0:
        return path, None
    name = path[start + 1 : -1]
    if not path.endswith("}") or not name.isidentifier():
        raise ValueError(f"a fast route has at most one trailing {{param}} without a convertor: {path}")
    return path[:start], name


class AnswerRoute(Route):
    def __init__(self, path: str, answer: Answering, *, hit: Hit | None = None) -> None:
        """``answer(scope, param)``: the whole answer, called when ``hit(scope, param)`` gave None
        (or there is no ``hit``); ``param`` is the path parameter's value, "" for a path without."""
        self.answer = answer
        self.hit = hit
        _prefix, param = split_path(path)

        async def endpoint(request: Request) -> Response:
            value: str = request.path_params[param] if param else ""
            found = None if hit is None else hit(request.scope, value)
            return respond(found if found is not None else await answer(request.scope, value))

        super().__init__(path, endpoint, methods=["GET"], name=path)


class FastPath:
    """ASGI middleware answering the GETs of ``routes``' ``AnswerRoute`` entries; see the module's
    docstring. ``routes`` is the app's table, in its order: the first route that matches a path
    answers it, as in Starlette's router."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], on_error: ErrorHandler) -> None:
        self.app = app
        self._on_error = on_error
        # path -> its route (None: not a fast one, let Starlette answer); (prefix, route) in order.
        self._exact: dict[str, AnswerRoute | None] = {}
        self._prefixed: list[tuple[str, AnswerRoute | None]] = []
        for route in routes:
            if not isinstance(route, Route):
                raise ValueError(f"put {route!r} after the routes of the fast path (or teach it)")
            fast = route if isinstance(route, AnswerRoute) else None
            prefix, param = split_path(route.path)
            if param is not None:
                self._prefixed.append((prefix, fast))
            elif not any(_under(route.path, p) for p, _ in self._prefixed):  # else an earlier one wins
                self._exact.setdefault(route.path, fast)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            route, param = self.match(scope["path"])
            if route is not None:
                scope["route"] = route  # the template labels the request's metrics, as when routed
                await self._answer(route, scope, receive, send, param)
                return
        await self.app(scope, receive, send)

    def match(self, path: str) -> tuple[AnswerRoute | None, str]:
        """The fast route that answers ``path`` and its parameter; None when Starlette answers it."""
        if path in self._exact:
            return self._exact[path], ""
        for prefix, route in self._prefixed:
            if path.startswith(prefix):  # _under, inlined: this runs on every request
                param = path[len(prefix) :]
                if param and "/" not in param:
                    return route, param
        return None, ""

    async def _answer(
        self, route: AnswerRoute, scope: Scope, receive: Receive, send: Send, param: str
    ) -> None:
        try:
            # A hit is answered without another coroutine to make and run.
            found = None if route.hit is None else route.hit(scope, param)
            if found is None:
                found = await route.answer(scope, param)
        except Exception as exc:
            # Ahead of Starlette's error middleware: the same handler it would call, the same shape.
            await (await self._on_error(Request(scope, receive), exc))(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": found.status, "headers": found.headers})
        await send({"type": "http.response.body", "body": found.body})


def _under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` and one non-empty segment: what ``{param}`` matches there."""
    return path.startswith(prefix) and len(path) > len(prefix) and "/" not in path[len(prefix) :]
