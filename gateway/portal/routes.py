"""The browser login portal: sign in, two-step verification, authenticator set-up, sign out.

Pages (all plain HTML forms, no JavaScript)::

    GET  /                  sign-in form, or the signed-in page (or straight on to ``rd``)
    POST /login             username + password
    GET  /2fa, POST /2fa    authenticator code or recovery code
    GET  /2fa/enroll, POST  QR code and key, confirm with one code, recovery codes once
    POST /logout            end this session
    POST /logout/everywhere end every session of the user
    GET  /static/...        the stylesheet and icon

``rd`` is the URL the person was on when the gateway sent them here and ``rm`` its method.
The portal never decides access: it asks the policy only which level ``rd`` needs, so that a
person is asked for a second factor before being sent back rather than after.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import Unavailable
from gateway.identity import totp
from gateway.identity.model import DirectoryUnavailable
from gateway.identity.second_factor import Enrollment, EnrollmentExpired
from gateway.identity.sign_in import PasswordCheck, Refusal
from gateway.levels import AuthLevel, Level
from gateway.net import normalize_host, parse_address
from gateway.observability.logging import printable
from gateway.observability.throttle import log_failure
from gateway.policy.model import BadTarget, Subject, Target
from gateway.portal import forms
from gateway.portal.csrf import CsrfGuard
from gateway.portal.headers import SecurityHeaders
from gateway.portal.pages import PACKAGE_STATIC, Pages
from gateway.portal.svg import inline_svg
from gateway.runtime import Runtime
from gateway.security.crypto import DecryptionError
from gateway.security.redirects import safe_redirect
from gateway.session.model import Session, SessionExpired
from gateway.session.settings import CookieDomain

__all__ = ["Portal", "portal_routes"]

log = logging.getLogger("gateway.portal")

BRAND = "Gateway"
FRESH_SECOND_FACTOR = 300.0
"""Seconds after a second factor during which the user may replace their authenticator."""

_MAX_USERNAME = 256
_MAX_PASSWORD = 1024
_MAX_CODE = 64
_STATIC_CACHE = "public, max-age=3600"

_WRONG_LOGIN = "Incorrect username or password."
_EMPTY_LOGIN = "Enter your username and password."
_WRONG_CODE = "That code did not work. Check your authenticator app and try again."
_EMPTY_CODE = "Enter the code from your authenticator app."
_ENROLLMENT_EXPIRED = "That set-up expired. Scan this new code and try again."
_CODE_BANNED = "Too many attempts. Wait a few minutes, then try again."
_NOTICES = {
    "signed-out": "You have been signed out.",
    "signed-out-everywhere": "You have been signed out on every device.",
}


class _PageError(Exception):
    """Stop handling a request and show a message page instead."""

    def __init__(self, status_code: int, title: str, message: str, *, link: bool = True) -> None:
        super().__init__(title)
        self.status_code = status_code
        self.title = title
        self.message = message
        self.link = link


class _Redirect(Exception):
    """Stop handling a request and redirect instead (raised from deep inside a handler)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


_FORBIDDEN = _PageError(
    403,
    "This form has expired",
    "For your security the page could not be submitted. Go back to the sign-in page and try again.",
)
_UNKNOWN_HOST = _PageError(
    404, "Sign-in is not available here", "This address is not set up for signing in.", link=False
)
_BAD_FORM = _PageError(400, "Something went wrong", "The form could not be read. Please try again.")
_DIRECTORY_DOWN = _PageError(
    503,
    "Sign-in is temporarily unavailable",
    "The sign-in service is temporarily unavailable. Try again in a minute.",
)
_STORE_DOWN = _PageError(
    503,
    "Sign-in is temporarily unavailable",
    "Sessions cannot be reached right now. Try again in a minute.",
)
_INTERNAL = _PageError(
    500, "Something went wrong", "An unexpected error occurred. Please try again in a moment."
)
_NOT_FOUND = _PageError(404, "Page not found", "There is nothing at this address.")


@dataclass(slots=True)
class _Visit:
    """What every handler needs to know about the request in front of it."""

    request: Request
    cookie_domain: CookieDomain
    session: Session | None
    ip: str | None
    csrf: str
    csrf_cookie: str | None

    @property
    def user(self) -> Session:
        """The signed-in session; handlers call this only after :meth:`Portal._signed_in`."""
        assert self.session is not None and self.session.username is not None
        return self.session

    @property
    def username(self) -> str:
        assert self.session is not None and self.session.username is not None
        return self.session.username


Handler = Callable[["Portal", _Visit], Awaitable[Response]]


class Portal:
    """The portal's request handlers over one :class:`Runtime`."""

    def __init__(self, runtime: Runtime, *, theme_dir: Path | None = None) -> None:
        self._runtime = runtime
        self._sessions = runtime.sessions
        self._csrf = CsrfGuard(runtime.hash_key)
        templates = theme_dir / "templates" if theme_dir is not None else None
        static = theme_dir / "static" if theme_dir is not None else None
        self._theme_static = static if static is not None and static.is_dir() else None
        self._pages = Pages(
            brand=BRAND,
            templates_dir=templates,
            static_dirs=tuple(d for d in (self._theme_static, PACKAGE_STATIC) if d is not None),
        )
        self._passwords = PasswordCheck(
            runtime.users, runtime.regulator, log=log, attempt="sign-in"
        )
        self._digits = runtime.second_factor.digits
        self._period = runtime.second_factor.period

    # -- routing -------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """One catch-all mount, so that every answer, even a 404 or 413, gets the headers."""
        # A theme's static files first, then the package's own.
        static = StaticFiles(directory=self._theme_static, packages=[("gateway.portal", "static")])
        router = Router(
            routes=[
                Route("/", self._endpoint(Portal.index), methods=["GET"]),
                Route("/login", self._endpoint(Portal.login), methods=["POST"]),
                Route("/2fa", self._endpoint(Portal.second_factor), methods=["GET", "POST"]),
                Route("/2fa/enroll", self._endpoint(Portal.enroll), methods=["GET", "POST"]),
                Route("/logout", self._endpoint(Portal.logout), methods=["POST"]),
                Route(
                    "/logout/everywhere",
                    self._endpoint(Portal.logout_everywhere),
                    methods=["POST"],
                ),
                Mount(
                    "/static",
                    app=SecurityHeaders(static, cache_control=_STATIC_CACHE),
                    name="static",
                ),
            ],
            default=self._not_found,
        )
        limited = RequestBodyLimitMiddleware(router, max_body_size=forms.MAX_BODY_BYTES)
        return [Mount("", app=SecurityHeaders(self._http_errors(limited)))]

    def _http_errors(self, app: ASGIApp) -> ASGIApp:
        """Answer Starlette's HTTP exceptions (405 and the like) here, inside the headers."""

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            started = False

            async def tracking_send(message: Message) -> None:
                nonlocal started
                started = started or message["type"] == "http.response.start"
                await send(message)

            try:
                await app(scope, receive, tracking_send)
            except HTTPException as error:
                if started:
                    raise
                response = PlainTextResponse(
                    HTTPStatus(error.status_code).phrase,
                    status_code=error.status_code,
                    headers=error.headers,
                )
                await response(scope, receive, send)

        return handle

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                visit = await self._visit(request)
                return await handler(self, visit)
            except _Redirect as redirect:
                return self._redirect(redirect.location)
            except SessionExpired:
                # The session ended meanwhile (double submit, "log out everywhere"):
                # start again at sign-in, keeping where the person was going.
                query = request.url.query
                return self._redirect("/" + (f"?{query}" if query else ""))
            except _PageError as error:
                return self._message(request, error)
            except forms.BadForm:
                return self._message(request, _BAD_FORM)
            except Unavailable as error:
                # Whatever is down, a "try again" page and one log line per kind per interval.
                log_failure(log, error, f"dependency unavailable ip={_client_ip(request)}")
                directory = isinstance(error, DirectoryUnavailable)
                return self._message(request, _DIRECTORY_DOWN if directory else _STORE_DOWN)
            except HTTPException:
                raise  # the body limit answers with 413 itself
            except ClientDisconnect:
                return Response(status_code=400)  # nobody is listening any more
            except Exception as error:
                # Traceback kept, but once per kind of error per interval.
                log_failure(log, error, f"portal error on {request.method} {request.url.path}")
                return self._message(request, _INTERNAL)

        return endpoint

    async def _not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self._message(Request(scope, receive), _NOT_FOUND)
        await response(scope, receive, send)

    # -- pages ---------------------------------------------------------------------------

    async def index(self, visit: _Visit) -> Response:
        """``GET /``: the sign-in form, the signed-in page, or on to ``rd``."""
        query = visit.request.query_params
        rd = self._safe(visit, query.get("rd"))
        rm = forms.method(query.get("rm"))
        if visit.session is None:
            notice = _NOTICES.get(query.get("m", ""))
            return self._login_page(visit, rd=rd, rm=rm, notice=notice)
        if rd is not None:
            required = self._required_level(visit, rd, rm)
            if required == Level.DENY:
                return await self._signed_in_page(
                    visit, notice=f"Your account does not have access to {_host(rd)}."
                )
            if required is not None:
                if required.satisfied_by(visit.user.level):
                    return self._redirect(rd)
                # Signed in, so one factor is there: what is missing is the second.
                return await self._to_second_factor(visit, rd, rm)
        return await self._signed_in_page(visit, notice=_NOTICES.get(query.get("m", "")))

    async def login(self, visit: _Visit) -> Response:
        """``POST /login``: check the password, start a session, continue or ask for more."""
        form = await self._checked_form(visit)
        username = forms.text(form, "username", limit=_MAX_USERNAME)
        password = forms.text(form, "password", limit=_MAX_PASSWORD, strip=False)
        rd = self._safe(visit, forms.text(form, "rd", limit=8192, strip=False))
        rm = forms.method(forms.text(form, "rm", limit=16))
        remember = form.get("remember") in ("1", "on", "true")
        if not username or not password:
            return self._login_page(
                visit,
                rd=rd,
                rm=rm,
                username=username,
                remember=remember,
                error=_EMPTY_LOGIN,
                status_code=400,
            )

        try:
            user = await self._passwords.check(username, password, visit.ip)
        except DirectoryUnavailable:
            self._runtime.metrics.login("unavailable")
            raise
        if isinstance(user, Refusal):
            # Banned or wrong: the same words and status (and, by the check, the same time).
            self._runtime.metrics.login(user.reason)
            return self._login_failed(visit, rd, rm, username, remember)

        old = visit.session
        session = await self._sessions.login(
            visit.cookie_domain,
            username=user.username,
            display_name=user.display_name,
            email=user.email,
            groups=user.groups,
            level=AuthLevel.ONE_FACTOR,
            remember_me=remember,
            old_session=old,
            data=old.data if old is not None and old.username == user.username else {},
        )
        self._runtime.metrics.login("success")
        log.info("sign-in succeeded user=%s ip=%s", printable(user.username), visit.ip)
        visit.session = session
        cookie = self._sessions.cookie_header(session, visit.cookie_domain)

        destination = rd or self._default_destination(visit)
        if destination is not None:
            required = self._required_level(visit, destination, rm if rd else "GET")
            if required == Level.DENY:
                if rd is not None:
                    # Not a bare 403 from the proxy: the signed-in page says what happened.
                    return self._redirect(_path("/", rd, rm), cookies=(cookie,))
            elif required is not None and not required.satisfied_by(session.level):
                return await self._to_second_factor(visit, rd, rm, cookies=(cookie,))
        return self._redirect(destination or "/", cookies=(cookie,))

    async def second_factor(self, visit: _Visit) -> Response:
        """``GET|POST /2fa``: a code from the authenticator app, or a recovery code."""
        request = visit.request
        if request.method == "GET":
            rd = self._safe(visit, request.query_params.get("rd"))
            rm = forms.method(request.query_params.get("rm"))
            self._signed_in(visit, rd, rm)
            if not await self._has_totp(visit.username):
                return self._redirect(_path("/2fa/enroll", rd, rm))
            return self._second_factor_page(visit, rd=rd, rm=rm)

        form = await self._checked_form(visit)
        rd = self._safe(visit, forms.text(form, "rd", limit=8192, strip=False))
        rm = forms.method(forms.text(form, "rm", limit=16))
        self._signed_in(visit, rd, rm)
        code = forms.text(form, "code", limit=_MAX_CODE)
        if not code:
            return self._second_factor_page(visit, rd=rd, rm=rm, error=_EMPTY_CODE, status_code=400)
        regulator = self._runtime.regulator
        username = visit.username
        if await regulator.is_banned(username, visit.ip):
            self._runtime.metrics.login("second_factor_banned")
            log.warning(
                "second factor refused, banned user=%s ip=%s", printable(username), visit.ip
            )
            return self._second_factor_page(
                visit, rd=rd, rm=rm, error=_CODE_BANNED, status_code=429
            )
        method = await self._runtime.second_factor.verify(username, code)
        if method is None:
            await regulator.record_failure(username, visit.ip)
            self._runtime.metrics.login("second_factor_failure")
            log.info("second factor failed user=%s ip=%s", printable(username), visit.ip)
            return self._second_factor_page(visit, rd=rd, rm=rm, error=_WRONG_CODE, status_code=401)
        await regulator.record_success(username, visit.ip)
        session = await self._sessions.raise_level(visit.user, AuthLevel.TWO_FACTOR)
        self._runtime.metrics.login(f"second_factor_{method}")
        log.info(
            "second factor succeeded user=%s ip=%s method=%s",
            printable(username),
            visit.ip,
            method,
        )
        cookie = self._sessions.cookie_header(session, visit.cookie_domain)
        destination = rd or self._default_destination(visit) or "/"
        return self._redirect(destination, cookies=(cookie,))

    async def enroll(self, visit: _Visit) -> Response:
        """``GET|POST /2fa/enroll``: add (or replace) the authenticator app."""
        request = visit.request
        is_post = request.method == "POST"
        form = await self._checked_form(visit) if is_post else None
        source = form if form is not None else request.query_params
        rd = self._safe(visit, forms.text(source, "rd", limit=8192, strip=False))
        rm = forms.method(forms.text(source, "rm", limit=16))
        self._signed_in(visit, rd, rm)
        username = visit.username
        replacing = await self._has_totp(username)
        if replacing and not self._fresh_second_factor(visit.user):
            # Replacing a second factor takes a recent one: a stolen password alone must not
            # be enough to move someone's authenticator to a new phone.
            back = self._portal_url(visit, _path("/2fa/enroll", rd, rm))
            return self._redirect(_path("/2fa", back, "GET") + "&reauth=1")

        second_factor = self._runtime.second_factor
        if form is None:
            enrollment = second_factor.begin_enrollment(username)
            return self._enroll_page(visit, enrollment, rd=rd, rm=rm, replacing=replacing)

        token = forms.text(form, "enrollment", limit=4096)
        code = forms.text(form, "code", limit=_MAX_CODE)
        try:
            codes = await second_factor.confirm_enrollment(username, token, code) if code else None
            shown = None if codes else self._shown_enrollment(username, token, form)
        except EnrollmentExpired:
            codes = shown = None
        if codes is None and shown is None:
            # Expired or tampered with: a fresh key, to be scanned again.
            return self._enroll_page(
                visit,
                second_factor.begin_enrollment(username),
                rd=rd,
                rm=rm,
                replacing=replacing,
                error=_ENROLLMENT_EXPIRED,
                status_code=400,
            )
        if codes is None:
            # The same key again: the person may already have added it to their app.
            assert shown is not None
            return self._enroll_page(
                visit,
                shown,
                rd=rd,
                rm=rm,
                replacing=replacing,
                error=_WRONG_CODE if code else _EMPTY_CODE,
                status_code=400,
            )
        log.info("authenticator enrolled user=%s ip=%s", printable(username), visit.ip)
        headers: list[str] = []
        session = visit.user
        if session.level < AuthLevel.TWO_FACTOR:
            # The code just confirmed is a second factor; count it.
            session = await self._sessions.raise_level(session, AuthLevel.TWO_FACTOR)
            headers.append(self._sessions.cookie_header(session, visit.cookie_domain))
        destination = rd or self._default_destination(visit) or "/"
        response = self._page(
            visit,
            "recovery_codes.html",
            codes=codes,
            download_uri="data:text/plain;charset=utf-8," + quote("\n".join([*codes, ""]), safe=""),
            continue_url=destination,
            destination=_host(rd) if rd else None,
        )
        for value in headers:
            response.headers.append("set-cookie", value)
        return response

    async def logout(self, visit: _Visit) -> Response:
        """``POST /logout``: end this session and forget its cookie."""
        form = await self._checked_form(visit)
        if visit.session is not None:
            await self._sessions.logout(visit.session)
            log.info("signed out user=%s ip=%s", printable(visit.username), visit.ip)
        rd = self._safe(visit, forms.text(form, "rd", limit=8192, strip=False))
        clear = self._sessions.clear_cookie_header(visit.cookie_domain)
        return self._redirect(rd or "/?m=signed-out", cookies=(clear,))

    async def logout_everywhere(self, visit: _Visit) -> Response:
        """``POST /logout/everywhere``: end every session of the signed-in user."""
        await self._checked_form(visit)
        clear = self._sessions.clear_cookie_header(visit.cookie_domain)
        if visit.session is None or visit.session.username is None:
            return self._redirect("/", cookies=(clear,))
        count = await self._sessions.logout_user(visit.session.username)
        log.info(
            "signed out everywhere user=%s ip=%s sessions=%d",
            printable(visit.username),
            visit.ip,
            count,
        )
        return self._redirect("/?m=signed-out-everywhere", cookies=(clear,))

    # -- steps ---------------------------------------------------------------------------

    async def _visit(self, request: Request) -> _Visit:
        try:
            host = normalize_host(request.headers.get("host", ""))
        except ValueError:
            raise _UNKNOWN_HOST from None
        cookie_domain = self._sessions.cookie_domain_for(host)
        if cookie_domain is None:
            raise _UNKNOWN_HOST
        session = None
        cookie = request.cookies.get(self._sessions.cookie_name(cookie_domain))
        if cookie:
            loaded = await self._sessions.load(cookie, cookie_domain)
            if loaded is not None and loaded.authenticated:
                session = loaded
        csrf, csrf_cookie = self._csrf.token(request)
        return _Visit(request, cookie_domain, session, _client_ip(request), csrf, csrf_cookie)

    async def _checked_form(self, visit: _Visit) -> FormData:
        form = await forms.read_form(visit.request)
        if not self._csrf.is_valid(visit.request, forms.text(form, "csrf", limit=128)):
            log.warning("form refused, CSRF check failed ip=%s", visit.ip)
            raise _FORBIDDEN
        return form

    def _signed_in(self, visit: _Visit, rd: str | None, rm: str) -> None:
        """Send people without a session back to the sign-in form (keeping ``rd``)."""
        if visit.session is None:
            raise _Redirect(_path("/", rd, rm))

    async def _to_second_factor(
        self, visit: _Visit, rd: str | None, rm: str, *, cookies: tuple[str, ...] = ()
    ) -> Response:
        page = "/2fa" if await self._has_totp(visit.username) else "/2fa/enroll"
        return self._redirect(_path(page, rd, rm), cookies=cookies)

    async def _has_totp(self, username: str) -> bool:
        return bool(await self._runtime.second_factor.has_totp(username))

    def _required_level(self, visit: _Visit, url: str, rm: str) -> Level | None:
        """The level the policy wants for ``url`` from the signed-in user; None if unknown."""
        session = visit.session
        if session is None or session.username is None:
            return None
        try:
            target = Target.from_url(url, rm, visit.ip, paths=self._runtime.settings.server.paths)
        except BadTarget:
            return None
        subject = Subject.of(session.username, session.groups)
        return self._runtime.snapshots.current.engine.decide(target, subject).level

    def _shown_enrollment(self, username: str, token: str, form: FormData) -> Enrollment | None:
        """The enrollment whose key the page showed, to show it again after a wrong code.

        The key travels sealed (for this user) beside the second-factor service's own token,
        which alone decides whether a code confirms the enrollment.
        """
        shown = forms.text(form, "shown", limit=4096)
        try:
            secret = self._runtime.keyring.open_text(shown, context=_shown_context(username))
        except DecryptionError:
            return None
        second_factor = self._runtime.second_factor
        uri = totp.provisioning_uri(
            secret,
            username,
            second_factor.issuer,
            period=second_factor.period,
            digits=second_factor.digits,
        )
        return Enrollment(secret=secret, uri=uri, qr_svg=totp.qr_svg(uri), token=token)

    def _fresh_second_factor(self, session: Session) -> bool:
        at = session.second_factor_at
        return (
            session.level >= AuthLevel.TWO_FACTOR
            and at is not None
            and time.time() - at <= FRESH_SECOND_FACTOR
        )

    def _safe(self, visit: _Visit, rd: str | None) -> str | None:
        # Only this portal's own cookie domain: the session cookie we set is not sent anywhere
        # else, so a target elsewhere would only come straight back to another portal.
        return safe_redirect(rd, (visit.cookie_domain.domain,))

    def _default_destination(self, visit: _Visit) -> str | None:
        return self._safe(visit, visit.cookie_domain.default_redirect_url)

    @staticmethod
    def _portal_url(visit: _Visit, path: str) -> str:
        return f"{visit.cookie_domain.portal_url}{path}"

    # -- responses -----------------------------------------------------------------------

    def _page(
        self, visit: _Visit, template: str, *, status_code: int = 200, **values: Any
    ) -> HTMLResponse:
        values.setdefault("error", None)
        values.setdefault("notice", None)
        response = self._pages.render(
            template, {"csrf": visit.csrf, **values}, status_code=status_code
        )
        if visit.csrf_cookie is not None:
            response.headers.append("set-cookie", visit.csrf_cookie)
        return response

    def _login_page(
        self,
        visit: _Visit,
        *,
        rd: str | None,
        rm: str,
        username: str = "",
        remember: bool = False,
        notice: str | None = None,
        error: str | None = None,
        status_code: int = 200,
    ) -> Response:
        remember_seconds = visit.cookie_domain.remember_me
        if remember_seconds is None:
            remember_seconds = self._runtime.settings.session.remember_me
        return self._page(
            visit,
            "login.html",
            status_code=status_code,
            rd=rd,
            rm=rm,
            destination=_host(rd) if rd else None,
            username=username,
            remember=remember,
            remember_me_days=max(1, round(remember_seconds / 86400)) if remember_seconds > 0 else 0,
            notice=notice,
            error=error,
        )

    def _login_failed(
        self, visit: _Visit, rd: str | None, rm: str, username: str, remember: bool
    ) -> Response:
        return self._login_page(
            visit,
            rd=rd,
            rm=rm,
            username=username,
            remember=remember,
            error=_WRONG_LOGIN,
            status_code=401,
        )

    async def _signed_in_page(self, visit: _Visit, *, notice: str | None) -> Response:
        session = visit.user
        return self._page(
            visit,
            "signed_in.html",
            user=session,
            two_factor=session.level >= AuthLevel.TWO_FACTOR,
            has_totp=await self._has_totp(session.username or ""),
            notice=notice,
        )

    def _second_factor_page(
        self,
        visit: _Visit,
        *,
        rd: str | None,
        rm: str,
        error: str | None = None,
        status_code: int = 200,
    ) -> Response:
        reauthenticate = visit.request.query_params.get("reauth") == "1"
        return self._page(
            visit,
            "second_factor.html",
            status_code=status_code,
            rd=rd,
            rm=rm,
            destination=_host(rd) if rd else None,
            reauthenticate=reauthenticate,
            username=visit.username,
            digits=self._digits,
            error=error,
        )

    def _enroll_page(
        self,
        visit: _Visit,
        enrollment: Enrollment,
        *,
        rd: str | None,
        rm: str,
        replacing: bool,
        error: str | None = None,
        status_code: int = 200,
    ) -> Response:
        username = visit.username
        qr_code = inline_svg(
            enrollment.qr_svg, label=f"QR code that adds {username} to an authenticator app"
        )
        if qr_code is None:
            log.warning("QR code not shown: unexpected SVG markup user=%s", printable(username))
        return self._page(
            visit,
            "enroll.html",
            status_code=status_code,
            rd=rd,
            rm=rm,
            destination=_host(rd) if rd else None,
            replacing=replacing,
            username=username,
            secret=enrollment.secret,
            qr_code=qr_code,
            enrollment=enrollment.token,
            shown=self._runtime.keyring.seal_text(
                enrollment.secret, context=_shown_context(username)
            ),
            digits=self._digits,
            period=self._period,
            error=error,
        )

    def _message(self, request: Request, error: _PageError) -> Response:
        return self._pages.render(
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

    @staticmethod
    def _redirect(location: str, *, cookies: tuple[str, ...] = ()) -> Response:
        response = RedirectResponse(location, status_code=303)
        for value in cookies:
            response.headers.append("set-cookie", value)
        return response


def _shown_context(username: str) -> bytes:
    return b"gateway/portal-enrollment-key\x00" + username.encode()


def _path(page: str, rd: str | None, rm: str) -> str:
    """A portal page that carries ``rd`` and ``rm`` along."""
    if rd is None:
        return page
    return f"{page}?{urlencode({'rd': rd, 'rm': rm})}"


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def _client_ip(request: Request) -> str | None:
    """The client's address (Caddy's, through the trusted-proxy middleware), if it is one."""
    if request.client is None:
        return None
    try:
        return str(parse_address(request.client.host))
    except ValueError:
        return None


def portal_routes(runtime: Runtime, *, theme_dir: Path | None = None) -> list[BaseRoute]:
    """The portal's routes, to be mounted at the root of the portal host.

    ``theme_dir`` may hold ``templates/`` and ``static/`` that override the built-in ones
    file by file.
    """
    return Portal(runtime, theme_dir=theme_dir).routes()
