"""Every form is protected against cross-site request forgery."""

from __future__ import annotations

import pytest

from gateway.portal.csrf import COOKIE_NAME
from tests.portal.support import PASSWORD, Gateway

FORBIDDEN = "This form has expired"


def _login_data(csrf: str | None) -> dict[str, str]:
    data = {"username": "alice", "password": PASSWORD}
    if csrf is not None:
        data["csrf"] = csrf
    return data


def test_the_token_cookie_is_host_only_and_strict(gateway: Gateway) -> None:
    set_cookie = gateway.client.get("/").headers["set-cookie"]
    assert set_cookie.startswith(f"{COOKIE_NAME}=")
    assert "Domain" not in set_cookie
    for attribute in ("Path=/", "Secure", "HttpOnly", "SameSite=Strict"):
        assert attribute in set_cookie


def test_the_token_is_reused_while_the_cookie_lives(gateway: Gateway) -> None:
    first = gateway.csrf()
    response = gateway.client.get("/")
    assert "set-cookie" not in response.headers
    assert gateway.csrf() == first


def test_the_field_is_not_the_cookie(gateway: Gateway) -> None:
    field = gateway.csrf()
    assert field != gateway.client.cookies.get(COOKIE_NAME)


@pytest.mark.parametrize("field", [None, "", "x" * 43, "not-the-token"])
def test_missing_or_wrong_token_is_refused(gateway: Gateway, field: str | None) -> None:
    gateway.csrf()
    response = gateway.client.post("/login", data=_login_data(field))
    assert response.status_code == 403
    assert FORBIDDEN in response.text
    assert gateway.session_cookie() is None


def test_missing_cookie_is_refused(gateway: Gateway) -> None:
    field = gateway.csrf()
    gateway.client.cookies.delete(COOKIE_NAME)
    response = gateway.client.post("/login", data=_login_data(field))
    assert response.status_code == 403


def test_a_planted_cookie_cannot_be_matched(gateway: Gateway) -> None:
    # A sibling subdomain can set gateway_csrf; without the hash key it cannot make the field.
    planted = "A" * 43
    gateway.client.cookies.set(COOKIE_NAME, planted, domain="auth.example.com")
    response = gateway.client.post("/login", data=_login_data(planted))
    assert response.status_code == 403


def test_a_token_from_another_browser_is_refused(gateway: Gateway) -> None:
    field = gateway.csrf()
    gateway.client.cookies.clear()
    gateway.csrf()  # a new cookie, a different token
    response = gateway.client.post("/login", data=_login_data(field))
    assert response.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.com"},
        {"Origin": "null"},
        {"Origin": "http://auth.example.com"},
        {"Origin": "https://app.example.com"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_origin_posts_are_refused(gateway: Gateway, headers: dict[str, str]) -> None:
    field = gateway.csrf()
    response = gateway.client.post("/login", data=_login_data(field), headers=headers)
    assert response.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "https://auth.example.com"},
        {"Origin": "https://AUTH.example.com", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
    ],
)
def test_same_origin_posts_pass(gateway: Gateway, headers: dict[str, str]) -> None:
    field = gateway.csrf()
    response = gateway.client.post("/login", data=_login_data(field), headers=headers)
    assert response.status_code == 303


@pytest.mark.parametrize("path", ["/logout", "/logout/everywhere", "/2fa", "/2fa/enroll"])
def test_every_form_checks_the_token(gateway: Gateway, path: str) -> None:
    gateway.login()
    cookie = gateway.session_cookie()
    response = gateway.client.post(path, data={"code": "123456"})
    assert response.status_code == 403
    assert gateway.session_cookie() == cookie  # nothing happened
    cookie_domain = gateway.runtime.sessions.cookie_domain_for("auth.example.com")
    assert cookie is not None and cookie_domain is not None
    assert gateway.run(gateway.runtime.sessions.load, cookie, cookie_domain) is not None


def test_a_body_that_is_not_a_form_is_refused(gateway: Gateway) -> None:
    field = gateway.csrf()
    response = gateway.client.post(
        "/login", json={"username": "alice", "password": PASSWORD, "csrf": field}
    )
    assert response.status_code == 400


def test_an_oversized_body_is_refused(gateway: Gateway) -> None:
    field = gateway.csrf()
    response = gateway.client.post("/login", data={**_login_data(field), "padding": "x" * 100_000})
    assert response.status_code == 413
    assert response.headers["x-frame-options"] == "DENY"


def test_an_oversized_body_without_length_is_refused(gateway: Gateway) -> None:
    field = gateway.csrf()
    body = f"csrf={field}&username=alice&password=x&padding={'x' * 100_000}".encode()

    def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    response = gateway.client.post(
        "/login",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert gateway.session_cookie() is None
