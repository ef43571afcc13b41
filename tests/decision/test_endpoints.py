"""The answers Caddy and nginx get: status, headers and Location, on both endpoints."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config.settings import load_settings
from gateway.identity.model import User
from gateway.identity.passwords import hash_password
from gateway.identity.users_file import UsersFileBackend
from gateway.session.model import AuthLevel
from tests.decision.support import (
    BROWSER,
    FORWARD,
    NGINX,
    PASSWORD,
    REMOTE,
    USERS,
    Gateway,
    ask,
    basic,
    remote,
    write_config,
)
from tests.support.config import users_yml

# --- allowed --------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", [FORWARD, NGINX])
def test_bypass_for_anonymous_answers_200_with_all_four_headers_empty(
    gateway: Gateway, endpoint: str
) -> None:
    response = ask(gateway, "https://public.example.com/anything", endpoint=endpoint)
    assert response.status_code == 200
    assert remote(response) == dict.fromkeys(REMOTE, "")


@pytest.mark.parametrize("endpoint", [FORWARD, NGINX])
def test_signed_in_user_gets_identity_headers(gateway: Gateway, endpoint: str) -> None:
    session = gateway.login("john")
    response = ask(
        gateway, "https://app.example.com/", cookie=gateway.cookie(session), endpoint=endpoint
    )
    assert response.status_code == 200
    assert remote(response) == {
        "remote-user": "john",
        "remote-groups": "admins,dev",
        "remote-email": "john@example.com",
        "remote-name": "John Doe",
    }


def test_non_ascii_display_name_is_sent_as_utf8(gateway: Gateway) -> None:
    # httpx's test transport cannot carry non-ASCII header bytes, so talk ASGI directly.
    session = gateway.login("harry")
    messages: list[dict[str, object]] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": FORWARD,
        "raw_path": FORWARD.encode(),
        "query_string": b"",
        "headers": [
            (b"x-forwarded-proto", b"https"),
            (b"x-forwarded-host", b"app.example.com"),
            (b"x-forwarded-uri", b"/"),
            (b"x-forwarded-method", b"GET"),
            (b"cookie", gateway.cookie(session).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 9091),
        "scheme": "http",
        "http_version": "1.1",
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        messages.append(message)

    async def call() -> None:
        await gateway.app(scope, receive, send)  # type: ignore[arg-type]

    gateway.client.portal.call(call)  # type: ignore[union-attr]
    start = messages[0]
    assert start["status"] == 200
    headers = dict(start["headers"])  # type: ignore[call-overload]
    assert headers[b"remote-name"] == "Harry Pötter".encode()
    assert headers[b"remote-user"] == b"harry"


def test_bypass_with_a_session_still_reports_the_user(gateway: Gateway) -> None:
    session = gateway.login("john")
    response = ask(gateway, "https://public.example.com/", cookie=gateway.cookie(session))
    assert response.status_code == 200
    assert response.headers["remote-user"] == "john"


def test_two_factor_session_passes_two_factor_rule(gateway: Gateway) -> None:
    session = gateway.login("john", AuthLevel.TWO_FACTOR)
    response = ask(gateway, "https://admin.example.com/", cookie=gateway.cookie(session))
    assert response.status_code == 200
    assert response.headers["remote-groups"] == "admins,dev"


def test_network_condition_uses_forwarded_client_address(gateway: Gateway) -> None:
    assert ask(gateway, "https://office.example.com/", client_ip="192.0.2.44").status_code == 200
    assert ask(gateway, "https://office.example.com/", client_ip="203.0.113.1").status_code == 302


def test_head_request_gets_same_answer_without_body(gateway: Gateway) -> None:
    response = ask(gateway, "https://public.example.com/", http_method="HEAD")
    assert response.status_code == 200
    assert response.content == b""


# --- not signed in (enough) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "status"),
    [("GET", 302), ("HEAD", 302), ("OPTIONS", 302), ("POST", 303), ("DELETE", 303)],
)
def test_anonymous_browser_is_redirected_to_the_portal(
    gateway: Gateway, method: str, status: int
) -> None:
    response = ask(gateway, "https://app.example.com/path/x?y=1&z=%20", method=method)
    assert response.status_code == status
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "auth.example.com", "/")
    query = parse_qs(location.query)
    assert query == {"rd": ["https://app.example.com/path/x?y=1&z=%20"], "rm": [method]}
    assert "remote-user" not in response.headers
    # Caddy relays this answer to the browser: it must never be cached.
    assert response.headers["cache-control"] == "no-store"


def test_each_cookie_domain_has_its_own_portal(gateway: Gateway) -> None:
    response = ask(gateway, "https://wiki.example.org/")
    assert response.headers["location"].startswith("https://auth.example.org/?rd=")


@pytest.mark.parametrize(
    "headers",
    [{"X-Requested-With": "XMLHttpRequest"}, {"Accept": "application/json"}, {"Accept": "*/*"}],
)
def test_api_style_clients_get_401_not_a_redirect(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    accept = headers.pop("Accept", BROWSER)
    response = ask(gateway, "https://app.example.com/", accept=accept, extra=headers)
    assert response.status_code == 401
    assert "location" not in response.headers


def test_one_factor_session_is_sent_to_portal_for_two_factor_rule(gateway: Gateway) -> None:
    session = gateway.login("john")
    response = ask(gateway, "https://secure.example.com/", cookie=gateway.cookie(session))
    assert response.status_code == 302
    assert response.headers["location"].startswith("https://auth.example.com/?rd=")


def test_unknown_or_forged_cookie_is_anonymous(gateway: Gateway) -> None:
    forged = "gateway_session=" + "A" * 43
    assert ask(gateway, "https://app.example.com/", cookie=forged).status_code == 302
    assert ask(gateway, "https://app.example.com/", cookie="gateway_session=").status_code == 302


def test_cookie_of_one_domain_does_not_work_on_another(gateway: Gateway) -> None:
    session = gateway.login("john", domain="example.com")
    response = ask(gateway, "https://wiki.example.org/", cookie=gateway.cookie(session))
    assert response.status_code == 302


def test_logged_out_session_no_longer_passes(gateway: Gateway) -> None:
    session = gateway.login("john")
    assert (
        ask(gateway, "https://app.example.com/", cookie=gateway.cookie(session)).status_code == 200
    )
    runtime = gateway.app.runtime
    assert runtime is not None

    async def logout() -> None:
        await runtime.sessions.logout(session)

    gateway.client.portal.call(logout)  # type: ignore[union-attr]
    assert (
        ask(gateway, "https://app.example.com/", cookie=gateway.cookie(session)).status_code == 302
    )


# --- denied ---------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", [FORWARD, NGINX])
def test_deny_rule_without_subject_is_403_even_for_anonymous(
    gateway: Gateway, endpoint: str
) -> None:
    assert ask(gateway, "https://blocked.example.com/", endpoint=endpoint).status_code == 403


def test_anonymous_on_subject_rule_is_sent_to_log_in_first(gateway: Gateway) -> None:
    # admin.example.com: group:admins → two_factor, everyone else → deny. Anonymous might
    # be an admin, so it is sent to log in rather than refused.
    assert ask(gateway, "https://admin.example.com/").status_code == 302


def test_signed_in_user_outside_the_subject_is_forbidden(gateway: Gateway) -> None:
    session = gateway.login("harry", AuthLevel.TWO_FACTOR)
    response = ask(gateway, "https://admin.example.com/", cookie=gateway.cookie(session))
    assert response.status_code == 403
    assert "remote-user" not in response.headers


def test_default_policy_deny_for_unmatched_host(gateway: Gateway) -> None:
    session = gateway.login("john", AuthLevel.TWO_FACTOR)
    response = ask(gateway, "https://example.com/", cookie=gateway.cookie(session))
    assert response.status_code == 403


# --- malformed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Host": ""},
        {"X-Forwarded-Method": "G3T"},
        {"X-Forwarded-Proto": "http"},
        {"X-Forwarded-Host": "app.evil.com"},
        {"X-Forwarded-Host": "example.com.evil.com"},
        {"X-Forwarded-Uri": "no-slash"},
        {"X-Forwarded-For": "not-an-ip"},
    ],
)
def test_malformed_forward_auth_requests_are_400(gateway: Gateway, headers: dict[str, str]) -> None:
    response = ask(gateway, "https://app.example.com/", extra=headers)
    assert response.status_code == 400
    assert "remote-user" not in response.headers
    assert "Traceback" not in response.text
    # The reason may quote the client's input: never let a browser sniff it as HTML.
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "uri",
    [
        "/public/..;/admin",
        "/public/%252e%252e/admin",
        "/public\\..\\admin",
        "/admin%2F..%2Fpublic",
        "/admin/%2e%2e/public",
        "/admin/../public",
    ],
)
def test_ambiguous_paths_are_400_on_a_bypassed_host(gateway: Gateway, uri: str) -> None:
    # public.example.com is bypass: an ambiguous path is refused before any rule sees it.
    response = ask(gateway, "https://public.example.com/", extra={"X-Forwarded-Uri": uri})
    assert response.status_code == 400
    assert response.text.startswith("malformed target URL: ambiguous path")
    assert "remote-user" not in response.headers
    nginx = ask(gateway, f"https://public.example.com{uri}", endpoint=NGINX)
    assert nginx.status_code == 403


@pytest.mark.parametrize(
    "method", ["get", "GET ", "", "Post"], ids=["lower", "padded", "empty", "mixed"]
)
def test_the_method_must_be_exact_on_both_endpoints(gateway: Gateway, method: str) -> None:
    response = ask(gateway, "https://public.example.com/", method=method)
    assert response.status_code == 400
    nginx = ask(gateway, "https://public.example.com/", method=method, endpoint=NGINX)
    assert nginx.status_code == 403


def test_a_missing_method_is_not_taken_for_get(gateway: Gateway) -> None:
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "public.example.com",
        "X-Forwarded-Uri": "/",
    }
    response = gateway.client.get(FORWARD, headers=headers)
    assert response.status_code == 400
    assert response.text == "missing X-Forwarded-Method header"


@pytest.mark.parametrize(
    "name", ["X-Forwarded-Host", "X-Forwarded-Uri", "X-Forwarded-Proto", "X-Forwarded-Method"]
)
def test_a_duplicated_forwarded_header_is_400(gateway: Gateway, name: str) -> None:
    values = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "public.example.com",
        "X-Forwarded-Uri": "/",
        "X-Forwarded-Method": "GET",
    }
    pairs = [*values.items(), (name, values[name])]
    response = gateway.client.get(FORWARD, headers=pairs)
    assert response.status_code == 400
    assert response.text == f"the {name.lower()} header appears more than once"


def test_several_cookie_headers_are_joined(gateway: Gateway) -> None:
    session = gateway.login("john")
    pairs = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "app.example.com"),
        ("X-Forwarded-Uri", "/"),
        ("X-Forwarded-Method", "GET"),
        ("Cookie", "theme=dark"),
        ("Cookie", gateway.cookie(session)),
    ]
    response = gateway.client.get(FORWARD, headers=pairs)
    assert response.status_code == 200
    assert response.headers["remote-user"] == "john"


@pytest.mark.parametrize("url", ["http://app.example.com/", "https://app.evil.com/", "not a url"])
def test_auth_request_never_answers_outside_2xx_401_403(gateway: Gateway, url: str) -> None:
    response = ask(gateway, url, endpoint=NGINX)
    assert response.status_code == 403


def test_auth_request_turns_redirect_into_401_with_location(gateway: Gateway) -> None:
    response = ask(gateway, "https://app.example.com/x", endpoint=NGINX, method="POST")
    assert response.status_code == 401
    assert response.headers["location"] == (
        "https://auth.example.com/?rd=https%3A%2F%2Fapp.example.com%2Fx&rm=POST"
    )


def test_other_methods_on_the_endpoint_are_405(gateway: Gateway) -> None:
    for endpoint in (FORWARD, NGINX):
        response = gateway.client.post(endpoint, headers={"X-Forwarded-Host": "public.example.com"})
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"


def test_untrusted_peer_cannot_set_target_or_address(untrusting_gateway: Gateway) -> None:
    # The only "proxy" here is not trusted: its X-Forwarded-* must not be believed, even
    # for a host that would be bypassed.
    response = ask(untrusting_gateway, "https://public.example.com/")
    assert response.status_code == 400
    assert "remote-user" not in response.headers


# --- Authorization: Basic -------------------------------------------------------------


def test_basic_credentials_authenticate_one_factor(gateway: Gateway) -> None:
    response = ask(gateway, "https://app.example.com/", extra=basic("john", PASSWORD))
    assert response.status_code == 200
    assert response.headers["remote-user"] == "john"
    # One factor only: a two_factor rule still needs the portal.
    assert (
        ask(gateway, "https://secure.example.com/", extra=basic("john", PASSWORD)).status_code
        == 302
    )


@pytest.mark.parametrize(
    "header",
    [
        basic("john", "wrong")["Authorization"],
        basic("nobody", PASSWORD)["Authorization"],
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
    ],
)
def test_bad_basic_credentials_get_401_with_challenge(gateway: Gateway, header: str) -> None:
    response = ask(gateway, "https://app.example.com/", extra={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="gateway"'


def test_basic_credentials_are_regulated(gateway: Gateway) -> None:
    for _ in range(3):
        assert (
            ask(gateway, "https://app.example.com/", extra=basic("harry", "wrong")).status_code
            == 401
        )
    # Banned now: the right password gets the same answer as a wrong one.
    assert (
        ask(gateway, "https://app.example.com/", extra=basic("harry", PASSWORD)).status_code == 401
    )


# Apps behind a bypass rule (WebDAV, container registries) do their own Basic auth: those
# credentials are theirs, so the gateway neither checks them nor counts them toward a ban.


@pytest.mark.parametrize("endpoint", [FORWARD, NGINX])
def test_basic_credentials_on_a_bypass_host_are_left_to_the_app(
    gateway: Gateway, endpoint: str
) -> None:
    for _ in range(5):
        response = ask(
            gateway,
            "https://public.example.com/dav/",
            endpoint=endpoint,
            extra=basic("john", "the app's password, not ours"),
        )
        assert response.status_code == 200
        assert remote(response) == dict.fromkeys(REMOTE, "")
    # Nothing was counted: neither john nor the client address is banned.
    response = ask(gateway, "https://app.example.com/", extra=basic("john", PASSWORD))
    assert response.status_code == 200
    assert response.headers["remote-user"] == "john"


def test_basic_on_a_bypass_host_keeps_the_session_identity(gateway: Gateway) -> None:
    session = gateway.login("john")
    response = ask(
        gateway,
        "https://public.example.com/",
        cookie=gateway.cookie(session),
        extra=basic("harry", "wrong"),
    )
    assert response.status_code == 200
    assert response.headers["remote-user"] == "john"


def test_basic_is_checked_where_the_bypass_rule_does_not_apply(gateway: Gateway) -> None:
    # office.example.com is bypassed from the office network only; elsewhere one_factor.
    office = ask(
        gateway, "https://office.example.com/", client_ip="192.0.2.7", extra=basic("harry", "x")
    )
    assert office.status_code == 200
    outside = ask(gateway, "https://office.example.com/", extra=basic("harry", "x"))
    assert outside.status_code == 401


BYPASS_FOR_A_GROUP = """\
access_control:
  default_policy: deny
  rules:
    - domain: dav.example.com
      resources: ["^/(?P<User>[a-z]+)/"]
      policy: bypass
    - domain: "*.example.com"
      policy: one_factor
"""


def test_basic_is_checked_where_a_bypass_rule_depends_on_the_user(tmp_path: Path) -> None:
    # For an anonymous request the bypass rule matches only potentially: who is asking decides,
    # so the credentials are the gateway's to check.
    config = write_config(tmp_path)
    (tmp_path / "policy.yml").write_text(BYPASS_FOR_A_GROUP)
    app = create_app(load_settings(config))
    with TestClient(app, base_url="http://gateway.internal", client=("127.0.0.1", 41000)) as client:
        gateway = Gateway(app, client)
        url = "https://dav.example.com/john/"
        assert ask(gateway, url, extra=basic("john", "wrong")).status_code == 401
        response = ask(gateway, url, extra=basic("john", PASSWORD))
        assert response.status_code == 200
        assert response.headers["remote-user"] == "john"


# A remembered Basic success must not outlive a ban, a disabled account or a new password.


def users_backend(gateway: Gateway) -> UsersFileBackend:
    runtime = gateway.app.runtime
    assert runtime is not None
    assert isinstance(runtime.users, UsersFileBackend)
    return runtime.users


def rewrite_users(gateway: Gateway, *, disabled: bool = False, password: str = PASSWORD) -> None:
    """Replace the users file (a new file, as an editor or deployment does) and reload it."""
    backend = users_backend(gateway)
    hashed = hash_password(password)
    replacement = backend.path.with_name("users.yml.new")
    replacement.write_text(
        users_yml(hashed, john=dataclasses.replace(USERS["john"], disabled=disabled))
    )
    replacement.replace(backend.path)
    before = backend.generation
    # A change is applied once it has settled: unchanged over consecutive polls.
    for _ in range(3):
        assert gateway.client.portal.call(backend.reload)  # type: ignore[attr-defined]
        if backend.generation != before:
            return
    raise AssertionError("the users file was not reloaded")


def john(gateway: Gateway, password: str = PASSWORD) -> int:
    """The status of john's Basic request for a one_factor host."""
    return ask(gateway, "https://app.example.com/", extra=basic("john", password)).status_code


def test_a_ban_ends_a_cached_basic_success(gateway: Gateway) -> None:
    assert john(gateway) == 200
    for _ in range(3):  # someone else guesses john's password, from another address
        wrong = ask(
            gateway, "https://app.example.com/", client_ip="198.51.100.9", extra=basic("john", "x")
        )
        assert wrong.status_code == 401
    assert john(gateway) == 401


def test_disabling_the_user_ends_a_cached_basic_success(gateway: Gateway) -> None:
    assert john(gateway) == 200
    rewrite_users(gateway, disabled=True)
    assert john(gateway) == 401


def test_a_new_password_ends_a_cached_basic_success(gateway: Gateway) -> None:
    assert john(gateway) == 200
    rewrite_users(gateway, password="a brand new password")
    assert john(gateway) == 401
    assert john(gateway, "a brand new password") == 200


def test_an_unchanged_users_file_keeps_the_cache(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cache still saves the password hash on repeated requests when nothing changed.
    assert john(gateway) == 200
    backend = users_backend(gateway)
    assert gateway.client.portal.call(backend.reload)  # type: ignore[attr-defined]

    async def no_hashing(username: str, password: str) -> None:
        raise AssertionError("the password was checked again")

    monkeypatch.setattr(backend, "authenticate", no_hashing)
    assert john(gateway) == 200


class _NoGeneration:
    """A backend that cannot tell whether its users changed (as LDAP cannot), counting checks."""

    def __init__(self, backend: UsersFileBackend) -> None:
        self._backend = backend
        self.checks = 0

    async def authenticate(self, username: str, password: str) -> User | None:
        self.checks += 1
        return await self._backend.authenticate(username, password)

    async def get_user(self, username: str) -> User | None:
        return await self._backend.get_user(username)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def test_without_a_generation_basic_is_remembered_no_longer_than_the_refresh_interval(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The settings here give a refresh interval of 0 (users file settings): every request is
    # checked against the backend, since nothing else could say that the password changed.
    runtime = gateway.app.runtime
    assert runtime is not None
    from gateway.decision.endpoint import AuthzEndpoint

    backend = _NoGeneration(users_backend(gateway))
    endpoint = AuthzEndpoint(dataclasses.replace(runtime, users=backend), "forward-auth")
    monkeypatch.setitem(gateway.app._fast, FORWARD, endpoint)  # type: ignore[attr-defined]
    for _ in range(3):
        response = ask(gateway, "https://app.example.com/", extra=basic("john", PASSWORD))
        assert response.status_code == 200
    assert backend.checks == 3


def test_debug_log_explains_each_decision(
    gateway: Gateway, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Operators ask "why was I sent to log in?": at debug level each answer names its rule.
    runtime = gateway.app.runtime
    assert runtime is not None
    from gateway.decision.endpoint import AuthzEndpoint

    endpoint = AuthzEndpoint(runtime, "forward-auth")
    monkeypatch.setattr(endpoint, "_debug", True)
    monkeypatch.setitem(gateway.app._fast, FORWARD, endpoint)  # type: ignore[attr-defined]
    with caplog.at_level("DEBUG", logger="gateway.decision"):
        ask(gateway, "https://admin.example.com/panel?x=1", client_ip="203.0.113.7")
        ask(gateway, "https://blocked.example.com/")
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.decision"]
    assert any(
        line.startswith("forward-auth: 302 GET admin.example.com/panel?x=1 user=- ip=203.0.113.7")
        and "rule #4 at" in line
        and line.endswith("(potential match)")
        for line in lines
    ), lines
    assert any(line.startswith("forward-auth: 403 ") and "rule #3 at" in line for line in lines)
