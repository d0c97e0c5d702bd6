"""The HTML pages, rendered from templates/ (Jinja2, autoescaping on: order data is untrusted input).

The templates are compiled once, at start, and never reloaded: a render is the compiled template's
string building and nothing else. The order page, the one rendered per cache miss, is built in
``order_page.py`` inside a frame rendered from ``order.html`` once.

``version`` is a digest of the templates and of ``order_page.py``; order pages add it to their ETag,
so a browser holding a page of an older layout does not get 304 for it after a deploy.

The order page is a function of the order's JSON alone - no request id, no "from the cache" text -
so it can be cached with the JSON entry and share its ETag (``internal/cache/lru.py``).
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from internal.api import order_page
from internal.api.order_page import OrderPage, frame_marks
from internal.store.reader import OrderSummary

TEMPLATES = ("base.html", "order.html", "not_found.html", "message.html", "home.html", "search.html")


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
        self._order = OrderPage(env.get_template("order.html").render(request_id="", **frame_marks()))
        self._not_found = env.get_template("not_found.html")
        self._message = env.get_template("message.html")
        self._home = env.get_template("home.html")
        self._search = env.get_template("search.html")
        digest = hashlib.sha256()
        for name in TEMPLATES:
            digest.update((templates / name).read_bytes())
        digest.update(Path(order_page.__file__).read_bytes())
        self.version = digest.hexdigest()[:8]
        self.stylesheet = (templates / "static" / "style.css").read_bytes()

    def order(self, order_json: bytes) -> bytes:
        """The page of one order, from its JSON (the cached bytes)."""
        return self._order.render(order_json)

    def not_found(self, uid: str, request_id: str) -> bytes:
        return self._not_found.render(uid=uid, request_id=request_id).encode()

    def message(self, title: str, message: str, request_id: str, uid: str = "") -> bytes:
        return self._message.render(title=title, message=message, uid=uid, request_id=request_id).encode()

    def home(self, recent: Sequence[OrderSummary], recent_error: str | None) -> bytes:
        rows = summary_rows(recent)
        return self._home.render(rows=rows, recent_error=recent_error, request_id="").encode()

    def search(self, request_id: str, results: Sequence[OrderSummary], **context: Any) -> bytes:
        rows = summary_rows(results)
        return self._search.render(request_id=request_id, rows=rows, **context).encode()


def summary_rows(orders: Sequence[OrderSummary]) -> Markup:
    """The rows of a list of orders (templates/summary_table.html), built here rather than in the
    template: Jinja spent ~15 us per row, a search page's largest cost after its queries."""
    return Markup(  # noqa: S704 - every value is escaped
        "".join(
            f'<tr><td class="nowrap" data-label="Order uid"><a href="/orders/{e(o.order_uid)}">'
            f'{e(o.order_uid)}</a></td><td class="nowrap" data-label="Track number">{e(o.track_number)}</td>'
            f'<td data-label="Customer">{e(o.customer_id)}</td>'
            f'<td class="nowrap" data-label="Created">{e(o.date_created)}</td>'
            f'<td class="num" data-label="Amount">{o.amount} {e(o.currency)}</td>'
            f'<td class="num" data-label="Items">{o.item_count}</td></tr>\n'
            for o in orders
        )
    )


def e(text: str) -> str:
    return html.escape(text)
