"""The second factor: a code from the authenticator app (or a recovery code), and setting
the app up.

::

    GET  /2fa, POST /2fa    authenticator code or recovery code
    GET  /2fa/enroll, POST  QR code and key, confirm with one code, recovery codes once

Both need a signed-in session (one factor); without one they send the person to sign in.
Replacing an authenticator takes a second factor from the last :data:`FRESH_SECOND_FACTOR`
seconds, so that a stolen password alone cannot move it to another phone.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.responses import Response
from starlette.routing import Route

from gateway.identity import totp
from gateway.identity.second_factor import Enrollment, EnrollmentExpired
from gateway.levels import AuthLevel
from gateway.observability.logging import printable
from gateway.portal import forms
from gateway.portal.common import Portal, Visit, host, log, path, redirect
from gateway.portal.svg import inline_svg
from gateway.security.crypto import DecryptionError
from gateway.session.model import Session

__all__ = ["FRESH_SECOND_FACTOR", "SecondFactorFlow"]

FRESH_SECOND_FACTOR = 300.0
"""Seconds after a second factor during which the user may replace their authenticator."""

_MAX_CODE = 64

_WRONG_CODE = "That code did not work. Check your authenticator app and try again."
_EMPTY_CODE = "Enter the code from your authenticator app."
_ENROLLMENT_EXPIRED = "That set-up expired. Scan this new code and try again."
_CODE_BANNED = "Too many attempts. Wait a few minutes, then try again."


class SecondFactorFlow:
    """The two-step verification and authenticator set-up handlers."""

    def __init__(self, portal: Portal) -> None:
        self._portal = portal
        self._runtime = portal.runtime
        self._sessions = portal.sessions
        self._digits = portal.runtime.second_factor.digits
        self._period = portal.runtime.second_factor.period

    def routes(self) -> list[Route]:
        endpoint = self._portal.endpoint
        return [
            Route("/2fa", endpoint(self.verify), methods=["GET", "POST"]),
            Route("/2fa/enroll", endpoint(self.enroll), methods=["GET", "POST"]),
        ]

    async def verify(self, visit: Visit) -> Response:
        """``GET|POST /2fa``: a code from the authenticator app, or a recovery code."""
        portal = self._portal
        request = visit.request
        if request.method == "GET":
            rd = portal.safe(visit, request.query_params.get("rd"))
            rm = forms.method(request.query_params.get("rm"))
            portal.signed_in(visit, rd, rm)
            if not await portal.has_totp(visit.username):
                return redirect(path("/2fa/enroll", rd, rm))
            return self._verify_page(visit, rd=rd, rm=rm)

        form = await portal.checked_form(visit)
        rd = portal.safe(visit, forms.text(form, "rd", limit=8192, strip=False))
        rm = forms.method(forms.text(form, "rm", limit=16))
        portal.signed_in(visit, rd, rm)
        code = forms.text(form, "code", limit=_MAX_CODE)
        if not code:
            return self._verify_page(visit, rd=rd, rm=rm, error=_EMPTY_CODE, status_code=400)
        regulator = self._runtime.regulator
        username = visit.username
        if await regulator.is_banned(username, visit.ip):
            self._runtime.metrics.login("second_factor_banned")
            log.warning(
                "second factor refused, banned user=%s ip=%s", printable(username), visit.ip
            )
            return self._verify_page(visit, rd=rd, rm=rm, error=_CODE_BANNED, status_code=429)
        method = await self._runtime.second_factor.verify(username, code)
        if method is None:
            await regulator.record_failure(username, visit.ip)
            self._runtime.metrics.login("second_factor_failure")
            log.info("second factor failed user=%s ip=%s", printable(username), visit.ip)
            return self._verify_page(visit, rd=rd, rm=rm, error=_WRONG_CODE, status_code=401)
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
        destination = rd or portal.default_destination(visit) or "/"
        return redirect(destination, cookies=(cookie,))

    async def enroll(self, visit: Visit) -> Response:
        """``GET|POST /2fa/enroll``: add (or replace) the authenticator app."""
        portal = self._portal
        request = visit.request
        is_post = request.method == "POST"
        form = await portal.checked_form(visit) if is_post else None
        source = form if form is not None else request.query_params
        rd = portal.safe(visit, forms.text(source, "rd", limit=8192, strip=False))
        rm = forms.method(forms.text(source, "rm", limit=16))
        portal.signed_in(visit, rd, rm)
        username = visit.username
        replacing = await portal.has_totp(username)
        if replacing and not _fresh_second_factor(visit.user):
            # Replacing a second factor takes a recent one: a stolen password alone must not
            # be enough to move someone's authenticator to a new phone.
            back = portal.portal_url(visit, path("/2fa/enroll", rd, rm))
            return redirect(path("/2fa", back, "GET") + "&reauth=1")

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
        destination = rd or portal.default_destination(visit) or "/"
        response = portal.page(
            visit,
            "recovery_codes.html",
            codes=codes,
            download_uri="data:text/plain;charset=utf-8," + quote("\n".join([*codes, ""]), safe=""),
            continue_url=destination,
            destination=host(rd) if rd else None,
        )
        for value in headers:
            response.headers.append("set-cookie", value)
        return response

    # -- steps ---------------------------------------------------------------------------

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

    # -- pages ---------------------------------------------------------------------------

    def _verify_page(
        self,
        visit: Visit,
        *,
        rd: str | None,
        rm: str,
        error: str | None = None,
        status_code: int = 200,
    ) -> Response:
        reauthenticate = visit.request.query_params.get("reauth") == "1"
        return self._portal.page(
            visit,
            "second_factor.html",
            status_code=status_code,
            rd=rd,
            rm=rm,
            destination=host(rd) if rd else None,
            reauthenticate=reauthenticate,
            username=visit.username,
            digits=self._digits,
            error=error,
        )

    def _enroll_page(
        self,
        visit: Visit,
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
        return self._portal.page(
            visit,
            "enroll.html",
            status_code=status_code,
            rd=rd,
            rm=rm,
            destination=host(rd) if rd else None,
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


def _fresh_second_factor(session: Session) -> bool:
    at = session.second_factor_at
    return (
        session.level >= AuthLevel.TWO_FACTOR
        and at is not None
        and time.time() - at <= FRESH_SECOND_FACTOR
    )


def _shown_context(username: str) -> bytes:
    return b"gateway/portal-enrollment-key\x00" + username.encode()
