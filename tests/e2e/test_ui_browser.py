"""The HTML UI in a real browser: headless Chromium (Debian's, driven by Playwright) against the real
service, with orders put in through Kafka like any other.

What a person sees is asserted, not the HTML source: the look-up form leads to the order page, the
not-found state, order text that looks like HTML shown as text and never run, search by track number,
and a phone-width page that does not scroll sideways. Screenshots of each go to test-artifacts/ui/
(git-ignored) so a person can look at them.

Chromium comes from ``scripts/install-browser.sh``; Playwright's own browser download cannot work on
these machines (only package registries are reachable). When the browser is missing the tests FAIL
saying so - they never skip.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.conftest import Topics
from tests.e2e.helpers import produce
from tests.orders import order_doc
from tests.service_proc import ROOT, StartService
from tests.support import wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach Google's hosts, which this
# closed network refuses many times a second; --no-sandbox because the tests run as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
STORE_TIMEOUT_S = 60
# Playwright's default of 30 s per action would hide a hung page for too long on a local service.
ACTION_TIMEOUT_MS = 15_000

# Each of the four payloads of the issue, each field holding at least one of them; mixed so that a
# field escaped in one place but not another (text, attribute, link) would still be caught.
XSS_TEXT = {
    "delivery.name": "<script>window.__xss=1</script>",
    "customer_id": "\"quotes\" <script>window.__xss=3</script> 'single'",
    "items[0].name": "'single' <img src=x onerror=window.__xss=2>",
    "items[0].brand": '<img src=x onerror=window.__xss=2> "quotes"',
}
LONG_WORD = "W" * 255  # the longest text a field allows, with no place to break a line


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/install-browser.sh (Debian's chromium; "
            "Playwright's own browser download does not work here)"
        )
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """New pages, each in a fresh context (no shared cookies or cache) of the given viewport size.
    Every test ends by checking that Chromium reported no Content-Security-Policy violation (and no
    other console error) on any page it opened: the pages must live within their own policy."""
    contexts: list[BrowserContext] = []
    console_errors: list[str] = []

    def open_(viewport: ViewportSize = DESKTOP, scale: float = 1) -> Page:
        context = browser.new_context(viewport=viewport, device_scale_factor=scale)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        return page

    yield open_
    for context in contexts:
        context.close()
    # A 404/400 page is an error answer Chromium logs as "Failed to load resource": expected there.
    problems = [e for e in console_errors if not e.startswith("Failed to load resource")]
    assert problems == [], f"console errors (CSP violations among them?): {problems}"


@pytest.fixture
def serve(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> Callable[[list[dict[str, Any]]], str]:
    """Put orders into the test's topic through the producer, start the service, wait until every one
    is stored; returns the service's base URL."""

    def serve_(docs: list[dict[str, Any]]) -> str:
        path = tmp_path / "orders.json"
        path.write_text(json.dumps(docs, ensure_ascii=False), encoding="utf-8")
        produce(path, topics.orders, kafka_brokers)
        service = start_service(service_env)
        uids = [doc["order_uid"] for doc in docs]

        def all_stored() -> bool:
            service.assert_alive()
            return all(service.get(f"/api/orders/{uid}").status == 200 for uid in uids)

        wait_until(all_stored, timeout_s=STORE_TIMEOUT_S, what=f"{len(uids)} orders to be stored")
        return f"http://127.0.0.1:{service.port}"

    return serve_


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def card(page: Page, heading: str) -> Locator:
    """The card section whose heading is exactly ``heading`` (the page has several ``Delivery`` texts)."""
    return page.locator("section.card").filter(has=page.get_by_role("heading", name=heading, exact=True))


def fact(scope: Locator, label: str) -> str:
    """The value shown next to ``label`` in a facts list."""
    return scope.locator(f"xpath=.//dt[normalize-space()='{label}']/following-sibling::dd[1]").inner_text()


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_lookup_form_shows_the_stored_order(
    serve: Callable[[list[dict[str, Any]]], str], open_page: Callable[..., Page]
) -> None:
    docs = [order_doc(i, seed=21, items=3) for i in range(3)]
    wanted = docs[1]
    base = serve(docs)
    page = open_page()

    page.goto(base + "/")
    for doc in docs:  # the recent orders table lists what was stored
        expect(page.locator(f"a[href='/orders/{doc['order_uid']}']")).to_be_visible()
    screenshot(page, "home")

    page.fill("#order_uid", wanted["order_uid"])
    page.get_by_role("button", name="Show order").click()

    expect(page).to_have_url(f"{base}/orders/{wanted['order_uid']}")
    expect(page.locator("h1 code.uid")).to_have_text(wanted["order_uid"])
    summary = card(page, f"Order {wanted['order_uid']}")
    assert fact(summary, "Track number") == wanted["track_number"]
    assert fact(summary, "Customer") == wanted["customer_id"]
    assert fact(card(page, "Delivery"), "Name") == wanted["delivery"]["name"]
    payment = wanted["payment"]
    assert fact(card(page, "Payment"), "Amount") == f"{payment['amount']} {payment['currency']}"
    items = card(page, f"Items ({len(wanted['items'])})")
    assert items.locator("tbody td[data-label='Name']").all_inner_texts() == [
        i["name"] for i in wanted["items"]
    ]
    expect(page.locator("p.ok")).to_contain_text("Amounts add up")
    screenshot(page, "order")


def test_unknown_uid_shows_not_found_with_status_404(
    serve: Callable[[list[dict[str, Any]]], str], open_page: Callable[..., Page]
) -> None:
    base = serve([order_doc(0, seed=22)])
    page = open_page()
    missing = "NoSuchOrder0123456789"

    response = page.goto(f"{base}/orders/{missing}")

    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Order not found")
    expect(page.locator("main code.uid")).to_have_text(missing)
    assert page.title().startswith("Order not found")
    screenshot(page, "not-found")


def _xss_order() -> dict[str, Any]:
    doc = copy.deepcopy(order_doc(0, seed=23, items=2))
    doc["delivery"]["name"] = XSS_TEXT["delivery.name"]
    doc["customer_id"] = XSS_TEXT["customer_id"]
    doc["items"][0]["name"] = XSS_TEXT["items[0].name"]
    doc["items"][0]["brand"] = XSS_TEXT["items[0].brand"]
    return doc  # amounts untouched: only text fields changed, so the order stays valid


def test_html_in_order_fields_is_shown_as_text_and_never_runs(
    serve: Callable[[list[dict[str, Any]]], str], open_page: Callable[..., Page]
) -> None:
    doc = _xss_order()
    base = serve([doc])
    page = open_page()
    uid = doc["order_uid"]

    page.goto(f"{base}/orders/{uid}")
    shown = page.inner_text("main")
    for field, payload in XSS_TEXT.items():
        assert payload in shown, f"{field} is not shown literally"
    assert fact(card(page, "Delivery"), "Name") == XSS_TEXT["delivery.name"]
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 0  # the UI ships no script: any would be injected
    assert page.evaluate("window.__xss") is None
    screenshot(page, "xss-order")

    # The same text in a table row (recent orders) and in an attribute (the search box's value).
    page.goto(base + "/")
    assert XSS_TEXT["customer_id"] in page.inner_text("main table")
    page.goto(f"{base}/search?q={quote(XSS_TEXT['customer_id'], safe='')}")
    expect(page.locator("#q")).to_have_value(XSS_TEXT["customer_id"])
    expect(page.locator(f"main table a[href='/orders/{uid}']")).to_be_visible()
    assert page.locator("img").count() == 0
    assert page.evaluate("window.__xss") is None


def test_search_by_track_number_links_to_the_order(
    serve: Callable[[list[dict[str, Any]]], str], open_page: Callable[..., Page]
) -> None:
    docs = [order_doc(i, seed=24) for i in range(4)]
    wanted = docs[2]
    base = serve(docs)
    page = open_page()

    page.goto(base + "/")
    page.fill("#top-q", wanted["track_number"])
    page.get_by_role("button", name="Search", exact=True).click()

    expect(page).to_have_url(re.compile(r"/search\?q=" + re.escape(wanted["track_number"]) + "$"))
    links = page.locator("main table tbody a")
    expect(links).to_have_count(1)
    expect(links).to_have_text(wanted["order_uid"])
    links.click()
    expect(page).to_have_url(f"{base}/orders/{wanted['order_uid']}")
    assert fact(card(page, f"Order {wanted['order_uid']}"), "Track number") == wanted["track_number"]


def test_phone_width_pages_do_not_scroll_sideways(
    serve: Callable[[list[dict[str, Any]]], str], open_page: Callable[..., Page]
) -> None:
    typical = order_doc(0, seed=25, items=5)
    long_words = copy.deepcopy(order_doc(1, seed=25, items=2))
    long_words["customer_id"] = LONG_WORD
    long_words["delivery"]["name"] = LONG_WORD
    long_words["items"][0]["name"] = LONG_WORD
    base = serve([typical, long_words])
    page = open_page(PHONE, scale=2)

    paths = {
        "phone-order": f"/orders/{typical['order_uid']}",
        "phone-long-words": f"/orders/{long_words['order_uid']}",
        "phone-home": "/",
        "phone-search": f"/search?q={typical['track_number']}",
        "phone-not-found": "/orders/NoSuchOrder",
    }
    for name, path in paths.items():
        page.goto(base + path)
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert no_horizontal_scroll(page), f"{path} scrolls sideways at 390 px: {width}"
        # Tables fit by squeezing columns to a letter or two per line unless rows stack on a phone.
        narrowest = page.evaluate(
            "Math.min(...Array.from(document.querySelectorAll('tbody td'), td => td.clientWidth))"
        )
        assert name == "phone-not-found" or narrowest >= 200, f"{path}: a table cell is {narrowest} px wide"
        if name in {"phone-order", "phone-long-words"}:
            screenshot(page, name)


def test_the_whole_order_is_on_its_page_and_a_1000_item_order_reads_well(
    serve: Callable[[list[dict[str, Any]]], str], open_page: Callable[..., Page], service_env: dict[str, str]
) -> None:
    """Every field of the message, the items' identifiers included; a payment_dt in milliseconds
    (accepted with the plausibility rules off, as for historic data; once a 500) shown raw; 1,000
    items with row numbers under a header that stays."""
    service_env["CONSUMER_PLAUSIBILITY_CHECKS"] = "false"  # the service serve() starts reads it
    whole = copy.deepcopy(order_doc(0, seed=26, items=3))
    whole["internal_signature"] = "sig-7f3a"
    whole["payment"]["request_id"] = "req-991"
    whole["payment"]["payment_dt"] *= 1000  # milliseconds: refused by default, accepted here
    many = order_doc(1, seed=26, items=1000)
    base = serve([whole, many])
    page = open_page()

    response = page.goto(f"{base}/orders/{whole['order_uid']}")
    assert response is not None
    assert response.status == 200
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    summary = card(page, f"Order {whole['order_uid']}")
    for label, key in [("Shard key", "shardkey"), ("SM id", "sm_id"), ("OOF shard", "oof_shard"),
                       ("Internal signature", "internal_signature"), ("Entry", "entry"),
                       ("Locale", "locale"), ("Delivery service", "delivery_service")]:  # fmt: skip
        assert fact(summary, label) == str(whole[key]), label
    payment = card(page, "Payment")
    assert fact(payment, "Request id") == "req-991"
    assert fact(payment, "Paid at") == str(whole["payment"]["payment_dt"])  # shown as sent
    delivery = card(page, "Delivery")
    for label, key in [("City", "city"), ("Region", "region"), ("Zip", "zip"), ("Address", "address")]:
        assert fact(delivery, label) == whole["delivery"][key], label
    rows = card(page, "Items (3)").locator("tbody tr")
    for n, item in enumerate(whole["items"]):
        row = rows.nth(n)
        assert row.locator("th").inner_text() == str(n + 1)  # row numbers
        for label in ("chrt_id", "nm_id", "rid", "Track number"):
            key = "track_number" if label == "Track number" else label
            assert row.locator(f"td[data-label='{label}']").inner_text() == str(item[key]), label
    screenshot(page, "order-whole")

    page.goto(f"{base}/orders/{many['order_uid']}")
    items = card(page, "Items (1000)")
    expect(items.locator("tbody tr")).to_have_count(1000)
    assert items.locator("tbody tr").nth(999).locator("th").inner_text() == "1000"
    box = items.locator(".table-wrap")
    header = items.locator("thead th").first
    top = header.bounding_box()
    box.evaluate("element => { element.scrollTop = element.scrollHeight / 2; }")
    assert box.evaluate("element => element.scrollTop") > 0, "the items scroll inside their box"
    assert header.bounding_box() == top, "the items' header row does not stay in view"
    screenshot(page, "order-1000-items")

    phone = open_page(PHONE, scale=2)
    phone.goto(f"{base}/orders/{whole['order_uid']}")
    assert no_horizontal_scroll(phone)
    screenshot(phone, "phone-order-whole")
