"""The headers every response gets, decided in one place (``ObservabilityMiddleware`` appends them).

Every page shows a person's name, phone, e-mail and address, so an HTML answer - and an answer
without a body type (a redirect, a 304), which is as often a page's - carries:

* ``Content-Security-Policy``: nothing may load but the one stylesheet, no script at all (the UI has
  none: any would be injected), forms post only here, no framing, no ``<base>``. No inline styles
  either, so the templates have no ``style=`` attribute and no ``<style>`` element.
* ``Referrer-Policy: no-referrer``: a link followed from an order page does not carry its uid away.
* ``Cache-Control: private, no-cache``: no shared cache keeps personal data, and the browser still
  revalidates its own copy with the ETag (304) instead of downloading the page again.

Every answer, JSON and the stylesheet included, carries ``X-Content-Type-Options: nosniff``. The
tuples are built once; choosing one costs a scan of the response's few headers. Each header costs
uvicorn about 1-2 us to check and write (docs/performance.md): hence no ``X-Frame-Options``, which
``frame-ancestors`` supersedes in every browser that runs the CSP, and no ``server`` header.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

Header = tuple[bytes, bytes]

CSP: Final = (
    b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    b"frame-ancestors 'none'; base-uri 'none'"
)
NOSNIFF: Final = (b"x-content-type-options", b"nosniff")
PAGE_HEADERS: Final[tuple[Header, ...]] = (
    NOSNIFF,
    (b"content-security-policy", CSP),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"private, no-cache"),
)
OTHER_HEADERS: Final[tuple[Header, ...]] = (NOSNIFF,)


def security_headers(headers: Iterable[Header]) -> tuple[Header, ...]:
    """The headers to add to a response that has ``headers`` (names in lower case, as ASGI sends)."""
    for name, value in headers:
        if name == b"content-type":
            return PAGE_HEADERS if value.startswith(b"text/html") else OTHER_HEADERS
    return PAGE_HEADERS
