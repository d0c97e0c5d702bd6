"""The operator's console (/dlq) and the drift guard on the whole service, in headless Chromium.

* a mixed run - every dead-letter reason, a hostile non-JSON value and a stub - in the grouped view,
  a letter's page of each kind, filters and paging, read-only without a token, no CSP violation;
* an operator signs in, re-validates a group (a dry run) and replays it after the validator changed
  through a setting: the fixed orders are stored once, a second replay sends nothing;
* actions without sign-in, with a wrong token, without or with a wrong CSRF token, from another
  origin: refused, nothing replayed;
* the drift guard: the mock mix never trips it; a producer switching to a new field trips it within
  the window, nothing after the trip is dead-lettered, the offsets hold, ``l0-dlq resume`` continues.

Screenshots go to test-artifacts/dlq/ (git-ignored).
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer
from playwright.sync_api import Page, expect

from internal.pkg.kafka_offsets import committed_offsets, partition_ends
from internal.tools.dlq import main as dlq_main
from tests.conftest import Topics
from tests.e2e.helpers import headers, make_input, produce, read_topic, stored_orders, wait_committed_to_end
from tests.e2e.live_prometheus import LivePrometheus
from tests.e2e.test_monitoring import firing, live_prometheus, resolved  # noqa: F401 - a fixture too
from tests.e2e.test_ui_browser import browser, open_page, playwright  # noqa: F401 - the fixtures
from tests.orders import encode, order_doc
from tests.service_proc import ROOT, ServiceProcess, StartService
from tests.support import wait_until

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "test-artifacts" / "dlq"
FAULTY = ROOT / "tests" / "e2e" / "faulty_service.py"
TOKEN = "operator-token-for-the-test"  # noqa: S105 - the test's own
HOSTILE = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
# More than the guard's threshold (48 of 50) so that it trips, fewer than two windows' worth so that
# the letters held at the trip cannot trip it again after the resume.
SWITCHED = 60
FIXED = 100
BLOCK = """
CREATE FUNCTION refuse_blocked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.customer_id = 'blocked' THEN RAISE EXCEPTION 'customer blocked'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_blocked BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_blocked();
"""


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def send(brokers: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": brokers, "message.max.bytes": 2_000_000, "linger.ms": 5})
    for key, value in messages:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0


def post(base: str, path: str, form: dict[str, str], headers: dict[str, str]) -> int:
    body = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback only
        base + path, data=body, method="POST",
        headers={"content-type": "application/x-www-form-urlencoded", **headers},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback only
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return err.code


def letters_indexed(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    return int(row[0]) if row else 0


def test_the_grouped_view_and_letter_pages_after_a_mixed_run(  # noqa: PLR0915 - one story, in order
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    small_dlq: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
    open_page: Callable[..., Page],  # noqa: F811
) -> None:
    """Every reason present: invalid, undecodable (a hostile text), conflict, db_rejected (a trigger),
    processing_error (an injected bug) and a stub (larger than the small dead-letter topic takes)."""
    valid = [order_doc(i, seed=61) for i in range(6)]
    buggy = valid[5]
    env = {**service_env, "KAFKA_DLQ_TOPIC": small_dlq, "L0_TEST_FAULT": f"store:{buggy['order_uid']}",
           "CONSOLE_OPERATOR_TOKEN": ""}  # fmt: skip
    service = start_service(env, script=FAULTY)
    with psycopg.connect(schema_dsn, autocommit=True) as conn:
        conn.execute(BLOCK)
    invalid = []
    for i in range(12):
        doc = order_doc(100 + i, seed=61)
        doc["items"][0]["price"] = -1 - i
        invalid.append(doc)
    conflict = dict(valid[0], customer_id="someone-else")
    blocked = order_doc(200, seed=61) | {"customer_id": "blocked"}
    messages: list[tuple[bytes | None, bytes]] = [(d["order_uid"].encode(), encode(d)) for d in valid[:5]]
    messages += [(d["order_uid"].encode(), encode(d)) for d in invalid]
    messages += [(b"hostile", HOSTILE.encode() + b"\x00\x1b[2J")]
    messages += [(b"big", b"x" * 300_000)]  # undecodable, and its letter is over the topic's 200 KB
    messages += [(conflict["order_uid"].encode(), encode(conflict))]
    messages += [
        (blocked["order_uid"].encode(), encode(blocked)),
        (buggy["order_uid"].encode(), encode(buggy)),
    ]
    send(kafka_brokers, topics.orders, messages)
    wait_committed_to_end(
        kafka_brokers, topics.orders, topics.group, len(messages), timeout_s=90, services=[service]
    )
    assert letters_indexed(schema_dsn) == len(messages) - 5
    metrics = service.get("/metrics").body.decode()
    price = 'dlq_letters_total{group="invalid · items[].price · must be at least 0",reason="invalid"} 12.0'
    assert price in metrics
    base = f"http://127.0.0.1:{service.port}"
    page = open_page()

    page.goto(base + "/dlq")
    expect(page.get_by_text("Read-only: no operator token is configured")).to_be_visible()
    groups = page.locator("table.groups tbody tr td[data-label='Group']").all_inner_texts()
    reasons = {g.split(" · ")[0] for g in groups}
    assert reasons == {"invalid", "undecodable", "conflict", "db_rejected", "processing_error"}
    assert "invalid · items[].price · must be at least 0" in groups  # 12 letters, one group
    row = page.locator("table.groups tbody tr").filter(has_text="items[].price")
    expect(row.locator("td[data-label='Letters']")).to_have_text("12")
    assert page.evaluate("window.__xss") is None
    screenshot(page, "overview")

    # Filters and paging: undecodable only; two letters a page, newest first.
    page.select_option("#f-reason", "undecodable")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.groups tbody tr")).to_have_count(
        1
    )  # not JSON: the hostile text and the big one
    page.goto(base + "/dlq?reason=invalid&n=5")
    first = page.locator("table.letters tbody tr").all_inner_texts()
    assert len(first) == 5
    page.get_by_role("link", name="Older →").click()
    second = page.locator("table.letters tbody tr").all_inner_texts()
    assert len(second) == 5
    assert not set(first) & set(second)
    screenshot(page, "filtered-paged")

    # A JSON letter: pretty value, every header, every violation, the uid (not stored: no link).
    page.goto(base + "/dlq?g=" + urllib.parse.quote("invalid · items[].price · must be at least 0"))
    # None of them a stub: the oversized letter (undecodable) was refused in a record batch with
    # some of these, and only it may go as a stub (its neighbours go again, alone).
    expect(page.locator("table.letters tbody tr .badge")).to_have_count(0)
    page.locator("table.letters tbody tr a").first.click()
    expect(page.get_by_role("heading", name="Value (JSON)")).to_be_visible()
    expect(page.locator("pre.value")).to_contain_text('"price": -')
    expect(page.locator("ul.violations")).to_contain_text("items[0].price: must be at least 0")
    expect(page.locator("dl.headers")).to_contain_text("dlq.original.offset")
    screenshot(page, "letter-json")

    # A conflict letter's uid is stored: linked to the order page.
    page.goto(base + "/dlq?reason=conflict")
    page.locator("table.letters tbody tr a").first.click()
    expect(page.get_by_role("link", name=conflict["order_uid"])).to_have_attribute(
        "href", f"/orders/{conflict['order_uid']}"
    )

    # The hostile non-JSON value: text, escaped, never run.
    page.goto(base + "/dlq?" + urllib.parse.urlencode({"g": "undecodable · not JSON"}))
    page.locator("table.letters tbody tr").filter(has_not_text="stub").locator("a").first.click()
    expect(page.get_by_role("heading", name="Value (not JSON, shown as escaped text)")).to_be_visible()
    expect(page.locator("pre.value")).to_contain_text("<script>window.__xss=1</script>")
    expect(page.locator("pre.value")).to_contain_text("\\x00\\x1b")
    assert page.evaluate("window.__xss") is None
    screenshot(page, "letter-not-json")

    # The stub: marked in the list and on its page.
    page.goto(base + "/dlq?" + urllib.parse.urlencode({"g": "undecodable · not JSON"}))
    page.locator("table.letters tbody tr").filter(has_text="stub").locator("a").first.click()
    expect(page.locator("p.stub")).to_contain_text("Stub letter")
    screenshot(page, "letter-stub")

    # Read-only: an action is refused, whatever it carries.
    assert post(base, "/dlq/replay", {"scope": "group", "g": "x", "csrf": "x"}, {"origin": base}) == 403
    assert service.stop() == 0


def test_an_operator_revalidates_and_replays_a_group_after_the_rule_changed(  # noqa: PLR0915 - one story
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
    open_page: Callable[..., Page],  # noqa: F811
) -> None:
    """payment_dt in milliseconds is refused by the plausibility rule; a deploy turns the rule off
    (consumer.plausibility_checks: false) and the operator replays the group: stored once."""
    env = {**service_env, "CONSOLE_OPERATOR_TOKEN": TOKEN}
    service = start_service(env)
    docs = [order_doc(i, seed=62) for i in range(8)]
    for doc in docs:
        doc["payment"]["payment_dt"] *= 1000
    send(kafka_brokers, topics.orders, [(d["order_uid"].encode(), encode(d)) for d in docs])
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 8, timeout_s=60, services=[service])
    assert stored_orders(schema_dsn) == {}
    assert service.stop() == 0
    service = start_service({**env, "CONSUMER_PLAUSIBILITY_CHECKS": "false"})
    base = f"http://127.0.0.1:{service.port}"
    with psycopg.connect(schema_dsn) as conn:
        (group,) = conn.execute("SELECT DISTINCT group_key FROM dead_letters").fetchone() or ("",)
    assert group.startswith("invalid · payment.payment_dt · must be Unix seconds, not milliseconds")

    # Security first: every way around the sign-in is refused and nothing is replayed.
    form = {"scope": "group", "g": group}
    assert post(base, "/dlq/replay", form, {"origin": base}) == 403  # not signed in
    assert post(base, "/dlq/sign-in", {"token": "wrong"}, {"origin": base}) == 403
    assert post(base, "/dlq/sign-in", {"token": TOKEN}, {"origin": "http://evil.example"}) == 403

    page = open_page()
    page.goto(base + "/dlq")
    page.get_by_role("link", name="Operator sign-in").click()
    page.fill("#token", TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as operator")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "l0_console")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/dlq"
    # A forged form from another origin, with the session cookie but without / with a wrong CSRF token.
    session = {"cookie": f"l0_console={cookie['value']}"}
    assert post(base, "/dlq/replay", form, {**session, "origin": base}) == 403
    assert post(base, "/dlq/replay", {**form, "csrf": "0" * 64}, {**session, "origin": base}) == 403
    page.goto(base + "/dlq/group?g=" + urllib.parse.quote(group))
    token = re.search(r'name="csrf" value="([^"]+)"', page.content())
    assert token is not None
    signed = {**form, "csrf": token.group(1)}
    assert post(base, "/dlq/replay", signed, {**session, "origin": "http://evil.example"}) == 403
    assert post(base, "/dlq/replay", signed, session) == 403  # no Origin
    assert sum(partition_ends(kafka_brokers, topics.orders).values()) == 8  # nothing replayed

    page.get_by_role("button", name="Re-validate now (dry run)").click()
    expect(page.locator("#would-store")).to_have_text("8")
    expect(page.locator("#still-failing")).to_have_text("0")
    screenshot(page, "revalidate")
    page.go_back()
    page.get_by_role("button", name="Replay to the original topic").click()
    expect(page.locator("#sent")).to_have_text("8")
    screenshot(page, "replay")
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 16, timeout_s=60, services=[service])
    assert set(stored_orders(schema_dsn)) == {d["order_uid"] for d in docs}

    page.goto(base + "/dlq/group?g=" + urllib.parse.quote(group))
    page.get_by_role("button", name="Replay to the original topic").click()
    expect(page.locator("#sent")).to_have_text("0")
    expect(page.locator("#already-stored")).to_have_text("8")
    assert sum(partition_ends(kafka_brokers, topics.orders).values()) == 16
    assert any('"event": "dlq_action"' in line and '"sent": 8' in line for line in service.log_lines())
    assert service.stop() == 0


def test_the_drift_guard_pauses_a_switch_to_a_new_field_and_resume_continues(
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
    capsys: pytest.CaptureFixture[str],
    live_prometheus: Callable[[ServiceProcess], LivePrometheus],  # noqa: F811
    open_page: Callable[..., Page],  # noqa: F811
) -> None:
    """With a live Prometheus on the shipped rules (a clock 60 times faster): DeadLetterDrift fires
    while the guard holds and resolves after the resume."""
    env = {**service_env, "CONSOLE_OPERATOR_TOKEN": TOKEN, "CONSUMER_DRIFT_WINDOW": "50"}
    service = start_service(env)
    prometheus = live_prometheus(service)
    # The mock mix (10 % invalid) never trips it, even with a window of 50.
    mix = make_input(tmp_path, 400, invalid_rate=0.1, seed=63)
    produce(mix.path, topics.orders, kafka_brokers)
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 400, timeout_s=90, services=[service])
    assert service.get("/readyz").status == 200
    before = len(read_topic(kafka_brokers, topics.dlq))

    # A producer adds a field the validator refuses, on every message; then rolls back (the fix).
    switched = []
    for i in range(SWITCHED):
        doc = order_doc(300 + i, seed=63)
        doc["loyalty_tier"] = "gold"
        switched.append((doc["order_uid"].encode(), encode(doc)))
    send(kafka_brokers, topics.orders, switched)

    def paused() -> bool:
        service.assert_alive()
        return "dead-letter drift" in service.get("/readyz").body.decode()

    wait_until(paused, timeout_s=60, what="the drift guard to pause consumption")
    letters_at_trip = len(read_topic(kafka_brokers, topics.dlq)) - before
    assert letters_at_trip < 48  # tripped within the window (0.95 of 50)
    metrics = service.get("/metrics").body.decode()
    assert "consumer_drift_paused 1.0" in metrics
    page = open_page()
    page.goto(f"http://127.0.0.1:{service.port}/dlq")
    expect(page.locator("section.drift")).to_contain_text("invalid · loyalty_tier · unknown field")
    screenshot(page, "drift-paused")
    (alert,) = firing(prometheus, "DeadLetterDrift")
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook"] == "docs/runbook.md#dead-letter-drift"
    # Held: nothing more is dead-lettered, and the offsets do not move to the end.
    time.sleep(3)
    ends = partition_ends(kafka_brokers, topics.orders)
    assert len(read_topic(kafka_brokers, topics.dlq)) - before == letters_at_trip
    done = committed_offsets(kafka_brokers, topics.orders, topics.group, list(ends))
    assert sum(max(0, done[p]) for p in ends) < sum(ends.values())

    # The producer's rollback: valid orders again, behind the held ones.
    fixed = [order_doc(500 + i, seed=63) for i in range(FIXED)]
    send(kafka_brokers, topics.orders, [(d["order_uid"].encode(), encode(d)) for d in fixed])
    code = dlq_main(["resume", "--url", f"http://127.0.0.1:{service.port}", "--token", TOKEN])
    assert code == 0
    assert "resumed" in capsys.readouterr().out
    total = 400 + SWITCHED + FIXED
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, total, timeout_s=60, services=[service])
    letters = read_topic(kafka_brokers, topics.dlq)
    switched_origins = {
        (headers(m)["dlq.original.partition"], headers(m)["dlq.original.offset"])
        for m in letters
        if headers(m)["dlq.reason"] == "invalid" and b"loyalty_tier" in (m.value() or b"")
    }
    assert len(switched_origins) == SWITCHED  # resumed: the held messages went on, each dead-lettered
    assert {d["order_uid"] for d in fixed} <= set(stored_orders(schema_dsn))  # and what came after
    assert service.get("/readyz").status == 200
    resolved(prometheus, "DeadLetterDrift")
    assert service.stop() == 0
