"""The reference of ``make bench-http``: a bare Starlette endpoint returning fixed bytes.

Same route shape as the order API (``/api/orders/{order_uid}``) and a body of a typical order's size,
so wrk sends the same requests and reads about the same bytes as against the service; the difference
is what the service adds per request (middleware, cache look-up, ETag, headers). Run it with the
service's uvicorn settings: ``python -m uvicorn bench.bare_app:app --port P --log-level warning
--no-access-log`` (uvloop and httptools, as the service gets them by default).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from internal.api.security import PAGE_HEADERS as SECURITY_PAGE_HEADERS

# 1-5 generated items make an order of ~1.3 KB of JSON (docs/cache.md); bench/http.py prints the real mean.
BODY_BYTES = 1300
BODY = b'{"padding":"' + b"x" * (BODY_BYTES - len(b'{"padding":""}')) + b'"}'


# The order page of such an order is ~4.4 KB of HTML: the second reference, for the pages, so that the
# bytes on the wire are alike too (a page hit sends 3.4 times the bytes of a JSON hit).
PAGE_BYTES = 4400
PAGE = b"<!doctype html><p>" + b"x" * (PAGE_BYTES - len(b"<!doctype html><p>"))


async def fixed(_request: Request) -> Response:
    return Response(BODY, media_type="application/json")


async def fixed_page(_request: Request) -> Response:
    return Response(PAGE, media_type="text/html; charset=utf-8")


app = Starlette(routes=[Route("/api/orders/{order_uid}", fixed), Route("/orders/{order_uid}", fixed_page)])

# The third reference: the page-sized body with every header a page hit of the service carries
# (ETag, X-Cache, X-Request-ID and the security set of internal/api/security.py). The issue's
# reference is the bare endpoint above; this one shows what the required headers alone cost.
PAGE_HEADERS = {
    "etag": '"4f1f6c0e2b6b4a3e9c1d7e5f3a2b1c0d-1a2b3c4d"',
    "x-cache": "HIT",
    "x-request-id": "0123456789ab-1f",
    **{name.decode(): value.decode() for name, value in SECURITY_PAGE_HEADERS},
}


async def fixed_page_with_headers(_request: Request) -> Response:
    return Response(PAGE, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


app_with_headers = Starlette(routes=[Route("/orders/{order_uid}", fixed_page_with_headers)])
