"""Cross-site request forgery protection for the portal's forms.

Every page with a form carries a random token in a host-only cookie (``gateway_csrf``:
Secure, HttpOnly, SameSite=Strict) and, in a hidden field, a keyed hash of that token. A POST
passes only when the field is the keyed hash of the cookie it came with. The hash makes the two
values differ, so a sibling subdomain that plants its own ``gateway_csrf`` cookie still cannot
produce a matching field without the server's ``hash_key``.

Browsers that send ``Origin`` or ``Sec-Fetch-Site`` are held to them as well: a POST from
another origin is refused even before the token is compared.
"""

from __future__ import annotations

import base64
import re

from starlette.requests import Request

from gateway.security.crypto import equal, keyed_hash, random_token

__all__ = ["COOKIE_NAME", "FIELD_NAME", "CsrfGuard"]

COOKIE_NAME = "gateway_csrf"
FIELD_NAME = "csrf"
_PURPOSE = "csrf"
# random_token(32): 43 URL-safe base64 characters. Anything else in the cookie is replaced.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
_ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})


class CsrfGuard:
    """Issues and checks the per-browser token; one instance per portal."""

    def __init__(self, hash_key: bytes) -> None:
        self._hash_key = hash_key

    def token(self, request: Request) -> tuple[str, str | None]:
        """The hidden-field value for ``request``'s browser, and a ``Set-Cookie`` value when
        the browser has no valid token cookie yet (None when it does)."""
        cookie = request.cookies.get(COOKIE_NAME, "")
        set_cookie = None
        if not _TOKEN_SHAPE.fullmatch(cookie):
            cookie = random_token(32)
            set_cookie = self._cookie(cookie)
        return self._field_for(cookie), set_cookie

    def is_valid(self, request: Request, field: str | None) -> bool:
        """True when ``request`` comes from our own page: same origin, matching token."""
        if not self._same_origin(request):
            return False
        cookie = request.cookies.get(COOKIE_NAME, "")
        if not field or not _TOKEN_SHAPE.fullmatch(cookie):
            return False
        return equal(self._field_for(cookie), field)

    def _field_for(self, cookie: str) -> str:
        digest = keyed_hash(self._hash_key, cookie, purpose=_PURPOSE)
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    @staticmethod
    def _cookie(token: str) -> str:
        # No Domain attribute: the cookie stays on the portal host. No Max-Age: it lasts as
        # long as the browser session, which is as long as an open sign-in form needs.
        return f"{COOKIE_NAME}={token}; Path=/; Secure; HttpOnly; SameSite=Strict"

    @staticmethod
    def _same_origin(request: Request) -> bool:
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site.lower() not in _ALLOWED_FETCH_SITES:
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        url = request.url
        return origin.lower() == f"{url.scheme}://{url.netloc}".lower()
