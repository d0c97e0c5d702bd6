"""The app's one route table and one error shape (internal/api/app.py, routes.py, errors.py), on the
real ``create_api`` in process: no database is reached (the pools are never opened; the orders asked
for are in the cache)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from starlette.routing import Match
from starlette.types import ASGIApp

from internal.api.app import create_api
from internal.api.json_api import JsonApi
from internal.api.routes import AnswerRoute, FastPath, split_path
from internal.api.ui import Ui
from internal.cache.lru import OrderCache, make_entry
from internal.domain.order import Order, order_to_json_bytes
from internal.lifecycle import Lifecycle
from internal.pkg.health import Health
from internal.pkg.metrics import Metrics
from internal.pkg.paths import templates_dir
from internal.store.reader import PostgresOrderReader
from tests.orders import order_doc

BIG = 10**9
SECRET = "detail-of-the-bug"  # noqa: S105 - not a password; must not reach a client


class Client:
    """Requests to the app in process; an exception the app raises after answering is not re-raised
    (Starlette re-raises a handler's exception for the server to log, after the 500 is sent)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, path, headers=headers)

        return asyncio.run(go())

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.request("GET", path, headers)

    def head(self, path: str) -> httpx.Response:
        return self.request("HEAD", path)


class NoConsumer:
    running, fatal, crashed, paused, outage = True, None, None, False, None
    assigned: frozenset[tuple[str, int]] = frozenset()
    stuck: dict[tuple[str, int], str] = {}  # noqa: RUF012 - read only
    last_beat = 0.0


@pytest.fixture
def cache() -> OrderCache:
    return OrderCache(BIG, BIG, BIG)


@pytest.fixture
def client(cache: OrderCache) -> Client:
    return make_client(cache)


def make_client(cache: OrderCache) -> Client:
    dsn = "postgresql://nobody@127.0.0.1:1/none"
    app = create_api(
        cache,
        PostgresOrderReader(ConnectionPool(dsn, open=False)),
        Health(NoConsumer(), lambda: None, Lifecycle(time.monotonic)),
        Metrics("test"),
        lookup_pool=AsyncConnectionPool(dsn, open=False),
        search_pool=AsyncConnectionPool(dsn, open=False),
        request_timeout_s=1.0,
        search_pages_bytes=1 << 20,
        templates=templates_dir(),
        access_log=False,
    )
    return Client(app)  # no lifespan: the pools stay closed


def cached_order(cache: OrderCache) -> str:
    doc = order_doc(1, seed=5)
    body = order_to_json_bytes(Order.model_validate_json(json.dumps(doc)))
    cache.put_entry(doc["order_uid"], make_entry(body))
    return str(doc["order_uid"])


def broken(*_args: Any) -> Any:
    raise RuntimeError(SECRET)


def assert_json_500(response: Any, body: bool = True) -> None:
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    if body:
        rid = response.headers["x-request-id"]
        assert response.json() == {"error": "the service failed to answer", "status": 500, "request_id": rid}
        assert SECRET not in response.text
        assert "Traceback" not in response.text


def assert_html_500(response: Any) -> None:
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "content-security-policy" in response.headers
    assert "Something went wrong" in response.text
    assert f"request {response.headers['x-request-id']}" in response.text  # for a person to quote
    assert SECRET not in response.text
    assert "Traceback" not in response.text


def test_a_bug_in_a_routed_handler_is_the_services_500(
    cache: OrderCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain Starlette routes (no fast path): the API's JSON error under the API's paths, the UI's
    error page elsewhere - each with the request id, never Starlette's plain text or a trace."""
    monkeypatch.setattr(JsonApi, "healthz", broken)  # before the app is made: its table holds them
    monkeypatch.setattr(Ui, "lookup_form", broken)
    client = make_client(cache)
    assert_json_500(client.get("/healthz", headers={"X-Request-ID": "req-bug-1"}))
    assert client.get("/healthz", headers={"X-Request-ID": "req-bug-1"}).json()["request_id"] == "req-bug-1"
    assert_html_500(client.get("/orders?order_uid=abc"))


def test_a_bug_in_an_answer_route_is_the_same_500_on_the_fast_path_and_the_routed_one(
    client: Client, cache: OrderCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET takes the fast path, HEAD Starlette's router: both fail in the same shape."""
    uid = cached_order(cache)
    monkeypatch.setattr(cache, "get", broken)
    assert_json_500(client.get(f"/api/orders/{uid}"))
    assert_json_500(client.get(f"/order/{uid}"))
    assert_json_500(client.head(f"/api/orders/{uid}"), body=False)
    assert_html_500(client.get(f"/orders/{uid}"))
    head = client.head(f"/orders/{uid}")
    assert (head.status_code, head.headers["content-type"]) == (500, "text/html; charset=utf-8")


def test_a_bug_on_the_home_page_and_search_is_the_ui_500(
    cache: OrderCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Ui, "search", broken)
    monkeypatch.setattr(Ui, "home", broken)
    client = make_client(cache)
    assert_html_500(client.get("/"))
    assert_html_500(client.get("/search?q=x"))
    assert client.head("/").status_code == 500


def test_hits_and_heads_answer_alike(client: Client, cache: OrderCache) -> None:
    uid = cached_order(cache)
    for path in (f"/api/orders/{uid}", f"/order/{uid}", f"/orders/{uid}"):
        got, head = client.get(path), client.head(path)
        assert got.status_code == head.status_code == 200
        for name in ("etag", "x-cache", "content-type", "content-length"):
            assert got.headers[name] == head.headers[name], (path, name)
        again = client.get(path, headers={"If-None-Match": got.headers["etag"]})
        assert (again.status_code, again.content) == (304, b"")


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"),
    [("GET", "/api/nothing", 404, "json"), ("GET", "/order/a/b", 404, "json"),
     ("GET", "/nothing", 404, "html"), ("GET", "/orders/a/b", 404, "html"),
     ("POST", "/api/orders/abc", 405, "json"), ("POST", "/readyz", 405, "json"),
     ("POST", "/orders/abc", 405, "html"), ("DELETE", "/", 405, "html")],
)  # fmt: skip
def test_unserved_addresses_answer_in_the_services_shapes(
    client: Client, method: str, path: str, status: int, kind: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    if status == 405:
        assert sorted(response.headers["allow"].split(", ")) == ["GET", "HEAD"]
    if kind == "json":
        rid = response.headers["x-request-id"]
        assert response.json() == {"error": response.json()["error"], "status": status, "request_id": rid}
    else:
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["x-request-id"] in response.text


def test_split_path() -> None:
    assert split_path("/orders/{order_uid}") == ("/orders/", "order_uid")
    assert split_path("/") == ("/", None)
    for odd in ("/a/{x}/b", "/a/{x:int}", "/a/{x}{y}"):
        with pytest.raises(ValueError, match="fast route"):
            split_path(odd)


@pytest.mark.parametrize(
    "path",
    ["/", "//", "/api/orders/", "/api/orders/abc", "/api/orders/a/b", "/api/orders/abc/", "/order/x",
     "/orders", "/orders/", "/orders/x", "/orders/x/", "/search", "/search/", "/healthz", "/static/style.css",
     "/ordersx", "/api/ordersx"],
)  # fmt: skip
def test_the_fast_path_takes_exactly_the_route_the_router_would(client: Client, path: str) -> None:
    """The fast path is derived from the table: for any path it picks the route Starlette's router
    would pick (the first full match), or lets the router answer."""
    fast = client.app.app  # type: ignore[attr-defined]  # ObservabilityMiddleware(FastPath(...))
    assert isinstance(fast, FastPath)
    routes = fast.app.routes  # type: ignore[attr-defined]
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": path, "root_path": ""}
    routed = next((r for r in routes if r.matches(scope)[0] is Match.FULL), None)
    picked, _param = fast.match(path)
    assert picked is (routed if isinstance(routed, AnswerRoute) else None), path
