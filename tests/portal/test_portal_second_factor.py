"""Two-step verification: setting up an authenticator, codes, recovery codes, step-up."""

from __future__ import annotations

import html
import re
import time
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from gateway.session.model import AuthLevel, SessionExpired
from tests.portal.support import Gateway, csrf_field

SECURE = "https://secure.example.com/vault"
_SECRET = re.compile(r'id="totp-secret"[^>]*>([^<]+)<')
_ENROLLMENT = re.compile(r'name="enrollment" value="([^"]*)"')
_CODES = re.compile(r'<ol class="codes" id="recovery-codes">(.*?)</ol>', re.S)


def _session(gateway: Gateway):  # type: ignore[no-untyped-def]
    cookie_domain = gateway.runtime.sessions.cookie_domain_for("auth.example.com")
    value = gateway.session_cookie()
    assert cookie_domain is not None and value is not None
    return gateway.run(gateway.runtime.sessions.load, value, cookie_domain)


def _enroll_form(gateway: Gateway, query: str = "") -> tuple[str, dict[str, str]]:
    page = gateway.client.get("/2fa/enroll" + query)
    assert page.status_code == 200, page.text
    secret = _SECRET.search(page.text)
    enrollment = _ENROLLMENT.search(page.text)
    assert secret and enrollment
    fields = {"csrf": csrf_field(page.text), "enrollment": html.unescape(enrollment.group(1))}
    for name in ("rd", "rm", "shown"):
        match = re.search(rf'name="{name}" value="([^"]*)"', page.text)
        if match:
            fields[name] = html.unescape(match.group(1))
    return secret.group(1).strip(), fields


def _enroll(gateway: Gateway, query: str = "") -> tuple[pyotp.TOTP, list[str], object]:
    """Set up an authenticator through the pages; the TOTP, the recovery codes, the answer."""
    secret, fields = _enroll_form(gateway, query)
    totp = pyotp.TOTP(secret)
    response = gateway.client.post("/2fa/enroll", data={**fields, "code": totp.now()})
    assert response.status_code == 200, response.text
    block = _CODES.search(response.text)
    assert block
    codes = [html.unescape(code) for code in re.findall(r"<code>([^<]+)</code>", block.group(1))]
    return totp, codes, response


def _next_code(totp: pyotp.TOTP) -> str:
    """A code of the next time step: valid (one step of skew) and not yet used."""
    return totp.at(time.time() + totp.interval)


def _verify(gateway: Gateway, code: str, **fields: str):  # type: ignore[no-untyped-def]
    csrf = csrf_field(gateway.client.get("/2fa").text)
    return gateway.client.post("/2fa", data={"csrf": csrf, "code": code, **fields})


def test_two_factor_target_without_totp_leads_to_enrollment(gateway: Gateway) -> None:
    response = gateway.login(rd=SECURE)
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/2fa/enroll"
    assert parse_qs(location.query)["rd"] == [SECURE]
    # /2fa itself sends a user without an authenticator to the set-up page.
    redirect = gateway.client.get("/2fa", params={"rd": SECURE})
    assert urlsplit(redirect.headers["location"]).path == "/2fa/enroll"


def test_enrollment_page_shows_qr_code_and_key(gateway: Gateway) -> None:
    gateway.login()
    page = gateway.client.get("/2fa/enroll")
    assert page.status_code == 200
    figure = re.search(
        r'<figure class="qr"><svg role="img" aria-label="QR code[^"]*"(.*?)</svg>', page.text, re.S
    )
    assert figure is not None
    assert "<path" in figure.group(1)
    secret = _SECRET.search(page.text)
    assert secret is not None
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret.group(1).strip())
    # The key is in the page, but the form carries it only sealed.
    assert page.text.count(secret.group(1).strip()) == 1


def test_enrollment_rejects_a_wrong_code(gateway: Gateway) -> None:
    gateway.login()
    secret, fields = _enroll_form(gateway)
    wrong = str((int(pyotp.TOTP(secret).now()) + 1) % 1_000_000).zfill(6)
    response = gateway.client.post("/2fa/enroll", data={**fields, "code": wrong})
    assert response.status_code == 400
    assert "did not work" in response.text
    # The same key is offered again, so the app already set up still works.
    again = _SECRET.search(response.text)
    assert again is not None and again.group(1).strip() == secret
    assert not gateway.run(gateway.runtime.second_factor.has_totp, "alice")


def test_enrollment_saves_and_shows_recovery_codes_once(gateway: Gateway) -> None:
    gateway.login(rd=SECURE)
    first_session = gateway.session_cookie()
    _, codes, response = _enroll(gateway, f"?rd={SECURE}&rm=GET")
    assert len(codes) == 10 and len(set(codes)) == 10
    assert gateway.run(gateway.runtime.second_factor.has_totp, "alice")
    assert f'href="{SECURE}"' in response.text  # "Continue" goes on to the target
    assert "download=" in response.text
    # A confirmed code is a second factor: the session is raised, under a new id.
    session = _session(gateway)
    assert session.level == AuthLevel.TWO_FACTOR
    assert gateway.session_cookie() != first_session
    # The codes are not shown anywhere afterwards.
    for path in ("/", "/2fa"):
        assert codes[0] not in gateway.client.get(path).text


@pytest.mark.parametrize("field", ["enrollment", "shown"])
def test_a_forged_enrollment_starts_over(gateway: Gateway, field: str) -> None:
    gateway.login()
    secret, fields = _enroll_form(gateway)
    wrong = str((int(pyotp.TOTP(secret).now()) + 1) % 1_000_000).zfill(6)
    response = gateway.client.post("/2fa/enroll", data={**fields, field: "forged", "code": wrong})
    assert response.status_code == 400
    assert "expired" in response.text
    fresh = _SECRET.search(response.text)
    assert fresh is not None and fresh.group(1).strip() != secret
    assert not gateway.run(gateway.runtime.second_factor.has_totp, "alice")


def test_an_enrollment_of_another_user_is_refused(gateway: Gateway) -> None:
    gateway.login("bob")
    secret, fields = _enroll_form(gateway)
    gateway.client.cookies.clear()
    gateway.login("alice")
    fields["csrf"] = gateway.csrf("/")
    response = gateway.client.post("/2fa/enroll", data={**fields, "code": pyotp.TOTP(secret).now()})
    assert response.status_code == 400
    assert not gateway.run(gateway.runtime.second_factor.has_totp, "alice")
    assert not gateway.run(gateway.runtime.second_factor.has_totp, "bob")


def test_second_factor_login_raises_the_level_and_changes_the_session(gateway: Gateway) -> None:
    gateway.login()
    totp, _, _ = _enroll(gateway)
    gateway.client.cookies.clear()

    response = gateway.login(rd=SECURE, rm="PUT")
    location = urlsplit(response.headers["location"])
    assert location.path == "/2fa"
    assert parse_qs(location.query) == {"rd": [SECURE], "rm": ["PUT"]}
    one_factor_id = gateway.session_cookie()
    assert _session(gateway).level == AuthLevel.ONE_FACTOR

    page = gateway.client.get(response.headers["location"])
    assert page.status_code == 200
    assert "secure.example.com" in page.text
    response = gateway.client.post(
        "/2fa",
        data={"csrf": csrf_field(page.text), "code": _next_code(totp), "rd": SECURE, "rm": "PUT"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == SECURE
    assert "Domain=example.com" in response.headers["set-cookie"]
    assert gateway.session_cookie() != one_factor_id
    assert _session(gateway).level == AuthLevel.TWO_FACTOR
    cookie_domain = gateway.runtime.sessions.cookie_domain_for("auth.example.com")
    assert cookie_domain is not None and one_factor_id is not None
    assert gateway.run(gateway.runtime.sessions.load, one_factor_id, cookie_domain) is None
    # Now the portal sends her straight on.
    again = gateway.client.get("/", params={"rd": SECURE})
    assert again.headers["location"] == SECURE


def test_a_wrong_code_is_refused(gateway: Gateway) -> None:
    gateway.login()
    totp, _, _ = _enroll(gateway)
    gateway.client.cookies.clear()
    gateway.login()
    wrong = str((int(_next_code(totp)) + 500_000) % 1_000_000).zfill(6)
    response = _verify(gateway, wrong)
    assert response.status_code == 401
    assert "did not work" in response.text
    assert 'aria-describedby="form-error code-hint"' in response.text
    assert _session(gateway).level == AuthLevel.ONE_FACTOR


def test_a_used_code_cannot_be_replayed(gateway: Gateway) -> None:
    gateway.login()
    totp, _, _ = _enroll(gateway)
    code = _next_code(totp)
    gateway.client.cookies.clear()
    gateway.login()
    assert _verify(gateway, code).status_code == 303
    gateway.client.cookies.clear()
    gateway.login()
    assert _verify(gateway, code).status_code == 401


def test_a_recovery_code_works_once(gateway: Gateway) -> None:
    gateway.login()
    _, codes, _ = _enroll(gateway)
    gateway.client.cookies.clear()
    gateway.login()
    response = _verify(gateway, codes[3])
    assert response.status_code == 303
    assert _session(gateway).level == AuthLevel.TWO_FACTOR
    gateway.client.cookies.clear()
    gateway.login()
    assert _verify(gateway, codes[3]).status_code == 401
    assert _verify(gateway, codes[4]).status_code == 303


def test_the_recovery_form_is_offered_without_javascript(gateway: Gateway) -> None:
    gateway.login()
    _enroll(gateway)
    page = gateway.client.get("/2fa").text
    assert "<details" in page and 'id="recovery-code"' in page
    assert 'for="recovery-code"' in page


def test_second_factor_attempts_are_regulated(gateway: Gateway) -> None:
    gateway.login()
    totp, _, _ = _enroll(gateway)
    gateway.client.cookies.clear()
    gateway.login()
    for _ in range(3):
        assert _verify(gateway, "000000").status_code == 401
    response = _verify(gateway, _next_code(totp))
    assert response.status_code == 429
    assert "Too many attempts" in response.text
    assert _session(gateway).level == AuthLevel.ONE_FACTOR


def test_second_factor_pages_need_a_session(gateway: Gateway) -> None:
    for path in ("/2fa", "/2fa/enroll"):
        response = gateway.client.get(path, params={"rd": SECURE})
        assert response.status_code == 303
        location = urlsplit(response.headers["location"])
        assert location.path == "/"
        assert parse_qs(location.query)["rd"] == [SECURE]
    csrf = gateway.csrf()
    response = gateway.client.post("/2fa", data={"csrf": csrf, "code": "123456"})
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_replacing_an_authenticator_needs_a_fresh_second_factor(gateway: Gateway) -> None:
    gateway.login()
    totp, _, _ = _enroll(gateway)
    gateway.client.cookies.clear()
    gateway.login()  # password only
    response = gateway.client.get("/2fa/enroll")
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/2fa"
    query = parse_qs(location.query)
    assert query["rd"] == ["https://auth.example.com/2fa/enroll"]
    assert query["reauth"] == ["1"]
    page = gateway.client.get(response.headers["location"])
    assert "Confirm it\u2019s you" in page.text
    # POSTing straight to the enrol form is refused the same way.
    csrf = csrf_field(page.text)
    post = gateway.client.post("/2fa/enroll", data={"csrf": csrf, "code": "123456"})
    assert post.status_code == 303
    assert urlsplit(post.headers["location"]).path == "/2fa"

    verified = gateway.client.post(
        "/2fa",
        data={"csrf": csrf, "code": _next_code(totp), "rd": "https://auth.example.com/2fa/enroll"},
    )
    assert verified.headers["location"] == "https://auth.example.com/2fa/enroll"
    page = gateway.client.get("/2fa/enroll")
    assert page.status_code == 200
    assert "stop working" in page.text


def test_a_stale_second_factor_is_not_fresh(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway.login()
    _enroll(gateway)  # raises the session to two factors, just now
    assert gateway.client.get("/2fa/enroll").status_code == 200
    monkeypatch.setattr("gateway.portal.second_factor.FRESH_SECOND_FACTOR", -1.0)
    assert gateway.client.get("/2fa/enroll").status_code == 303


def test_signed_in_page_shows_two_factor_state(gateway: Gateway) -> None:
    gateway.login()
    _enroll(gateway)
    page = gateway.client.get("/").text
    assert "Password and authenticator app" in page
    assert "Replace authenticator app" in page


def test_codes_and_keys_stay_out_of_the_logs(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    gateway.login()
    secret, fields = _enroll_form(gateway)
    totp = pyotp.TOTP(secret)
    enroll_code = totp.now()
    gateway.client.post("/2fa/enroll", data={**fields, "code": enroll_code})
    gateway.client.cookies.clear()
    gateway.login()
    login_code = _next_code(totp)
    _verify(gateway, "999999")
    _verify(gateway, login_code)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "gateway.portal")
    assert "second factor succeeded user=alice" in text
    for secret_value in (secret, enroll_code, login_code, "999999", fields["enrollment"]):
        assert secret_value not in text


def test_a_session_ended_during_the_code_step_goes_back_to_sign_in(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "Sign out everywhere" on another device, or a double submit, ends the one-factor
    # session between loading the form and raising it: start again, never a 500.
    gateway.login()
    totp, _, _ = _enroll(gateway)
    gateway.client.cookies.clear()
    gateway.login()

    async def ended(*_: object, **__: object) -> None:
        raise SessionExpired()

    monkeypatch.setattr(gateway.runtime.sessions, "raise_level", ended)
    response = _verify(gateway, _next_code(totp))
    assert response.status_code == 303
    assert urlsplit(response.headers["location"]).path == "/"
