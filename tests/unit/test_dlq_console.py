"""The dead-letter console's pages and its guards (internal/api/dlq_console.py, console_auth.py),
through the real templates, with the read model, Kafka and the drift guard replaced by fakes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from internal.api.console_auth import ConsoleAuth
from internal.api.dlq_console import FORM_BYTES, DlqConsole, format_cursor, parse_cursor
from internal.consumer.drift import DriftGuard, DriftPolicy, DriftTrip
from internal.consumer.letters import H_ERROR, H_REASON, H_TRUNCATED
from internal.pkg.paths import templates_dir
from internal.store.dead_letters import Cursor, DeadLetterQueries, GroupRow, LetterFilter, LetterRow
from internal.tools.dlq_actions import ReplayResult, RevalidateStats
from internal.tools.dlq_letters import Letter
from internal.tools.dlq_replay import ReplayStats

TOKEN = "s3cret-operator-token"  # noqa: S105 - the test's own
ORIGIN = "http://testserver"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
GROUP = "invalid · items[].price · must be at least 0"


def row(offset: int, group: str = GROUP, uid: str | None = "u1", stub: bool = False) -> LetterRow:
    return LetterRow(
        "orders", offset % 3, offset, "orders.dlq", 0, offset, group.split(" · ", maxsplit=1)[0], group, uid,
        T0 + timedelta(seconds=offset), "items[0].price: must be at least 0", stub, 100,
    )  # fmt: skip


class FakeQueries(DeadLetterQueries):
    def __init__(self, rows: list[LetterRow]) -> None:  # no pool: answers from the list
        self.rows = rows

    async def groups(self, where: LetterFilter) -> list[GroupRow]:
        by: dict[str, list[LetterRow]] = {}
        for r in self._matching(where):
            by.setdefault(r.group_key, []).append(r)
        return [
            GroupRow(
                g,
                rs[0].reason,
                len(rs),
                min(r.failed_at for r in rs),
                max(r.failed_at for r in rs),
                rs[0].origin,
                rs[0].error,
            )
            for g, rs in by.items()
        ]

    def _matching(self, where: LetterFilter) -> list[LetterRow]:
        return [
            r
            for r in self.rows
            if (where.reason is None or r.reason == where.reason)
            and (where.group_key is None or r.group_key == where.group_key)
            and (where.partition is None or r.origin_partition == where.partition)
            and (where.since is None or r.failed_at >= where.since)
            and (where.until is None or r.failed_at < where.until)
        ]

    async def letters(
        self, where: LetterFilter, cursor: Cursor | None, size: int
    ) -> tuple[list[LetterRow], Cursor | None]:
        rows = sorted(self._matching(where), key=lambda r: (r.failed_at, r.origin), reverse=True)
        if cursor is not None:
            key = (cursor.failed_at, (cursor.origin_topic, cursor.origin_partition, cursor.origin_offset))
            rows = [r for r in rows if (r.failed_at, r.origin) < key]
        page = rows[:size]
        return page, (Cursor.after(page[-1]) if len(rows) > size else None)

    async def letter(self, topic: str, partition: int, offset: int) -> LetterRow | None:
        return next((r for r in self.rows if r.origin == (topic, partition, offset)), None)


class FakeActions:
    def __init__(self, letters: dict[tuple[int, int], Letter]) -> None:
        self.letters = letters
        self.replayed: list[Letter] = []
        self.revalidated: list[Letter] = []

    def fetch(self, places: Sequence[tuple[int, int]]) -> list[Letter]:
        return [self.letters[p] for p in places if p in self.letters]

    def revalidate(self, letters: Sequence[Letter]) -> RevalidateStats:
        self.revalidated += letters
        return RevalidateStats(chosen=len(letters), fetched=len(letters), would_store=len(letters))

    def replay(self, letters: Sequence[Letter]) -> ReplayResult:
        self.replayed += letters
        stats = ReplayStats(dry_run=False, selected=len(letters), queued=len(letters), delivered=len(letters))
        return ReplayResult(stats, ())


def letter(offset: int, value: bytes, *headers: tuple[str, bytes | None]) -> Letter:
    base = ((H_REASON, b"invalid"), (H_ERROR, b"items[0].price: must be at least 0"))
    return Letter(offset, b"k", value, (*base, *headers), 0)


@pytest.fixture
def world() -> tuple[FakeQueries, FakeActions, DriftGuard]:
    rows = [row(i) for i in range(60)]
    rows += [row(100, "undecodable · not JSON", uid=None), row(101, "invalid · $ · x", uid=HOSTILE)]
    rows += [row(102, "undecodable · larger than the limit", uid=None, stub=True)]
    letters = {
        (0, r.dlq_offset): letter(r.dlq_offset, b'{"order_uid":"u1","items":[{"price":-1}]}') for r in rows
    }
    letters[(0, 100)] = letter(100, HOSTILE.encode() + b"\x00\x1b[2J\xff")
    letters[(0, 101)] = letter(101, b'{"order_uid":' + repr(HOSTILE).encode() + b"}")
    letters[(0, 102)] = letter(102, b"{" * 1024, (H_TRUNCATED, b"true"))
    return FakeQueries(rows), FakeActions(letters), DriftGuard(DriftPolicy(10, 0.9))


def client(world: tuple[FakeQueries, FakeActions, DriftGuard], token: str = TOKEN) -> TestClient:
    queries, actions, drift = world
    console = DlqConsole(
        queries=queries, actions=actions, auth=ConsoleAuth(token), templates=templates_dir(),
        dlq_topic="orders.dlq", max_replay=25, drift=drift,
    )  # fmt: skip
    return TestClient(Starlette(routes=console.routes()), base_url=ORIGIN)


def signed_in(c: TestClient) -> str:
    """Sign in; returns the CSRF token the pages carry."""
    r = c.post("/dlq/sign-in", data={"token": TOKEN}, headers={"origin": ORIGIN}, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = c.get("/dlq/group", params={"g": GROUP}).text
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found
    return found.group(1)


def tampered(text: str, n: int) -> str:
    """``text`` with its last ``n`` characters (hex digits of a signature) replaced by others: a fixed
    replacement would equal the original whenever the signature happened to end in it."""
    tail = "0" * n if text[-n:] != "0" * n else "1" * n
    return text[:-n] + tail


def group_form(csrf: str | None) -> dict[str, str]:
    form = {"scope": "group", "g": GROUP}
    return form if csrf is None else {**form, "csrf": csrf}


def test_the_overview_groups_and_pages_newest_first(world: Any) -> None:
    c = client(world)
    page = c.get("/dlq").text
    assert GROUP in page
    assert "undecodable · not JSON" in page
    assert '<td class="num" data-label="Letters">60</td>' in page
    # Newest first, 50 a page, and an "Older" link that continues after the last one shown.
    older = re.search(r'href="(/dlq\?[^"]*after=[^"]+)" rel="next"', page)
    assert older
    second = c.get(older.group(1).replace("&amp;", "&")).text
    assert "Newest" in second
    assert "No more letters" not in second
    assert "orders 0@0" in second
    assert "orders 0@0" not in page.split("Letters, newest first")[1]


def test_filters_narrow_groups_and_letters(world: Any) -> None:
    c = client(world)
    page = c.get("/dlq", params={"reason": "undecodable"}).text
    assert "undecodable · not JSON" in page
    assert GROUP not in page
    page = c.get("/dlq", params={"partition": "1", "n": "100"}).text
    rows = re.findall(r"orders (\d)@\d+", page.split("Letters, newest first")[1])
    assert rows
    assert set(rows) == {"1"}
    since = (T0 + timedelta(seconds=59)).strftime("%Y-%m-%dT%H:%M:%S")
    page = c.get("/dlq", params={"since": since, "g": GROUP}).text
    assert re.findall(r"orders \d@(\d+)", page.split("Letters, newest first")[1]) == ["59"]
    assert c.get("/dlq", params={"reason": "nonsense"}).status_code == 400
    assert c.get("/dlq", params={"after": "garbage"}).status_code == 400


def test_a_hostile_letter_is_shown_as_text(world: Any) -> None:
    c = client(world)
    for path in ("/dlq", "/dlq/letters/orders:2:101", "/dlq/letters/orders:1:100"):
        page = c.get(path).text
        assert "<script>" not in page, path
        assert "<img src=x" not in page, path
    page = c.get("/dlq/letters/orders:1:100").text
    assert "not JSON, shown as escaped text" in page
    assert "&lt;script&gt;" in page
    assert "\\x00" in page
    assert "\\x1b" in page
    assert "\\xff" in page


def test_a_json_letter_and_a_stub(world: Any) -> None:
    c = client(world)
    page = c.get("/dlq/letters/orders:0:0").text
    assert "Value (JSON)" in page
    assert "&#34;price&#34;: -1" in page
    assert "items[0].price: must be at least 0" in page
    assert "dlq.reason" in page
    stub = c.get("/dlq/letters/orders:0:102").text
    assert "Stub letter" in stub
    assert c.get("/dlq/letters/orders:0:999").status_code == 404


def test_without_a_token_the_console_is_read_only(world: Any) -> None:
    c = client(world, token="")
    assert "Read-only: no operator token is configured" in c.get("/dlq").text
    r = c.post("/dlq/sign-in", data={"token": ""}, headers={"origin": ORIGIN})
    assert r.status_code == 403
    r = c.post("/dlq/replay", data=group_form("x"), headers={"origin": ORIGIN})
    assert r.status_code == 403
    assert "read-only" in r.text
    assert world[1].replayed == []


def test_sign_in_sets_a_strict_http_only_cookie_for_the_console_only(world: Any) -> None:
    c = client(world)
    r = c.post("/dlq/sign-in", data={"token": TOKEN}, headers={"origin": ORIGIN}, follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/dlq" in cookie
    assert TOKEN not in cookie


@pytest.mark.parametrize(
    "case",
    ["not signed in", "wrong token", "no csrf", "wrong csrf", "other origin", "null origin", "no origin",
     "forged cookie"],
)  # fmt: skip
def test_actions_are_refused_without_every_guard(world: Any, case: str) -> None:
    c = client(world)
    csrf: str | None = "0" * 64
    headers = {"origin": ORIGIN}
    if case == "wrong token":
        r = c.post("/dlq/sign-in", data={"token": TOKEN + "x"}, headers=headers)
        assert r.status_code == 403
    elif case != "not signed in":
        good = signed_in(c)
        csrf = {"no csrf": None, "wrong csrf": tampered(good, 1)}.get(case, good)
        headers = {
            "other origin": {"origin": "http://evil.example"},
            "null origin": {"origin": "null"},
            "no origin": {},
        }.get(case, headers)
        if case == "forged cookie":
            value = c.cookies.get("l0_console") or ""
            c.cookies.clear()
            c.cookies.set("l0_console", tampered(value, 2), path="/dlq")
    for action in ("/dlq/replay", "/dlq/revalidate", "/dlq/resume"):
        r = c.post(action, data=group_form(csrf), headers=headers, follow_redirects=False)
        assert r.status_code == 403, (case, action, r.status_code)
    assert world[1].replayed == []
    assert world[1].revalidated == []


def test_a_signed_in_operator_revalidates_and_replays_a_group_capped(world: Any) -> None:
    c = client(world)
    csrf = signed_in(c)
    r = c.post("/dlq/revalidate", data=group_form(csrf), headers={"origin": ORIGIN})
    assert r.status_code == 200
    assert "Would now be stored" in r.text
    assert len(world[1].revalidated) == 25  # max_replay
    r = c.post("/dlq/replay", data=group_form(csrf), headers={"origin": ORIGIN})
    assert r.status_code == 200
    assert 'id="sent">25<' in r.text
    assert "capped at 25" in r.text
    assert [x.offset for x in world[1].replayed] == list(range(59, 34, -1))  # the newest 25
    one = {"scope": "letter", "topic": "orders", "partition": "0", "offset": "3", "csrf": csrf}
    r = c.post("/dlq/replay", data=one, headers={"origin": ORIGIN})
    assert r.status_code == 200
    assert world[1].replayed[-1].offset == 3


def test_the_drift_trip_is_shown_and_resumed_by_an_operator(world: Any) -> None:
    drift: DriftGuard = world[2]
    trip = drift.admit([GROUP] * 10)
    assert isinstance(trip, DriftTrip)
    c = client(world)
    page = c.get("/dlq").text
    assert "Consumption is paused" in page
    assert GROUP in page
    csrf = signed_in(c)
    r = c.post("/dlq/resume", data={"csrf": csrf}, headers={"origin": ORIGIN}, follow_redirects=False)
    assert r.status_code == 303
    assert drift.tripped() is None


def test_the_cli_resumes_with_the_bearer_token(world: Any) -> None:
    drift: DriftGuard = world[2]
    drift.admit([GROUP] * 10)
    c = client(world)
    assert c.post("/dlq/api/resume").status_code == 401
    assert c.post("/dlq/api/resume", headers={"authorization": "Bearer nope"}).status_code == 401
    r = c.post("/dlq/api/resume", headers={"authorization": f"Bearer {TOKEN}"})
    assert r.json() == {"resumed": True, "was_paused": True}
    assert drift.tripped() is None


def test_cursors_round_trip() -> None:
    cursor = Cursor(T0 + timedelta(microseconds=7), "orders.x", 3, 12345)
    assert parse_cursor(format_cursor(cursor)) == cursor


def test_a_group_replay_in_a_time_range_touches_only_those_letters(world: Any) -> None:
    c = client(world)
    csrf = signed_in(c)
    since = (T0 + timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%S")
    until = (T0 + timedelta(seconds=13)).strftime("%Y-%m-%dT%H:%M:%S")
    form = {**group_form(csrf), "since": since, "until": until}
    r = c.post("/dlq/replay", data=form, headers={"origin": ORIGIN})
    assert r.status_code == 200
    assert "failed between" in r.text
    assert sorted(x.offset for x in world[1].replayed) == [10, 11, 12]


def test_a_form_over_its_bound_is_refused_and_nothing_runs(world: Any) -> None:
    """The console's forms are the only bodies the service reads: at most FORM_BYTES, read in chunks."""
    c = client(world)
    csrf = signed_in(c)
    padded = {**group_form(csrf), "padding": "x" * FORM_BYTES}
    r = c.post("/dlq/replay", data=padded, headers={"origin": ORIGIN})
    assert r.status_code == 400
    assert "too large" in r.text
    assert world[1].replayed == []
