"""Signing in and out: the sign-in form, the password check, the signed-in page, sign-out.

::

    GET  /                  sign-in form, or the signed-in page (or straight on to ``rd``)
    POST /login             username + password
    POST /logout            end this session
    POST /logout/everywhere end every session of the user

After the password, the policy says which level ``rd`` needs, so that a person is asked for a
second factor before being sent back rather than after; the portal never decides access.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from gateway.identity.model import DirectoryUnavailable
from gateway.identity.sign_in import PasswordCheck, Refusal
from gateway.levels import AuthLevel, Level
from gateway.observability.logging import printable
from gateway.policy.model import BadTarget, Subject, Target
from gateway.portal import forms
from gateway.portal.common import Portal, Visit, host, log, path, redirect

__all__ = ["SignInFlow"]

_MAX_USERNAME = 256
_MAX_PASSWORD = 1024

_WRONG_LOGIN = "Incorrect username or password."
_EMPTY_LOGIN = "Enter your username and password."
_NOTICES = {
    "signed-out": "You have been signed out.",
    "signed-out-everywhere": "You have been signed out on every device.",
}


class SignInFlow:
    """The sign-in and sign-out handlers."""

    def __init__(self, portal: Portal) -> None:
        self._portal = portal
        self._runtime = portal.runtime
        self._sessions = portal.sessions
        self._passwords = PasswordCheck(
            portal.runtime.users, portal.runtime.regulator, log=log, attempt="sign-in"
        )

    def routes(self) -> list[Route]:
        endpoint = self._portal.endpoint
        return [
            Route("/", endpoint(self.index), methods=["GET"]),
            Route("/login", endpoint(self.login), methods=["POST"]),
            Route("/logout", endpoint(self.logout), methods=["POST"]),
            Route("/logout/everywhere", endpoint(self.logout_everywhere), methods=["POST"]),
        ]

    async def index(self, visit: Visit) -> Response:
        """``GET /``: the sign-in form, the signed-in page, or on to ``rd``."""
        query = visit.request.query_params
        rd = self._portal.safe(visit, query.get("rd"))
        rm = forms.method(query.get("rm"))
        if visit.session is None:
            notice = _NOTICES.get(query.get("m", ""))
            return self._login_page(visit, rd=rd, rm=rm, notice=notice)
        if rd is not None:
            required = self._required_level(visit, rd, rm)
            if required == Level.DENY:
                return await self._signed_in_page(
                    visit, notice=f"Your account does not have access to {host(rd)}."
                )
            if required is not None:
                if required.satisfied_by(visit.user.level):
                    return redirect(rd)
                # Signed in, so one factor is there: what is missing is the second.
                return await self._to_second_factor(visit, rd, rm)
        return await self._signed_in_page(visit, notice=_NOTICES.get(query.get("m", "")))

    async def login(self, visit: Visit) -> Response:
        """``POST /login``: check the password, start a session, continue or ask for more."""
        form = await self._portal.checked_form(visit)
        username = forms.text(form, "username", limit=_MAX_USERNAME)
        password = forms.text(form, "password", limit=_MAX_PASSWORD, strip=False)
        rd = self._portal.safe(visit, forms.text(form, "rd", limit=8192, strip=False))
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

        destination = rd or self._portal.default_destination(visit)
        if destination is not None:
            required = self._required_level(visit, destination, rm if rd else "GET")
            if required == Level.DENY:
                if rd is not None:
                    # Not a bare 403 from the proxy: the signed-in page says what happened.
                    return redirect(path("/", rd, rm), cookies=(cookie,))
            elif required is not None and not required.satisfied_by(session.level):
                return await self._to_second_factor(visit, rd, rm, cookies=(cookie,))
        return redirect(destination or "/", cookies=(cookie,))

    async def logout(self, visit: Visit) -> Response:
        """``POST /logout``: end this session and forget its cookie."""
        form = await self._portal.checked_form(visit)
        if visit.session is not None:
            await self._sessions.logout(visit.session)
            log.info("signed out user=%s ip=%s", printable(visit.username), visit.ip)
        rd = self._portal.safe(visit, forms.text(form, "rd", limit=8192, strip=False))
        clear = self._sessions.clear_cookie_header(visit.cookie_domain)
        return redirect(rd or "/?m=signed-out", cookies=(clear,))

    async def logout_everywhere(self, visit: Visit) -> Response:
        """``POST /logout/everywhere``: end every session of the signed-in user."""
        await self._portal.checked_form(visit)
        clear = self._sessions.clear_cookie_header(visit.cookie_domain)
        if visit.session is None or visit.session.username is None:
            return redirect("/", cookies=(clear,))
        count = await self._sessions.logout_user(visit.session.username)
        log.info(
            "signed out everywhere user=%s ip=%s sessions=%d",
            printable(visit.username),
            visit.ip,
            count,
        )
        return redirect("/?m=signed-out-everywhere", cookies=(clear,))

    # -- steps ---------------------------------------------------------------------------

    def _required_level(self, visit: Visit, url: str, rm: str) -> Level | None:
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

    async def _to_second_factor(
        self, visit: Visit, rd: str | None, rm: str, *, cookies: tuple[str, ...] = ()
    ) -> Response:
        page = "/2fa" if await self._portal.has_totp(visit.username) else "/2fa/enroll"
        return redirect(path(page, rd, rm), cookies=cookies)

    # -- pages ---------------------------------------------------------------------------

    def _login_page(
        self,
        visit: Visit,
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
        return self._portal.page(
            visit,
            "login.html",
            status_code=status_code,
            rd=rd,
            rm=rm,
            destination=host(rd) if rd else None,
            username=username,
            remember=remember,
            remember_me_days=max(1, round(remember_seconds / 86400)) if remember_seconds > 0 else 0,
            notice=notice,
            error=error,
        )

    def _login_failed(
        self, visit: Visit, rd: str | None, rm: str, username: str, remember: bool
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

    async def _signed_in_page(self, visit: Visit, *, notice: str | None) -> Response:
        session = visit.user
        return self._portal.page(
            visit,
            "signed_in.html",
            user=session,
            two_factor=session.level >= AuthLevel.TWO_FACTOR,
            has_totp=await self._portal.has_totp(session.username or ""),
            notice=notice,
        )
