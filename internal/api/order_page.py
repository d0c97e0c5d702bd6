"""The page of one order: every field of the message, built from the order's cached JSON.

Why not a Jinja template: the page shows ~40 values plus 12 per item, and Jinja spends about 1.5 us
on each (a generator ``yield``, ``environment.getitem``, ``str``, ``markupsafe.escape``): 170-230 us
for an order of 1-5 items, more than the whole JSON miss it is added to (docs/performance.md). So the
frame (head, header, footer) comes from ``templates/order.html`` over ``base.html``, rendered ONCE at
start with markers where the title and the content go, and the content is built here with f-strings:
30-40 us including the JSON decode.

Escaping: the values are HTML-escaped in ONE pass over the JSON text before it is decoded. ``&``,
``<`` and ``>`` are never part of JSON's syntax, so replacing them in the text escapes exactly the
strings' characters; ``"`` and ``'`` need no escaping in element content, and no order value is put
into an attribute except the uid, percent-encoded. JSON could spell the three characters as
``\\u0026``, ``\\u003c``, ``\\u003e``; neither of the service's encoders does, but any ``\\u`` in the
text sends it the slow way (decode, then escape every string), so the shortcut never depends on it.

Never a 5xx: the helpers in ``formatting.py`` show a value they cannot format as it is, and a JSON
that is not the shape of an order (it cannot be: the cache holds only validated orders) gets a page
with the raw JSON instead of an exception.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

from pydantic_core import from_json

from internal.api.formatting import iso_time, or_none, payment_check, unix_time

TITLE_MARK = "\x00title\x00"
CONTENT_MARK = "\x00content\x00"
# The page's own text is ASCII (entities for the marks), so that the page of an ASCII order stays an
# ASCII string: Python then encodes it with a copy instead of a UTF-8 pass (8 us for 4.5 KB here).
AMOUNTS_OK = (
    '<p class="ok">&#10003; Amounts add up: goods = sum of items, amount = goods + delivery + customs.</p>'
)
NUM = ' class="num"'
_COLUMNS = (("#", True), ("Name", False), ("Brand", False), ("Size", False), ("Price", True),
            ("Sale", True), ("Total", True), ("Status", True), ("chrt_id", False), ("nm_id", False),
            ("rid", False), ("Track number", False))  # fmt: skip
ITEMS_HEAD = (
    "<thead><tr>"
    + "".join(f'<th scope="col"{NUM if num else ""}>{name}</th>' for name, num in _COLUMNS)
    + "</tr></thead>"
)


def _escape_strings(value: Any) -> Any:
    if isinstance(value, str):
        return html.escape(value, quote=False)
    if isinstance(value, dict):
        return {k: _escape_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_strings(v) for v in value]
    return value


def escaped_order(order_json: bytes) -> Any:
    """The decoded order with every string HTML-escaped for element content."""
    if b"\\u" in order_json:
        return _escape_strings(from_json(order_json))
    if b"&" in order_json or b"<" in order_json or b">" in order_json:  # scans, cheaper than copies
        order_json = order_json.replace(b"&", b"&amp;").replace(b"<", b"&lt;").replace(b">", b"&gt;")
    return from_json(order_json)


class OrderPage:
    def __init__(self, frame: str) -> None:
        """``frame`` is the page rendered with ``TITLE_MARK`` and ``CONTENT_MARK`` in it."""
        head, rest = frame.split(TITLE_MARK)
        middle, tail = rest.split(CONTENT_MARK)
        self._head, self._middle, self._tail = head, middle, tail

    def render(self, order_json: bytes) -> bytes:
        try:
            order = escaped_order(order_json)
            uid, content = order["order_uid"], _content(order)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            uid, content = "", _raw(order_json)
        return f"{self._head}{uid}{self._middle}{content}{self._tail}".encode()


def _raw(order_json: bytes) -> str:
    text = html.escape(order_json.decode("utf-8", "replace"), quote=False)
    return f'<section class="card"><h1>Order</h1><pre class="raw-json">{text}</pre></section>'


def _content(o: dict[str, Any]) -> str:
    d, p = o["delivery"], o["payment"]
    cur = p["currency"]
    uid = o["order_uid"]
    check = payment_check(o)
    if check.goods_total_ok and check.amount_ok:
        verdict = AMOUNTS_OK
    else:
        parts = []
        if not check.goods_total_ok:
            parts.append(f"items sum to {check.items_total} {cur}, goods say {p['goods_total']}.")
        if not check.amount_ok:
            parts.append(
                f"goods + delivery + customs = {check.expected_amount} {cur}, amount says {p['amount']}."
            )
        verdict = f'<p class="problem">&#10007; Amounts do not add up: {" ".join(parts)}</p>'
    rows = "".join(
        f'<tr><th scope="row" class="num" data-label="#">{n}</th>'
        f'<td data-label="Name">{i["name"]}</td><td data-label="Brand">{i["brand"]}</td>'
        f'<td data-label="Size">{i["size"]}</td>'
        f'<td class="num" data-label="Price">{i["price"]} {cur}</td>'
        f'<td class="num" data-label="Sale">{i["sale"]} %</td>'
        f'<td class="num" data-label="Total">{i["total_price"]} {cur}</td>'
        f'<td class="num" data-label="Status">{i["status"]}</td>'
        f'<td class="nowrap" data-label="chrt_id">{i["chrt_id"]}</td>'
        f'<td class="nowrap" data-label="nm_id">{i["nm_id"]}</td>'
        f'<td class="nowrap" data-label="rid">{i["rid"]}</td>'
        f'<td class="nowrap" data-label="Track number">{i["track_number"]}</td></tr>\n'
        for n, i in enumerate(o["items"], 1)
    )
    return f"""<section class="card">
<p class="source"><a href="/api/orders/{quote(uid, safe="")}">raw JSON</a></p>
<h1>Order <code class="uid">{uid}</code></h1>
<dl class="facts">
<dt>Track number</dt><dd>{o["track_number"]}</dd>
<dt>Created</dt><dd>{_with_raw(iso_time(o["date_created"]), o["date_created"])}</dd>
<dt>Customer</dt><dd>{o["customer_id"]}</dd>
<dt>Locale</dt><dd>{o["locale"]}</dd>
<dt>Delivery service</dt><dd>{o["delivery_service"]}</dd>
<dt>Entry</dt><dd>{o["entry"]}</dd>
<dt>Shard key</dt><dd>{o["shardkey"]}</dd>
<dt>SM id</dt><dd>{o["sm_id"]}</dd>
<dt>OOF shard</dt><dd>{o["oof_shard"]}</dd>
<dt>Internal signature</dt><dd>{or_none(o["internal_signature"])}</dd>
</dl>
</section>
<div class="two">
<section class="card">
<h2>Delivery</h2>
<dl class="facts">
<dt>Name</dt><dd>{d["name"]}</dd>
<dt>Phone</dt><dd>{d["phone"]}</dd>
<dt>E-mail</dt><dd>{d["email"]}</dd>
<dt>Address</dt><dd>{d["address"]}</dd>
<dt>City</dt><dd>{d["city"]}</dd>
<dt>Region</dt><dd>{d["region"]}</dd>
<dt>Zip</dt><dd>{d["zip"]}</dd>
</dl>
</section>
<section class="card">
<h2>Payment</h2>
<dl class="facts">
<dt>Transaction</dt><dd>{p["transaction"]}</dd>
<dt>Request id</dt><dd>{or_none(p["request_id"])}</dd>
<dt>Provider</dt><dd>{p["provider"]}</dd>
<dt>Bank</dt><dd>{p["bank"]}</dd>
<dt>Currency</dt><dd>{cur}</dd>
<dt>Paid at</dt><dd>{_with_raw(unix_time(p["payment_dt"]), p["payment_dt"])}</dd>
<dt>Goods</dt><dd class="num">{p["goods_total"]} {cur}</dd>
<dt>Delivery</dt><dd class="num">{p["delivery_cost"]} {cur}</dd>
<dt>Customs fee</dt><dd class="num">{p["custom_fee"]} {cur}</dd>
<dt>Amount</dt><dd class="num total">{p["amount"]} {cur}</dd>
</dl>
{verdict}
</section>
</div>
<section class="card">
<h2>Items ({len(o["items"])})</h2>
<div class="table-wrap items-wrap">
<table class="items">
{ITEMS_HEAD}
<tbody>
{rows}</tbody>
</table>
</div>
</section>"""


def _with_raw(formatted: str, raw: object) -> str:
    """A formatted time and, in small print, the value as sent; the value alone when it could not be
    formatted (a payment_dt in milliseconds)."""
    text = str(raw)
    return text if formatted == text else f'{formatted} <span class="raw">{text}</span>'


def frame_marks() -> dict[str, str]:
    """What ``templates/order.html`` is rendered with once, to make the frame (autoescaping leaves
    the markers as they are: they hold none of the characters it escapes)."""
    return {"uid": TITLE_MARK, "content": CONTENT_MARK}
