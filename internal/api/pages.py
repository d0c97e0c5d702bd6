"""The HTML pages, rendered from templates/ (Jinja2, autoescaping on: order data is untrusted input).
No page is built or escaped by hand.

The templates are compiled once, at start, and never reloaded: a render is the compiled template's
string building and nothing else. The order page is the one rendered per cache miss; it is kept with
the cache entry afterwards (``OrderCache.attach_page``), so its template costs a page miss only.

``version`` is a digest of the templates and of ``order_view.py``; order pages add it to their ETag,
so a browser holding a page of an older layout does not get 304 for it after a deploy.

The order page is a function of the order's JSON alone - no request id, no "from the cache" text -
so it can be cached with the JSON entry and share its ETag (``internal/cache/lru.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from pydantic_core import from_json

from internal.api import order_view
from internal.store.reader import OrderSummary

TEMPLATES = ("base.html", "order.html", "order_raw.html", "not_found.html", "message.html", "home.html",
             "search.html", "summary_table.html")  # fmt: skip
# What a document that is not the shape of an order makes the order page's code raise; such a page
# shows the raw JSON instead of failing (the cache holds only validated orders: it does not happen).
NOT_AN_ORDER = (KeyError, TypeError, ValueError, AttributeError, IndexError, jinja2.UndefinedError)


class Pages:
    def __init__(self, templates: Path) -> None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates),
            autoescape=True,  # every template, whatever its name: order fields may hold HTML
            undefined=jinja2.StrictUndefined,
            auto_reload=False,  # no stat() of the files per render
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._order = env.get_template("order.html")
        self._order_raw = env.get_template("order_raw.html")
        self._not_found = env.get_template("not_found.html")
        self._message = env.get_template("message.html")
        self._home = env.get_template("home.html")
        self._search = env.get_template("search.html")
        digest = hashlib.sha256()
        for name in TEMPLATES:
            digest.update((templates / name).read_bytes())
        digest.update(Path(order_view.__file__).read_bytes())
        self.version = digest.hexdigest()[:8]
        self.stylesheet = (templates / "static" / "style.css").read_bytes()

    def order(self, order_json: bytes) -> bytes:
        """The page of one order, from its JSON (the cached bytes); never an exception for a JSON
        that is not an order's shape: that one is shown raw."""
        try:
            return self._order.render(order_view.order_context(from_json(order_json))).encode()
        except NOT_AN_ORDER:
            raw = order_json.decode("utf-8", "replace")
            return self._order_raw.render(raw=raw, request_id="").encode()

    def not_found(self, uid: str, request_id: str) -> bytes:
        return self._not_found.render(uid=uid, request_id=request_id).encode()

    def message(self, title: str, message: str, request_id: str, uid: str = "") -> bytes:
        return self._message.render(title=title, message=message, uid=uid, request_id=request_id).encode()

    def home(self, recent: Sequence[OrderSummary], recent_error: str | None) -> bytes:
        return self._home.render(rows=recent, recent_error=recent_error, request_id="").encode()

    def search(self, request_id: str, results: Sequence[OrderSummary], **context: Any) -> bytes:
        return self._search.render(request_id=request_id, rows=results, **context).encode()
