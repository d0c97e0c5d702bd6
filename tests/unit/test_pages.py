"""The order page: every field of the message, escaped, and never a 5xx - on orders drawn from the
validator's whole accepted range, rendered through the real templates."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape
from pydantic import BaseModel

from internal.api.answers import Answer, etag_matches
from internal.api.formatting import iso_time, unix_time
from internal.api.lookup import OrderLookup
from internal.api.orders import OrderAnswers
from internal.api.pages import Pages
from internal.api.routes import AnswerRoute, FastPath
from internal.cache.lru import OrderCache
from internal.domain.order import (
    BIGINT_MAX,
    INTEGER_MAX,
    MAX_ITEMS,
    Delivery,
    Item,
    Order,
    Payment,
    order_to_json_bytes,
)
from internal.pkg.paths import templates_dir
from internal.store.reader import StoredOrder
from tests.orders import order_doc

PAGES = Pages(templates_dir())
BIG = 10**9


NESTED: dict[str, type[BaseModel]] = {"delivery": Delivery, "payment": Payment, "items": Item}


def leaf_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every scalar field of the model, dotted (``payment.request_id``); items by their own fields."""
    names: list[str] = []
    for name, _info in model.model_fields.items():
        nested = NESTED.get(name)
        names += leaf_fields(nested, f"{prefix}{name}.") if nested else [prefix + name]
    return names


class Shown(HTMLParser):
    """The page's text, and a check that its elements nest as they should."""

    VOID = frozenset({"meta", "link", "input", "br", "img"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "img", "style", "iframe"} or any(
            k.startswith("on") or k == "style" for k, _ in attrs
        ):
            self.errors.append(f"<{tag} {attrs}>")
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.errors.append(f"</{tag}> closes nothing open")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: bytes) -> Shown:
    shown = Shown()
    shown.feed(page.decode())
    shown.close()
    assert shown.errors == []
    assert shown.open == []
    return shown


def shown_text(page: bytes) -> str:
    return "".join(parse(page).text)


def values_of(order: dict[str, Any]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in order.items():
        if isinstance(value, dict):
            values |= {f"{key}.{k}": v for k, v in values_of(value).items()}
        elif isinstance(value, list):
            for item in value:
                for k, v in values_of(item).items():
                    values.setdefault(f"{key}.{k}", []).extend(v)
        else:
            values[key] = [str(value)]
    return values


def test_every_field_of_the_message_is_on_the_page() -> None:
    """The field list comes from the validating model, so a new field cannot be forgotten here."""
    doc = order_doc(3, seed=9, items=3)
    doc["internal_signature"] = "sig-internal-1"
    doc["payment"]["request_id"] = "req-42"
    order = Order.model_validate_json(json.dumps(doc))
    text = shown_text(PAGES.order(order_to_json_bytes(order)))
    values = values_of(json.loads(order_to_json_bytes(order)))
    assert set(values) == set(leaf_fields(Order))
    for field, shown in values.items():
        for value in shown:
            assert value in text, f"{field} = {value!r} is not on the page"


TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xD7FF) | st.characters(min_codepoint=0xE000),
               min_size=1, max_size=255)  # fmt: skip
ODD = st.sampled_from(["<script>alert(1)</script>", "a & b", "\u202eRTL", "🚚📦", "\\u003c", '"q" \'s\'',
                       "</td></tr></table>", "&amp;lt;", "\x7f", "ä" * 255])  # fmt: skip
FREE = TEXT | ODD
ALNUM = st.text("abcXYZ019", min_size=1, max_size=64)
BIGINT = st.integers(1, BIGINT_MAX)
MONEY = st.integers(0, BIGINT_MAX)
# date_created over the validator's whole range: local times of any year, every offset of a real zone
# (-12:00..+14:00, odd ones like +05:45), 0-9 fraction digits, either letter case; the instant stays
# within years 1..9999 in UTC, as the validator requires.
LOCAL = st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30))
OFFSET = st.integers(-12 * 60, 14 * 60).map(lambda m: f"{'+-'[m < 0]}{abs(m) // 60:02}:{abs(m) % 60:02}")
FRACTION = st.integers(0, 9).flatmap(
    lambda n: st.just("") if n == 0 else st.text("0123456789", min_size=n, max_size=n).map(lambda d: "." + d)
)
SENT = st.builds(
    lambda local, fraction, zone, lower: (
        local.isoformat(sep="tT"[not lower], timespec="seconds")
        + fraction
        + (zone.lower() if lower else zone)
    ),
    LOCAL,
    FRACTION,
    st.just("Z") | st.just("-00:00") | OFFSET,
    st.booleans(),
) | st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "0001-01-01T14:00:00+14:00"])


@st.composite
def orders(draw: st.DrawFn) -> Order:
    items = draw(st.integers(1, 3)) if draw(st.integers(0, 20)) else MAX_ITEMS
    item = {"chrt_id": draw(BIGINT), "track_number": draw(FREE), "price": draw(MONEY), "rid": draw(ALNUM),
            "name": draw(FREE), "sale": draw(st.integers(0, 100)), "size": draw(FREE),
            "total_price": draw(MONEY), "nm_id": draw(BIGINT), "brand": draw(FREE),
            "status": draw(st.integers(0, INTEGER_MAX))}  # fmt: skip
    moment = draw(SENT)
    return Order.model_validate(
        {
            "order_uid": draw(ALNUM),
            "track_number": draw(ALNUM),
            "entry": draw(FREE),
            "delivery": {
                "name": draw(FREE),
                "phone": "+" + draw(st.from_regex(r"[1-9][0-9]{7,14}", fullmatch=True)),
                "zip": draw(st.from_regex(r"[0-9]{1,16}", fullmatch=True)),
                "city": draw(FREE),
                "address": draw(FREE),
                "region": draw(FREE),
                "email": "a.b@example.com",
            },
            "payment": {
                "transaction": draw(ALNUM),
                "request_id": draw(st.just("") | FREE),
                "currency": "USD",
                "provider": draw(FREE),
                "amount": draw(MONEY),
                # payment_dt: seconds, milliseconds (1637907727000), the BIGINT maximum
                "payment_dt": draw(BIGINT | st.just(1637907727000) | st.just(BIGINT_MAX)),
                "bank": draw(FREE),
                "delivery_cost": draw(MONEY),
                "goods_total": draw(BIGINT),
                "custom_fee": draw(MONEY),
            },
            "items": [item] * items,
            "locale": draw(st.sampled_from(["en", "ru", "zh-Hant-TW", "sr-Latn-RS"])),
            "internal_signature": draw(st.just("") | FREE),
            "customer_id": draw(FREE),
            "delivery_service": draw(FREE),
            "shardkey": "9" * 16,
            "sm_id": draw(BIGINT),
            "date_created": moment,
            "oof_shard": "0",
        },
        strict=False,
    )


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(orders())
def test_any_valid_order_renders_a_200_page_showing_its_values(order: Order) -> None:
    body = order_to_json_bytes(order)
    cache = OrderCache(BIG, BIG, BIG)
    lookup = OrderLookup(cache, Source({order.order_uid: body}), timeout_s=1)
    found = page_answer(lookup, PAGES, order.order_uid, None, "rid-1")
    assert found.status == 200
    text = shown_text(found.body)
    sent = order.date_created
    assert f"{sent[:10]} {sent[11:19]} {'UTC' if sent[-1] in 'Zz' else sent[-6:]}" in text  # as sent
    for field, shown in values_of(json.loads(body)).items():
        assert shown[0] in text, f"{field} = {shown[0]!r} is not on the page"
    assert "rid-1" not in found.body.decode()  # an order page carries no request id


def page_answer(lookup: OrderLookup, pages: Pages, uid: str, if_none_match: str | None, rid: str) -> Answer:
    """What ``GET /orders/{uid}`` answers: from the cache, else the full answer."""
    answers = OrderAnswers(lookup, pages)
    headers = [] if if_none_match is None else [(b"if-none-match", if_none_match.encode())]
    scope = {"headers": headers, "state": {"request_id": rid}}
    return answers.page_hit(scope, uid) or asyncio.run(answers.page(scope, uid))


class Source:
    def __init__(self, orders: dict[str, bytes]) -> None:
        self._orders = orders

    async def get(self, order_uid: str, timeout_s: float) -> StoredOrder | None:
        body = self._orders.get(order_uid)
        return None if body is None else StoredOrder(order_uid, body)


def test_values_are_escaped_by_the_template_however_the_json_spells_them() -> None:
    """Autoescaping works on the decoded values: a character spelled ``\\uXXXX`` in the JSON is
    escaped like the character itself, and the two spellings give the same page."""
    doc = order_doc(1, seed=3)
    doc["customer_id"] = "<b>&\"'</b> ä 🚚"
    plain = json.dumps(doc, ensure_ascii=False).encode()
    escaped = json.dumps(doc, ensure_ascii=True).encode()  # every non-ASCII character as \u....
    assert b"\\u" in escaped
    page = PAGES.order(plain)
    assert page == PAGES.order(escaped)
    assert str(escape(doc["customer_id"])).encode() in page  # what autoescaping does
    assert b"<b>" not in page
    assert doc["customer_id"] in shown_text(page)


def test_a_json_that_is_not_an_order_shows_raw_and_is_not_an_error() -> None:
    page = PAGES.order(b'{"order_uid":"x","items":"<not a list>"}')
    assert "&lt;not a list&gt;" in page.decode()
    parse(page)


@pytest.mark.parametrize("value", [1637907727000, BIGINT_MAX, -1, "text", None, 1.5e300])
def test_time_helpers_show_what_they_cannot_format(value: object) -> None:
    assert unix_time(value) in {str(value)} | (
        {unix_time(value)} if isinstance(value, int) and value < 10**11 else set()
    )
    assert iso_time(value) == str(value)


def test_time_helpers_format_what_they_can() -> None:
    assert unix_time(1637907727) == "2021-11-26 06:22:07 UTC"
    assert iso_time("2021-11-26T09:22:19+03:00") == "2021-11-26 09:22:19 +03:00"  # as sent, not converted
    assert iso_time("2021-11-26T06:22:19.123456789Z") == "2021-11-26 06:22:19 UTC"
    assert iso_time("2021-11-26t06:22:19.5-00:00") == "2021-11-26 06:22:19 -00:00"


@pytest.mark.parametrize(
    ("header", "matches"),
    [('"abc"', True), ('W/"abc"', True), ('"x", "abc"', True), ("*", True), ('"abc', False),
     ("", False), ('"ABC"', False), ("\x00", False), ('"x",,"abc" ', True)],
)  # fmt: skip
def test_if_none_match_forms(header: str, matches: bool) -> None:
    assert etag_matches(header, '"abc"') is matches


def test_a_page_is_rendered_once_and_answered_from_the_entry_then() -> None:
    doc = order_doc(2, seed=4)
    body = order_to_json_bytes(Order.model_validate_json(json.dumps(doc)))
    cache = OrderCache(BIG, BIG, BIG)
    lookup = OrderLookup(cache, Source({doc["order_uid"]: body}), timeout_s=1)
    miss = page_answer(lookup, PAGES, doc["order_uid"], None, "r")
    hit = page_answer(lookup, PAGES, doc["order_uid"], None, "r")
    entry = cache.get(doc["order_uid"])
    assert entry is not None
    assert entry.page is hit.body
    assert miss.body == hit.body
    headers = dict(hit.headers)
    assert headers[b"x-cache"] == b"HIT"
    assert dict(miss.headers)[b"x-cache"] == b"MISS"
    assert headers[b"etag"].decode().startswith(entry.etag[:-1])  # the JSON's ETag, + templates' version
    again = page_answer(lookup, PAGES, doc["order_uid"], headers[b"etag"].decode(), "r")
    assert (again.status, again.body) == (304, b"")
    for uid, status in [("nosuch", 404), ("no-such", 400), ("a" * 65, 400)]:
        error = page_answer(lookup, PAGES, uid, None, "req-7")
        assert error.status == status
        assert b"req-7" in error.body


def asgi_get(app: Any, path: str) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [],
        "query_string": b"q=x",
        "state": {"request_id": "rid-1"},
    }
    asyncio.run(app(scope, receive, send))
    return sent


def test_a_miss_is_counted_once() -> None:
    doc = order_doc(5, seed=4)
    body = order_to_json_bytes(Order.model_validate_json(json.dumps(doc)))
    cache = OrderCache(BIG, BIG, BIG)
    answers = OrderAnswers(OrderLookup(cache, Source({doc["order_uid"]: body}), 1), PAGES)

    async def unused(*_args: Any) -> Any:
        raise AssertionError("not a look-up")

    route = AnswerRoute("/api/orders/{order_uid}", answers.json, hit=answers.json_hit)
    endpoint = FastPath(unused, [route], unused)
    asgi_get(endpoint, f"/api/orders/{doc['order_uid']}")
    asgi_get(endpoint, f"/api/orders/{doc['order_uid']}")
    stats = cache.stats()
    assert (stats.misses, stats.hits) == (1, 1)
