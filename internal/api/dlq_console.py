"""The operator's console for dead letters: ``/dlq`` and its pages, in the browser.

Pages (GET, anyone who can reach the UI):

* ``/dlq`` - letters grouped by what went wrong (``internal/domain/letter_groups.py``) with count,
  first and last seen and a sample; below, the letters themselves, newest first, in keyset pages;
  filters by reason, group, origin partition and time. Both come from the read model
  (``internal/store/dead_letters.py``), never from reading the topic; the data part of a page is
  kept at most ``SNAPSHOT_MAX_AGE_S`` (``snapshots.py``), so a page asked for by many at once is one
  query a second.
* ``/dlq/group?g=<group>`` - one group: its facts, its letters, and the actions on it.
* ``/dlq/letters/<topic>:<partition>:<offset>`` - one letter by its origin (one path segment: the
  one route table's fast path takes routes with one trailing parameter; a topic name has no ``:``):
  every header, every
  violation, the order uid (linked when the order is stored), the value pretty-printed when it is
  JSON and escaped and bounded when it is not, the stub marker. Fetched from the dead-letter topic
  by its partition and offset (read_committed).

Actions (POST, signed-in operator only; ``console_auth.py``): sign-in/out, re-validate (dry run),
replay, resume the drift guard. Each is capped at ``max_replay`` letters and logged with what it did
and how many letters it touched. ``POST /dlq/api/resume`` with ``Authorization: Bearer <token>`` is the
same resume for ``l0-dlq resume``.

Everything a letter holds is the sender's text: the templates autoescape it, the page has no script,
and the CSP (security.py) would refuse one anyway.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
import structlog
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from internal.api.console_auth import ConsoleAuth, Session
from internal.api.snapshots import Snapshots
from internal.consumer.drift import DriftTrip
from internal.consumer.letters import H_ERROR
from internal.domain.errors import ServiceError
from internal.domain.letter_groups import GROUP_CHARS
from internal.domain.reasons import DeadLetterReason
from internal.store.dead_letters import Cursor, DeadLetterQueries, LetterFilter, LetterRow
from internal.tools.dlq_actions import ReplayResult, RevalidateStats
from internal.tools.dlq_display import parse_json, printable
from internal.tools.dlq_letters import DLQ_PREFIX, Letter, ToolError

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
SNAPSHOT_MAX_AGE_S = 1.0
SNAPSHOT_BYTES = 8 << 20
FORM_BYTES = 16 * 1024
VALUE_CHARS = 64 * 1024  # of a letter's value shown on its page
HEADER_CHARS = 2000
SHOWN_HEADERS = 200
SHOWN_VIOLATIONS = 200
FETCHES_AT_ONCE = 4  # Kafka reads for letter pages and actions at a time (each has its own consumer)
UNAVAILABLE = "The dead-letter index did not answer in time; try again shortly."
log = structlog.get_logger(component="dlq_console")


class DriftControl(Protocol):
    """The consumer's drift guard as the console sees it (internal/consumer/drift.py)."""

    def tripped(self) -> DriftTrip | None: ...
    def resume(self, by: str) -> bool: ...


class ConsoleActions(Protocol):
    """The operator's actions over chosen letters; sync (Kafka and PostgreSQL clients), run on a
    thread. ``places`` are dead-letter (partition, offset) pairs."""

    def fetch(self, places: Sequence[tuple[int, int]]) -> list[Letter]: ...
    def revalidate(self, letters: Sequence[Letter]) -> RevalidateStats: ...
    def replay(self, letters: Sequence[Letter]) -> ReplayResult: ...


@dataclass(frozen=True, slots=True)
class Query:
    """A page's filters and position, parsed from the query string (or the action form)."""

    where: LetterFilter
    after: Cursor | None
    size: int

    @property
    def since_text(self) -> str:
        return _form_time(self.where.since) or ""

    @property
    def until_text(self) -> str:
        return _form_time(self.where.until) or ""

    def params(self, **changes: str | None) -> str:
        w = self.where
        items = {
            "reason": w.reason,
            "g": w.group_key,
            "partition": None if w.partition is None else str(w.partition),
            "since": _form_time(w.since),
            "until": _form_time(w.until),
            "n": None if self.size == PAGE_SIZE else str(self.size),
        }
        items.update(changes)
        return urlencode({k: v for k, v in items.items() if v})


class Refused(Exception):
    """A request the console cannot answer as asked: 400 with this text."""


def _form_time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(f"{printable(text[:40])} is not a time (YYYY-MM-DDTHH:MM, UTC)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def parse_cursor(text: str) -> Cursor | None:
    if not text:
        return None
    parts = text.split(":", 3)
    try:
        micros, partition, offset, topic = int(parts[0]), int(parts[1]), int(parts[2]), parts[3]
        failed_at = datetime.fromtimestamp(micros / 1_000_000, UTC)
    except (ValueError, IndexError, OverflowError, OSError):
        raise Refused("That is not a page of this list; start again from the first page.") from None
    return Cursor(failed_at, topic, partition, offset)


def format_cursor(cursor: Cursor) -> str:
    micros = round(cursor.failed_at.timestamp() * 1_000_000)
    return f"{micros}:{cursor.origin_partition}:{cursor.origin_offset}:{cursor.origin_topic}"


def parse_query(params: dict[str, str] | Any) -> Query:
    reason = params.get("reason", "") or None
    if reason is not None and reason not in DeadLetterReason.values():
        raise Refused(f"There is no reason {printable(reason[:40])}.")
    group = params.get("g", "") or None
    if group is not None and len(group) > GROUP_CHARS:
        raise Refused("That group name is too long.")
    partition_text = params.get("partition", "")
    if partition_text and not (partition_text.isdigit() and len(partition_text) <= 6):
        raise Refused("A partition is a number.")
    size_text = params.get("n", "")
    if size_text and not (size_text.isdigit() and 1 <= int(size_text) <= MAX_PAGE_SIZE):
        raise Refused(f"A page holds 1 to {MAX_PAGE_SIZE} letters.")
    where = LetterFilter(
        reason=reason,
        group_key=group,
        partition=int(partition_text) if partition_text else None,
        since=_time(params.get("since", "")),
        until=_time(params.get("until", "")),
    )
    return Query(where, parse_cursor(params.get("after", "")), int(size_text) if size_text else PAGE_SIZE)


def letter_url(row: LetterRow) -> str:
    return letter_path((row.origin_topic, row.origin_partition, row.origin_offset))


def letter_path(origin: tuple[str, int, int]) -> str:
    topic, partition, offset = origin
    return f"/dlq/letters/{quote(topic, safe='')}:{partition}:{offset}"


def parse_origin(text: str) -> tuple[str, int, int] | None:
    """``<topic>:<partition>:<offset>`` from a letter's path; None when it is not one."""
    topic, _, rest = text.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    if not topic or not partition.isdigit() or not rest.isdigit() or len(partition) > 9 or len(rest) > 19:
        return None
    return topic, int(partition), int(rest)


def group_url(group: str) -> str:
    return "/dlq/group?" + urlencode({"g": group})


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form of at most ``FORM_BYTES`` (no multipart: the console's forms are small)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_BYTES:
            raise Refused("That form is too large.")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


class DlqConsole:
    def __init__(
        self,
        *,
        queries: DeadLetterQueries,
        actions: ConsoleActions,
        auth: ConsoleAuth,
        templates: Path,
        dlq_topic: str,
        max_replay: int,
        drift: DriftControl | None = None,
        order_stored: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._queries = queries
        self._actions = actions
        self._auth = auth
        self._dlq_topic = dlq_topic
        self._max_replay = max_replay
        self._drift = drift
        self._order_stored = order_stored
        self._snapshots = Snapshots(SNAPSHOT_MAX_AGE_S, SNAPSHOT_BYTES)
        self._fetching = asyncio.Semaphore(FETCHES_AT_ONCE)
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates),
            autoescape=True,  # every letter's text is the sender's
            undefined=jinja2.StrictUndefined,
            auto_reload=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.globals.update(letter_url=letter_url, letter_path=letter_path, group_url=group_url, when=_when)
        self._env = env

    def routes(self) -> list[Route]:
        return [
            Route("/dlq", self.overview, methods=["GET", "HEAD"]),
            Route("/dlq/group", self.group, methods=["GET", "HEAD"]),
            Route("/dlq/letters/{letter}", self.letter, methods=["GET", "HEAD"]),
            Route("/dlq/sign-in", self.sign_in_form, methods=["GET", "HEAD"]),
            Route("/dlq/sign-in", self.sign_in, methods=["POST"]),
            Route("/dlq/sign-out", self.sign_out, methods=["POST"]),
            Route("/dlq/revalidate", self.revalidate, methods=["POST"]),
            Route("/dlq/replay", self.replay, methods=["POST"]),
            Route("/dlq/resume", self.resume, methods=["POST"]),
            Route("/dlq/api/resume", self.api_resume, methods=["POST"]),
        ]

    # -- rendering

    def _render(self, name: str, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        session = self._auth.session(request)
        trip = self._drift.tripped() if self._drift is not None else None
        body = self._env.get_template(name).render(
            request_id="",
            read_only=not self._auth.enabled,
            session=session,
            csrf=session.csrf if session else "",
            trip=trip,
            max_replay=self._max_replay,
            **context,
        )
        return HTMLResponse(body, status_code=status)

    def _refused(self, request: Request, message: str, status: int = 400) -> HTMLResponse:
        return self._render("dlq_message.html", request, status, title="Not done", message=message)

    async def _snapshot(self, key: str, read: Callable[[], Awaitable[str]]) -> tuple[int, Markup]:
        async def make() -> tuple[int, bytes]:
            try:
                return 200, (await read()).encode()
            except (ServiceError, TimeoutError) as exc:
                log.warning("dlq_index_unavailable", error=str(exc) or type(exc).__name__)
                return 503, b""

        snapshot = await self._snapshots.get(key, make)
        return snapshot.status, Markup(snapshot.body.decode())  # noqa: S704 - rendered with autoescaping

    async def _letters_part(self, query: Query, base: str) -> str:
        rows, next_cursor = await self._queries.letters(query.where, query.after, query.size)
        return self._env.get_template("dlq_letters.html").render(
            rows=rows,
            next_url=f"{base}?{query.params(after=format_cursor(next_cursor))}" if next_cursor else None,
            first_url=f"{base}?{query.params()}" if query.after is not None else None,
        )

    # -- pages

    async def overview(self, request: Request) -> Response:
        try:
            query = parse_query(request.query_params)
        except Refused as exc:
            return self._refused(request, str(exc))

        async def groups_part() -> str:
            groups = await self._queries.groups(query.where)
            return self._env.get_template("dlq_groups.html").render(groups=groups, query=query)

        key = "o\x00" + query.params(after=format_cursor(query.after) if query.after else None)
        status, groups = await self._snapshot(key + "\x00g", groups_part)
        status2, letters = await self._snapshot(key + "\x00l", lambda: self._letters_part(query, "/dlq"))
        status = max(status, status2)
        return self._render(
            "dlq.html", request, status, query=query, groups=groups, letters=letters,
            reasons=DeadLetterReason.values(), problem=UNAVAILABLE if status == 503 else None,
        )  # fmt: skip

    async def group(self, request: Request) -> Response:
        try:
            query = parse_query(request.query_params)
        except Refused as exc:
            return self._refused(request, str(exc))
        group = query.where.group_key
        if group is None:
            return RedirectResponse("/dlq", status_code=303)

        async def facts_part() -> str:
            found = await self._queries.groups(LetterFilter(group_key=group))
            return self._env.get_template("dlq_group_facts.html").render(group=found[0] if found else None)

        key = "g\x00" + query.params(after=format_cursor(query.after) if query.after else None)
        status, facts = await self._snapshot(key + "\x00f", facts_part)
        status2, letters = await self._snapshot(
            key + "\x00l", lambda: self._letters_part(query, "/dlq/group")
        )
        status = max(status, status2)
        return self._render(
            "dlq_group.html", request, status, group=group, query=query, facts=facts, letters=letters,
            problem=UNAVAILABLE if status == 503 else None,
        )  # fmt: skip

    async def letter(self, request: Request) -> Response:
        origin = parse_origin(request.path_params["letter"])
        if origin is None:
            return self._refused(request, "That is not a letter: /dlq/letters/<topic>:<partition>:<offset>.")
        topic, partition, offset = origin
        try:
            row = await self._queries.letter(topic, partition, offset)
        except ServiceError:
            return self._refused(request, UNAVAILABLE, 503)
        if row is None:
            return self._render(
                "dlq_message.html", request, 404, title="No such letter",
                message=f"No dead letter came from {topic} partition {partition} offset {offset}.",
            )  # fmt: skip
        problem = None
        letter: Letter | None = None
        try:
            async with self._fetching:
                found = await run_in_threadpool(self._actions.fetch, [(row.dlq_partition, row.dlq_offset)])
            letter = found[0] if found else None
            if letter is None:
                problem = "The letter is no longer in the dead-letter topic (retention deleted it)."
        except ToolError as exc:
            problem = f"The dead-letter topic could not be read: {exc}"
        stored = False
        if row.order_uid and self._order_stored is not None:
            try:
                stored = await self._order_stored(row.order_uid)
            except ServiceError:
                stored = False
        return self._render(
            "dlq_letter.html", request, row=row, letter=letter, problem=problem, stored=stored,
            headers=_headers(letter) if letter else [], hidden_headers=_hidden(letter),
            violations=_violations(row, letter), value=_value(letter) if letter else None,
        )  # fmt: skip

    # -- sign-in

    async def sign_in_form(self, request: Request) -> Response:
        return self._render("dlq_sign_in.html", request, problem=None)

    async def sign_in(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except Refused as exc:
            return self._refused(request, str(exc))
        why = self._auth.refusal(request, form, signing_in=True)
        if why is None and not self._auth.token_matches(form.get("token", "")):
            why = "that is not the operator token"
        if why is not None:
            log.warning("dlq_console_sign_in_refused", why=why)
            return self._render("dlq_sign_in.html", request, 403, problem=why)
        _session, cookie = self._auth.new_session()
        log.info("dlq_console_signed_in")
        response = RedirectResponse("/dlq", status_code=303)
        self._auth.set_cookie(response, cookie, request)
        return response

    async def sign_out(self, request: Request) -> Response:
        form = await read_form(request)
        why = self._auth.refusal(request, form)
        if why is not None:
            return self._refused(request, why, 403)
        response = RedirectResponse("/dlq", status_code=303)
        self._auth.clear_cookie(response, request)
        return response

    # -- actions

    async def _authorized(self, request: Request) -> tuple[dict[str, str], Session] | Response:
        try:
            form = await read_form(request)
        except Refused as exc:
            return self._refused(request, str(exc))
        why = self._auth.refusal(request, form)
        session = self._auth.session(request)
        if why is not None or session is None:
            log.warning("dlq_action_refused", path=request.url.path, why=why)
            return self._refused(request, f"Refused: {why}.", 403)
        return form, session

    async def _chosen(self, form: dict[str, str]) -> tuple[list[LetterRow], str, int]:
        """The letters an action works on (at most max_replay), what they are, and how many matched
        beyond the cap (0 when none; -1 when unknown)."""
        scope = form.get("scope", "")
        if scope == "letter":
            topic, partition = form.get("topic", ""), form.get("partition", "")
            offset = form.get("offset", "")
            if not (partition.isdigit() and offset.isdigit()):
                raise Refused("Which letter?")
            row = await self._queries.letter(topic, int(partition), int(offset))
            if row is None:
                raise Refused("There is no such letter.")
            return [row], f"the letter from {topic} partition {partition} offset {offset}", 0
        if scope == "group":
            query = parse_query(form)
            if query.where.group_key is None:
                raise Refused("Which group?")
            rows = await self._queries.selection(query.where, self._max_replay + 1)
            beyond = -1 if len(rows) > self._max_replay else 0
            what = f"group {query.where.group_key}"
            if query.where.since or query.where.until:
                since = _form_time(query.where.since) or "the start"
                what += f" failed between {since} and {_form_time(query.where.until) or 'now'} UTC"
            return rows[: self._max_replay], what, beyond
        raise Refused("Re-validate or replay what: a letter or a group?")

    async def _act(self, request: Request, action: str) -> Response:
        authorized = await self._authorized(request)
        if isinstance(authorized, Response):
            return authorized
        form, _session = authorized
        try:
            rows, what, beyond = await self._chosen(form)
        except Refused as exc:
            return self._refused(request, str(exc))
        except ServiceError:
            return self._refused(request, UNAVAILABLE, 503)
        places = [(r.dlq_partition, r.dlq_offset) for r in rows]
        try:
            async with self._fetching:
                letters = await run_in_threadpool(self._actions.fetch, places)
                if action == "revalidate":
                    result: RevalidateStats | ReplayResult = await run_in_threadpool(
                        self._actions.revalidate, letters
                    )
                else:
                    result = await run_in_threadpool(self._actions.replay, letters)
        except (ToolError, ServiceError) as exc:
            log.warning("dlq_action_failed", action=action, what=what, error=str(exc))
            return self._refused(request, f"Not done: {exc}", 503)
        if isinstance(result, RevalidateStats):
            result.chosen = len(rows)
            log.info("dlq_action", action=action, what=what, letters=len(rows), fetched=len(letters),
                     would_store=result.would_store, already_stored=result.already_stored,
                     still_failing=result.failing, stubs=result.stubs, capped=bool(beyond))  # fmt: skip
        else:
            stats = result.stats
            log.info("dlq_action", action=action, what=what, letters=len(rows), fetched=len(letters),
                     sent=stats.delivered, failed=stats.failed, already_stored=stats.stored,
                     stubs=stats.stubs, conflicts=stats.conflicts, capped=bool(beyond))  # fmt: skip
        return self._render(
            "dlq_result.html", request, action=action, what=what, chosen=len(rows), fetched=len(letters),
            capped=bool(beyond), result=result, back=group_url(form["g"]) if form.get("g") else "/dlq",
        )  # fmt: skip

    async def revalidate(self, request: Request) -> Response:
        return await self._act(request, "revalidate")

    async def replay(self, request: Request) -> Response:
        return await self._act(request, "replay")

    async def resume(self, request: Request) -> Response:
        authorized = await self._authorized(request)
        if isinstance(authorized, Response):
            return authorized
        resumed = self._drift.resume("console") if self._drift is not None else False
        log.info("dlq_action", action="resume", resumed=resumed, letters=0)
        return RedirectResponse("/dlq", status_code=303)

    async def api_resume(self, request: Request) -> Response:
        """``l0-dlq resume``: the same resume, by the token in ``Authorization: Bearer`` (a header a
        cross-site form cannot send, so no CSRF token is needed)."""
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if not self._auth.enabled:
            return JSONResponse({"error": "no operator token is configured (console.operator_token)"}, 403)
        if scheme.lower() != "bearer" or not self._auth.token_matches(token.strip()):
            log.warning("dlq_action_refused", path=request.url.path, why="wrong or missing bearer token")
            return JSONResponse({"error": "wrong or missing operator token"}, 401)
        trip = self._drift.tripped() if self._drift is not None else None
        resumed = self._drift.resume("cli") if self._drift is not None else False
        log.info("dlq_action", action="resume", by="cli", resumed=resumed, letters=0)
        return JSONResponse({"resumed": resumed, "was_paused": trip is not None})


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _headers(letter: Letter) -> list[tuple[str, str]]:
    """Every header (dlq.* first) as bounded, printable text; the error is shown as violations."""
    ordered = sorted(letter.headers, key=lambda h: not h[0].startswith(DLQ_PREFIX))
    shown = []
    for name, value in ordered[:SHOWN_HEADERS]:
        if name == H_ERROR:
            text = f"({len(value or b'')} bytes, shown under What went wrong)"
        elif value is None:
            text = "(null)"
        else:
            text = value.decode("utf-8", "replace")
            text = text if len(text) <= HEADER_CHARS else text[:HEADER_CHARS] + f"… ({len(value)} bytes)"
        shown.append((name[:200], text))
    return shown


def _hidden(letter: Letter | None) -> int:
    return 0 if letter is None else max(0, len(letter.headers) - SHOWN_HEADERS)


def _violations(row: LetterRow, letter: Letter | None) -> list[str]:
    """The violations as the validator listed them ("path: message"), from the letter's error header
    (whole) or the index's bounded copy."""
    error = (letter.error if letter is not None else "") or row.error
    if row.reason != DeadLetterReason.INVALID.value:
        return [error]
    return error.split("; ")[:SHOWN_VIOLATIONS]  # InvalidOrder joins them with "; "


@dataclass(frozen=True, slots=True)
class ShownValue:
    text: str
    is_json: bool
    size: int
    cut: bool


def _value(letter: Letter) -> ShownValue:
    raw = letter.value or b""
    doc = parse_json(raw) if raw else None
    if doc is not None:
        text = json.dumps(doc, indent=2, ensure_ascii=False)
        is_json = True
    else:
        # Not JSON: shown as text, every control character and undecodable byte escaped, lines kept.
        text = "\n".join(printable(line) for line in raw.decode("utf-8", "backslashreplace").split("\n"))
        is_json = False
    cut = len(text) > VALUE_CHARS
    return ShownValue(text[:VALUE_CHARS], is_json, len(raw), cut)
