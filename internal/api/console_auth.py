"""The operator's sign-in for the dead-letter console: a token from the settings, a signed cookie, CSRF.

No token configured (``console.operator_token`` empty): nobody can sign in and every action is
refused; the console is read-only and says so. With a token:

* signing in compares the token in constant time (``hmac.compare_digest``) and sets a session cookie
  ``<expiry>.<nonce>.<signature>``: HMAC-SHA256 under a key derived from the token, so changing the
  token ends every session, and nothing is kept on the server. The cookie is HttpOnly (no script
  reads it; the UI has none anyway), SameSite=Strict (another site's form or link does not carry
  it), Path=/dlq, Secure when the request came over HTTPS, and expires after ``SESSION_S``.
* every action is a POST that must carry the session's CSRF token in a form field - an HMAC of the
  session's nonce, so it needs no storage either - and an Origin (or, without one, a Referer) of
  this very host.

A small HMAC over the standard library rather than Starlette's SessionMiddleware: that needs
itsdangerous and would sign a session for every page of the service, where only /dlq needs one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "l0_console"
COOKIE_PATH = "/dlq"
SESSION_S = 8 * 3600
_KEY_LABEL = b"l0 dead-letter console session"


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    expires: int
    csrf: str


class ConsoleAuth:
    def __init__(self, token: str, clock: object = time.time) -> None:
        self._token = token.encode()
        self._key = hmac.new(self._token, _KEY_LABEL, hashlib.sha256).digest() if token else b""
        self._clock = clock

    @property
    def enabled(self) -> bool:
        """False: no token is configured, the console is read-only."""
        return bool(self._token)

    def _now(self) -> int:
        clock = self._clock
        assert callable(clock)
        return int(clock())

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def token_matches(self, offered: str) -> bool:
        if not self.enabled:
            return False
        # Digests of equal length: compare_digest leaks the length of what it compares, not the token's.
        offered_digest = hashlib.sha256(offered.encode()).digest()
        return hmac.compare_digest(offered_digest, hashlib.sha256(self._token).digest())

    def new_session(self) -> tuple[Session, str]:
        """A fresh session and its cookie value."""
        nonce = secrets.token_urlsafe(18)
        expires = self._now() + SESSION_S
        payload = f"{expires}.{nonce}"
        return self._session(nonce, expires), f"{payload}.{self._sign(payload)}"

    def _session(self, nonce: str, expires: int) -> Session:
        return Session(nonce, expires, self._sign(f"csrf.{nonce}"))

    def session(self, request: Request) -> Session | None:
        """The request's valid, unexpired session, or None."""
        if not self.enabled:
            return None
        value = request.cookies.get(COOKIE, "")
        parts = value.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or len(value) > 256:
            return None
        expires_text, nonce, signature = parts
        if not hmac.compare_digest(self._sign(f"{expires_text}.{nonce}"), signature):
            return None
        expires = int(expires_text)
        if expires <= self._now():
            return None
        return self._session(nonce, expires)

    def set_cookie(self, response: Response, value: str, request: Request) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=SESSION_S,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def clear_cookie(self, response: Response, request: Request) -> None:
        response.set_cookie(
            COOKIE, "", max_age=0, path=COOKIE_PATH, httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )  # fmt: skip

    def refusal(self, request: Request, form: dict[str, str], *, signing_in: bool = False) -> str | None:
        """Why this POST is refused, or None when it may act. Checks, in order: a token is configured,
        the request comes from this origin, and (unless it is the sign-in itself) a valid session
        with its CSRF token."""
        if not self.enabled:
            return "the console is read-only: no operator token is configured (console.operator_token)"
        if not same_origin(request):
            return "the request did not come from this console (Origin/Referer)"
        if signing_in:
            return None
        session = self.session(request)
        if session is None:
            return "not signed in (or the session expired)"
        if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
            return "the form's CSRF token is missing or wrong; reload the page"
        return None


def same_origin(request: Request) -> bool:
    """The POST's Origin - or, when a browser sent none, its Referer - names this host."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if origin is not None:
        if origin == "null":
            return False
        parts = urlsplit(origin)
        return bool(host) and parts.netloc == host and parts.scheme in ("http", "https")
    referer = request.headers.get("referer")
    if referer is None:
        return False
    parts = urlsplit(referer)
    return bool(host) and parts.netloc == host and parts.scheme in ("http", "https")
