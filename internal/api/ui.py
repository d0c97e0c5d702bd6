"""The HTML UI's pages but the order's (``orders.py``): ``/`` the look-up form and the recent
orders, ``/search?q=`` by uid prefix, track number or customer id (``internal/store/search.py``), the
look-up form's redirect and the stylesheet. The home page and search pages are ``Answer`` functions
(``routes.AnswerRoute``): kept snapshots (``snapshots.py``), sent as they are."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import structlog
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import Scope

from internal.api.answers import Answer, etag_matches, header, html_answer
from internal.api.lookup import OrderLookup, valid_uid
from internal.api.middleware import scope_request_id
from internal.api.pages import Pages
from internal.api.snapshots import Snapshot, Snapshots
from internal.domain.errors import ServiceError
from internal.store.reader import OrderSummary
from internal.store.search import BIGINT_MAX, COUNT_BOUND, Cursor, OrderSearch

PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_QUERY = 128
SEARCH_UNAVAILABLE = "The order store did not answer in time; try again shortly."
RECENT_UNAVAILABLE = "the order store did not answer in time"
SNAPSHOT_MAX_AGE_S = 1.0  # the home page and search pages are at most this old (snapshots.py)
HOME_BYTES = 1 << 20
log = structlog.get_logger(component="api")
_ID = re.compile(r"[1-9][0-9]{0,18}")
_SIZE = re.compile(r"[1-9][0-9]{0,2}")


@dataclass(frozen=True, slots=True)
class HomeAnswers:
    """The home page's two answers, made once per snapshot: the page with its ETag (the body's hash),
    and the 304 for a browser whose copy is that page."""

    snapshot: Snapshot
    etag: str
    page: Answer
    not_modified: Answer

    @classmethod
    def of(cls, snapshot: Snapshot) -> HomeAnswers:
        etag = f'"{hashlib.blake2b(snapshot.body, digest_size=16).hexdigest()}"'
        header = (b"etag", etag.encode())
        page = html_answer(snapshot.status, snapshot.body)
        with_etag = Answer(page.status, [*page.headers, header], page.body)
        return cls(snapshot, etag, with_etag, Answer(304, [header], b""))


def parse_cursor(text: str) -> Cursor | None:
    """The ``after=`` of a search page (``u<uid>``, ``i`` or ``i<id>``); None when it is not one."""
    if not text:
        return Cursor()
    kind, rest = text[0], text[1:]
    if kind == "u" and valid_uid(rest):
        return Cursor(after_uid=rest)
    if kind == "i" and not rest:
        return Cursor(by_id=True)
    if kind == "i" and _ID.fullmatch(rest) and int(rest) <= BIGINT_MAX:
        return Cursor(by_id=True, before_id=int(rest))
    return None


def format_cursor(cursor: Cursor) -> str:
    if not cursor.by_id:
        return "u" + cursor.after_uid
    return "i" if cursor.before_id is None else f"i{cursor.before_id}"


class Ui:
    def __init__(
        self,
        lookup: OrderLookup,
        search: OrderSearch,
        pages: Pages,
        recent: Callable[[], Awaitable[Sequence[OrderSummary]]],
        search_pages_bytes: int,
    ) -> None:
        self._lookup = lookup
        self._search = search
        self._pages = pages
        self._recent = recent
        self._home = Snapshots(SNAPSHOT_MAX_AGE_S, HOME_BYTES)
        self._home_answers: HomeAnswers | None = None
        self._searches = Snapshots(SNAPSHOT_MAX_AGE_S, search_pages_bytes)

    async def home(self, scope: Scope, _param: str = "") -> Answer:
        """The home page; 304 while the browser's copy is the current snapshot's."""
        if_none_match = header(scope, b"if-none-match")
        page = await self._home.get("", self._read_home)
        answers = self._home_answers
        if answers is None or answers.snapshot is not page:  # a new snapshot: at most once a second
            answers = self._home_answers = HomeAnswers.of(page)
        return answers.not_modified if etag_matches(if_none_match, answers.etag) else answers.page

    async def _read_home(self) -> tuple[int, bytes]:
        try:
            recent, problem = await self._recent(), None
        except (ServiceError, TimeoutError) as exc:
            log.warning("recent_orders_unavailable", error=str(exc) or type(exc).__name__)
            recent, problem = [], RECENT_UNAVAILABLE
        return 200, self._pages.home(recent, problem)

    async def lookup_form(self, request: Request) -> Response:
        uid = request.query_params.get("order_uid", "").strip()
        if not uid:
            return RedirectResponse("/", status_code=303)
        return RedirectResponse(f"/orders/{quote(uid, safe='')}", status_code=303)

    async def search(self, scope: Scope, _param: str = "") -> Answer:
        params = QueryParams(scope["query_string"])
        rid = scope_request_id(scope)
        query = params.get("q", "").strip()[:MAX_QUERY]
        if any(ord(c) < 32 or ord(c) == 127 for c in query):  # PostgreSQL refuses NUL in text, too
            return self._refused("Search text must not contain control characters.", rid)
        cursor = parse_cursor(params.get("after", ""))
        if cursor is None:
            return self._refused("That is not a page of search results; start the search again.", rid)
        size_text = params.get("n", "")
        if size_text and not (_SIZE.fullmatch(size_text) and int(size_text) <= MAX_PAGE_SIZE):
            return self._refused(f"A page holds 1 to {MAX_PAGE_SIZE} orders.", rid)
        size = int(size_text) if size_text else PAGE_SIZE
        key = f"{query}\x00{format_cursor(cursor)}\x00{size}"
        page = await self._searches.get(key, lambda: self._read_search(query, cursor, size))
        return html_answer(page.status, page.body)

    async def _read_search(self, query: str, cursor: Cursor, size: int) -> tuple[int, bytes]:
        """One search page, rendered; shared by every request for it within a second, so it carries
        no request id (the header does)."""
        results: list[OrderSummary] = []
        context: dict[str, object] = {"query": query, "problem": None, "total": "", "next_url": None,
                                      "first_url": None}  # fmt: skip
        status = 200
        if query:
            try:
                found = await self._search.search(
                    query, valid_uid(query), cursor, size, self._lookup.timeout_s
                )
            except ServiceError:
                status, context["problem"] = 503, SEARCH_UNAVAILABLE
            else:
                results = found.orders
                more = found.total > COUNT_BOUND
                context["total"] = f"{COUNT_BOUND}+" if more else str(found.total)
                extra = {} if size == PAGE_SIZE else {"n": str(size)}
                if found.next is not None:
                    next_params = {"q": query, "after": format_cursor(found.next), **extra}
                    context["next_url"] = "/search?" + urlencode(next_params)
                if cursor != Cursor():
                    context["first_url"] = "/search?" + urlencode({"q": query, **extra})
        return status, self._pages.search("", results, **context)

    def _refused(self, message: str, rid: str) -> Answer:
        return html_answer(400, self._pages.message("Not a search", message, rid))

    async def stylesheet(self, _request: Request) -> Response:
        return Response(
            self._pages.stylesheet, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
        )
