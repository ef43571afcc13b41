"""What every flow of the portal shares: the visit, the form check, pages and redirects.

A flow's handler receives a :class:`Visit` (who is asking, on which cookie domain, with which
CSRF token) and returns a response. When it cannot go on, it raises: :class:`PageError` to
show a message page, :class:`Redirect` to send the person elsewhere, or whatever failed
underneath (a form that cannot be read, a store that is down, a session that ended). The
portal app's exception handlers (:mod:`gateway.portal.app`) turn each into its answer, so
handlers catch only what they answer themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gateway.net import normalize_host, parse_address
from gateway.portal import forms
from gateway.portal.csrf import CsrfGuard
from gateway.portal.pages import Pages
from gateway.runtime import Runtime
from gateway.security.redirects import safe_redirect
from gateway.session.model import Session
from gateway.session.settings import CookieDomain

__all__ = [
    "Handler",
    "PageError",
    "Portal",
    "Redirect",
    "Visit",
    "client_ip",
    "host",
    "log",
    "path",
    "redirect",
]

log = logging.getLogger("gateway.portal")


class PageError(Exception):
    """Stop handling a request and show a message page instead."""

    def __init__(self, status_code: int, title: str, message: str, *, link: bool = True) -> None:
        super().__init__(title)
        self.status_code = status_code
        self.title = title
        self.message = message
        self.link = link


class Redirect(Exception):
    """Stop handling a request and redirect instead (raised from deep inside a handler)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


_FORBIDDEN = PageError(
    403,
    "This form has expired",
    "For your security the page could not be submitted. Go back to the sign-in page and try again.",
)
_UNKNOWN_HOST = PageError(
    404, "Sign-in is not available here", "This address is not set up for signing in.", link=False
)


@dataclass(slots=True)
class Visit:
    """What every handler needs to know about the request in front of it."""

    request: Request
    cookie_domain: CookieDomain
    session: Session | None
    ip: str | None
    csrf: str
    csrf_cookie: str | None

    @property
    def user(self) -> Session:
        """The signed-in session; handlers call this only after :meth:`Portal.signed_in`."""
        assert self.session is not None and self.session.username is not None
        return self.session

    @property
    def username(self) -> str:
        assert self.session is not None and self.session.username is not None
        return self.session.username


Handler = Callable[[Visit], Awaitable[Response]]


class Portal:
    """The steps every flow takes, over one :class:`Runtime` and one set of pages."""

    def __init__(self, runtime: Runtime, pages: Pages) -> None:
        self.runtime = runtime
        self.sessions = runtime.sessions
        self.pages = pages
        self._csrf = CsrfGuard(runtime.hash_key)

    def endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A Starlette endpoint that hands ``handler`` the :class:`Visit`."""

        async def endpoint(request: Request) -> Response:
            return await handler(await self.visit(request))

        return endpoint

    async def visit(self, request: Request) -> Visit:
        """Who is asking: the cookie domain of the host, the session if signed in, CSRF."""
        try:
            host = normalize_host(request.headers.get("host", ""))
        except ValueError:
            raise _UNKNOWN_HOST from None
        cookie_domain = self.sessions.cookie_domain_for(host)
        if cookie_domain is None:
            raise _UNKNOWN_HOST
        session = None
        cookie = request.cookies.get(self.sessions.cookie_name(cookie_domain))
        if cookie:
            loaded = await self.sessions.load(cookie, cookie_domain)
            if loaded is not None and loaded.authenticated:
                session = loaded
        csrf, csrf_cookie = self._csrf.token(request)
        return Visit(request, cookie_domain, session, client_ip(request), csrf, csrf_cookie)

    async def checked_form(self, visit: Visit) -> FormData:
        """The POSTed form, once it has passed the CSRF check."""
        form = await forms.read_form(visit.request)
        if not self._csrf.is_valid(visit.request, forms.text(form, "csrf", limit=128)):
            log.warning("form refused, CSRF check failed ip=%s", visit.ip)
            raise _FORBIDDEN
        return form

    @staticmethod
    def signed_in(visit: Visit, rd: str | None, rm: str) -> None:
        """Send people without a session back to the sign-in form (keeping ``rd``)."""
        if visit.session is None:
            raise Redirect(path("/", rd, rm))

    async def has_totp(self, username: str) -> bool:
        return bool(await self.runtime.second_factor.has_totp(username))

    @staticmethod
    def safe(visit: Visit, rd: str | None) -> str | None:
        """``rd`` if it is a safe place to send the person back to, else None."""
        # Only this portal's own cookie domain: the session cookie we set is not sent anywhere
        # else, so a target elsewhere would only come straight back to another portal.
        return safe_redirect(rd, (visit.cookie_domain.domain,))

    @staticmethod
    def default_destination(visit: Visit) -> str | None:
        return Portal.safe(visit, visit.cookie_domain.default_redirect_url)

    @staticmethod
    def portal_url(visit: Visit, page: str) -> str:
        return f"{visit.cookie_domain.portal_url}{page}"

    def page(
        self, visit: Visit, template: str, *, status_code: int = 200, **values: Any
    ) -> HTMLResponse:
        """A page with a form: rendered with the visit's CSRF token (and its cookie if new)."""
        values.setdefault("error", None)
        values.setdefault("notice", None)
        response = self.pages.render(
            template, {"csrf": visit.csrf, **values}, status_code=status_code
        )
        if visit.csrf_cookie is not None:
            response.headers.append("set-cookie", visit.csrf_cookie)
        return response

    def message(self, error: PageError) -> Response:
        """The message page for ``error``."""
        return self.pages.render(
            "message.html",
            {
                "title": error.title,
                "message": error.message,
                "link": "/" if error.link else None,
                "link_text": "Go to the sign-in page",
                "error": None,
                "notice": None,
            },
            status_code=error.status_code,
        )


def redirect(location: str, *, cookies: tuple[str, ...] = ()) -> Response:
    """303 to ``location``, setting ``cookies``."""
    response = RedirectResponse(location, status_code=303)
    for value in cookies:
        response.headers.append("set-cookie", value)
    return response


def path(page: str, rd: str | None, rm: str) -> str:
    """A portal page that carries ``rd`` and ``rm`` along."""
    if rd is None:
        return page
    return f"{page}?{urlencode({'rd': rd, 'rm': rm})}"


def host(url: str) -> str:
    """The host name of ``url``, to name a destination on a page."""
    return urlsplit(url).hostname or url


def client_ip(request: Request) -> str | None:
    """The client's address (Caddy's, through the trusted-proxy middleware), if it is one."""
    if request.client is None:
        return None
    try:
        return str(parse_address(request.client.host))
    except ValueError:
        return None
