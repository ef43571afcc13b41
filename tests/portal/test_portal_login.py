"""Signing in with a password: redirects, errors, bans, the signed-in page."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.identity.model import DirectoryUnavailable
from gateway.session.model import AuthLevel, SessionStoreUnavailable
from tests.portal.support import PASSWORD, Gateway, csrf_field

WRONG = "Incorrect username or password."


def _location(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 303, response.text
    return str(response.headers["location"])


def _session(gateway: Gateway):  # type: ignore[no-untyped-def]
    runtime = gateway.runtime
    cookie_domain = runtime.sessions.cookie_domain_for("auth.example.com")
    assert cookie_domain is not None
    value = gateway.session_cookie()
    if value is None:
        return None
    return gateway.run(runtime.sessions.load, value, cookie_domain)


def test_login_page_renders_a_form(gateway: Gateway) -> None:
    response = gateway.client.get("/?rd=https%3A%2F%2Fapp.example.com%2Fdocs&rm=GET")
    assert response.status_code == 200
    html = response.text
    assert "<h1>Sign in</h1>" in html
    assert "app.example.com" in html
    assert 'name="rd" value="https://app.example.com/docs"' in html
    assert 'action="/login"' in html
    assert "gateway_csrf=" in response.headers["set-cookie"]


def test_login_redirects_to_rd_with_a_parent_domain_cookie(gateway: Gateway) -> None:
    response = gateway.login(rd="https://app.example.com/docs?page=2")
    assert _location(response) == "https://app.example.com/docs?page=2"
    set_cookie = response.headers["set-cookie"]
    assert set_cookie.startswith("gateway_session=")
    assert "Domain=example.com" in set_cookie
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie
    assert "Max-Age" not in set_cookie  # a browser-session cookie without "remember me"
    session = _session(gateway)
    assert session is not None
    assert session.username == "alice"
    assert session.level == AuthLevel.ONE_FACTOR
    assert session.groups == ("admins", "dev")
    assert not session.remember_me


def test_remember_me_makes_a_persistent_cookie(gateway: Gateway) -> None:
    response = gateway.login(rd="https://app.example.com/", remember=True)
    assert "Max-Age=" in response.headers["set-cookie"]
    session = _session(gateway)
    assert session is not None and session.remember_me


def test_login_without_rd_lands_on_the_default_page(gateway: Gateway) -> None:
    assert _location(gateway.login()) == "https://home.example.com/"


def test_login_rotates_an_existing_session(gateway: Gateway) -> None:
    gateway.login()
    first = gateway.session_cookie()
    gateway.login()
    second = gateway.session_cookie()
    assert first and second and first != second
    cookie_domain = gateway.runtime.sessions.cookie_domain_for("auth.example.com")
    assert cookie_domain is not None
    assert gateway.run(gateway.runtime.sessions.load, first, cookie_domain) is None


@pytest.mark.parametrize(
    "rd",
    [
        "//evil.com",
        "https://evil.com/",
        "https://example.com.evil.com/",
        "https://evil.com\\@example.com",
        "https://evil.com%5c@example.com",
        "https:evil.com",
        "javascript:alert(1)",
        "https://user@evil.com",
        "https://example.com@evil.com",
        "https://app.example.com/\t",
        "https://evil.com/.example.com",
        "https://ex\u0430mple.com/",
        "http://app.example.com/",
        "https://app.example.org/",  # another cookie domain: our cookie would not go there
        "/relative",
    ],
)
def test_open_redirects_land_on_the_default_page(gateway: Gateway, rd: str) -> None:
    page = gateway.client.get("/", params={"rd": rd})
    assert 'name="rd"' not in page.text  # an unsafe target is not carried along
    assert _location(gateway.login(rd=rd)) == "https://home.example.com/"


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong password"), ("mallory", PASSWORD), ("carol", PASSWORD), ("ALICE ", "x")],
)
def test_wrong_credentials_get_one_message(gateway: Gateway, username: str, password: str) -> None:
    response = gateway.login(username, password, rd="https://app.example.com/")
    assert response.status_code == 401
    assert WRONG in response.text
    assert "set-cookie" not in response.headers or "gateway_session" not in response.headers.get(
        "set-cookie", ""
    )
    assert gateway.session_cookie() is None
    # The form comes back filled in (not the password), pointing at the error.
    assert 'value="' + username.strip() + '"' in response.text
    assert PASSWORD not in response.text
    assert 'aria-describedby="form-error"' in response.text
    assert 'id="form-error" role="alert"' in response.text
    assert 'name="rd" value="https://app.example.com/"' in response.text


def test_unknown_user_and_wrong_password_answers_are_identical(gateway: Gateway) -> None:
    def body(username: str) -> str:
        response = gateway.login(username, "nope")
        return response.text.replace(csrf_field(response.text), "").replace(username, "NAME")

    assert body("alice") == body("nobody")


def test_empty_fields_are_asked_for(gateway: Gateway) -> None:
    response = gateway.login("", "")
    assert response.status_code == 400
    assert "Enter your username and password." in response.text


def test_a_ban_answers_like_a_wrong_password(gateway: Gateway) -> None:
    for _ in range(3):
        assert gateway.login("alice", "wrong").status_code == 401
    # Banned now: even the right password gets the same answer, and no session.
    response = gateway.login("alice", PASSWORD)
    assert response.status_code == 401
    assert WRONG in response.text
    assert gateway.session_cookie() is None
    assert gateway.run(gateway.runtime.regulator.is_banned, "alice", "198.51.100.7")


def test_failures_below_the_limit_do_not_block(gateway: Gateway) -> None:
    for _ in range(2):
        gateway.login("alice", "wrong")
    assert gateway.login().status_code == 303
    assert not gateway.run(gateway.runtime.regulator.is_banned, "alice", None)


def test_directory_down_is_a_friendly_503(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(username: str, password: str) -> None:
        raise DirectoryUnavailable("ldap://10.0.0.1:389 timed out /etc/secret")

    monkeypatch.setattr(gateway.runtime.users, "authenticate", down)
    response = gateway.login()
    assert response.status_code == 503
    assert "The sign-in service is temporarily unavailable. Try again in a minute." in response.text
    assert "10.0.0.1" not in response.text and "/etc/secret" not in response.text


def test_store_down_is_a_friendly_503(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway.login()

    async def down(*args: object, **kwargs: object) -> None:
        raise SessionStoreUnavailable("redis://secret-host:6379 refused")

    monkeypatch.setattr(gateway.runtime.sessions, "load", down)
    response = gateway.client.get("/?rd=https%3A%2F%2Fapp.example.com%2F")
    assert response.status_code == 503
    assert "temporarily unavailable" in response.text
    assert "secret-host" not in response.text


def test_unexpected_errors_show_no_traceback(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(username: str, password: str) -> None:
        raise RuntimeError("boom at /srv/gateway/secret.py line 3")

    monkeypatch.setattr(gateway.runtime.users, "authenticate", broken)
    response = gateway.login()
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    for leak in ("Traceback", "boom", "/srv", "RuntimeError", "password"):
        assert leak not in response.text


def test_signed_in_page(gateway: Gateway) -> None:
    gateway.login()
    response = gateway.client.get("/")
    assert response.status_code == 200
    html = response.text
    assert "You\u2019re signed in" in html
    assert "Alice Liddell" in html
    assert 'id="account-username">alice<' in html
    assert "alice@example.com" in html
    assert "<li>admins</li>" in html and "<li>dev</li>" in html
    assert 'id="account-level">Password<' in html
    assert 'id="logout"' in html and 'id="logout-everywhere"' in html
    assert 'href="/2fa/enroll"' in html and "Set up authenticator app" in html


def test_directory_values_are_escaped(gateway: Gateway) -> None:
    gateway.login("bob")
    html = gateway.client.get("/").text
    assert "Bob &lt;b&gt;Builder&lt;/b&gt;" in html
    assert "<b>Builder</b>" not in html


def test_signed_in_visitors_go_straight_on(gateway: Gateway) -> None:
    gateway.login()
    response = gateway.client.get("/", params={"rd": "https://app.example.com/x", "rm": "POST"})
    assert _location(response) == "https://app.example.com/x"


def test_signed_in_visitors_are_told_about_denied_targets(gateway: Gateway) -> None:
    gateway.login("bob")
    response = gateway.client.get("/", params={"rd": "https://admin.example.com/"})
    assert response.status_code == 200
    assert "does not have access to admin.example.com" in response.text


def test_group_rules_use_the_users_groups(gateway: Gateway) -> None:
    response = gateway.login("alice", rd="https://admin.example.com/")
    assert _location(response) == "https://admin.example.com/"


def test_two_factor_targets_ask_for_a_second_factor(gateway: Gateway) -> None:
    response = gateway.login(rd="https://secure.example.com/vault", rm="POST")
    location = urlsplit(_location(response))
    # alice has no authenticator yet, so she is asked to set one up first.
    assert location.path == "/2fa/enroll"
    assert parse_qs(location.query) == {"rd": ["https://secure.example.com/vault"], "rm": ["POST"]}
    session = _session(gateway)
    assert session is not None and session.level == AuthLevel.ONE_FACTOR


def test_logout_ends_the_session_server_side(gateway: Gateway) -> None:
    gateway.login()
    cookie = gateway.session_cookie()
    assert cookie is not None
    csrf = gateway.csrf("/")
    response = gateway.client.post("/logout", data={"csrf": csrf})
    assert _location(response) == "/?m=signed-out"
    assert "Max-Age=0" in response.headers["set-cookie"]
    cookie_domain = gateway.runtime.sessions.cookie_domain_for("auth.example.com")
    assert cookie_domain is not None
    assert gateway.run(gateway.runtime.sessions.load, cookie, cookie_domain) is None
    page = gateway.client.get("/?m=signed-out")
    assert "You have been signed out." in page.text
    assert "<h1>Sign in</h1>" in page.text


def test_logout_may_continue_to_a_safe_target(gateway: Gateway) -> None:
    gateway.login()
    csrf = gateway.csrf("/")
    response = gateway.client.post(
        "/logout", data={"csrf": csrf, "rd": "https://www.example.com/bye"}
    )
    assert _location(response) == "https://www.example.com/bye"
    response = gateway.client.post("/logout", data={"csrf": csrf, "rd": "https://evil.com/"})
    assert _location(response) == "/?m=signed-out"


def test_logout_everywhere_ends_every_session(gateway: Gateway) -> None:
    # A session in "another browser".
    gateway.login()
    other = gateway.session_cookie()
    gateway.client.cookies.clear()
    gateway.login()
    csrf = gateway.csrf("/")
    response = gateway.client.post("/logout/everywhere", data={"csrf": csrf})
    assert _location(response) == "/?m=signed-out-everywhere"
    cookie_domain = gateway.runtime.sessions.cookie_domain_for("auth.example.com")
    assert other is not None and cookie_domain is not None
    assert gateway.run(gateway.runtime.sessions.load, other, cookie_domain) is None
    assert gateway.run(gateway.runtime.sessions.list_user, "alice") == []
    assert "signed out on every device" in gateway.client.get("/?m=signed-out-everywhere").text


def test_unknown_notice_keys_are_ignored(gateway: Gateway) -> None:
    response = gateway.client.get("/", params={"m": "<script>alert(1)</script>"})
    assert "alert(1)" not in response.text
    assert 'role="status"' not in response.text


def test_hosts_outside_every_cookie_domain_get_no_form(gateway: Gateway) -> None:
    response = gateway.client.get("https://auth.evil.com/")
    assert response.status_code == 404
    assert "not set up for signing in" in response.text


def test_denied_targets_after_sign_in_explain_themselves(gateway: Gateway) -> None:
    response = gateway.login("bob", rd="https://admin.example.com/")
    location = _location(response)
    assert urlsplit(location).path == "/"
    assert gateway.session_cookie() is not None
    page = gateway.client.get(location)
    assert "does not have access to admin.example.com" in page.text


def test_sign_in_attempts_are_counted(gateway: Gateway) -> None:
    gateway.login("alice", "wrong")
    gateway.login()
    logins = gateway.runtime.metrics.logins
    assert logins.get("failure") == 1
    assert logins.get("success") == 1


def test_passwords_and_cookies_stay_out_of_the_logs(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    gateway.login("alice", "hunter2-wrong")
    gateway.login("alice\nFAKE LOG LINE", PASSWORD)
    gateway.login()
    session = gateway.session_cookie()
    assert session is not None
    portal = [record for record in caplog.records if record.name == "gateway.portal"]
    assert portal, "the portal logs sign-ins"
    text = "\n".join(record.getMessage() for record in portal)
    assert "user=alice ip=198.51.100.7" in text
    for secret in ("hunter2-wrong", PASSWORD, session, "\nFAKE"):
        assert secret not in text
