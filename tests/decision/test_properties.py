"""Property tests of the decision endpoints: whatever bytes a proxy relays, the answer is one
of the documented statuses, a 200 only where the policy allows, a redirect only to a portal,
and nothing is logged as a crash.

Requests go straight to the ASGI app, so header values the HTTP clients would refuse or
clean (dot segments, lower-case methods, duplicates, raw bytes) reach the gateway as a proxy
could relay them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config.settings import load_settings
from gateway.policy import BadTarget, Level, Subject, Target
from gateway.session.model import AuthLevel
from tests.decision.support import Gateway, write_config

FORWARD = "/api/authz/forward-auth"
NGINX = "/api/authz/auth-request"
PORTALS = ("https://auth.example.com/?", "https://auth.example.org/?")
HOSTS = [
    "public.example.com",
    "office.example.com",
    "blocked.example.com",
    "admin.example.com",
    "secure.example.com",
    "app.example.com",
    "App.Example.COM:8443",
    "app.example.org",
    "example.com",
    "api.example.com",
    "api.evil.com",
    "evil.com",
    "app.example.com.",
    "app.example.com ",
    "[::1]",
    "127.0.0.1",
]
SEGMENTS = [
    "public", "admin", "a", ".", "..", "%2e", "%2E%2e", "..;", ".;x", "%2f", "%2F", "%5c",
    "\\", "%25", "%252e", "%00", "%0a", ";", "%61dmin", "caf%C3%A9", "é", "", "x?y=1",
    "#frag", "%", "%zz", "~", "a b",
]  # fmt: skip
DUPLICATES = {
    FORWARD: {
        "target": b"x-forwarded-uri",
        "method": b"x-forwarded-method",
        "host": b"x-forwarded-host",
    },
    NGINX: {"target": b"x-original-url", "method": b"x-original-method"},
}
METHODS = ["GET", "HEAD", "POST", "DELETE", "OPTIONS", "M-SEARCH", "get", "GET ", "", "G3T"]


@dataclass
class Fixture:
    gateway: Gateway
    cookie: str
    """The session cookie of john (admins, dev), signed in with one factor."""


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    directory: Path = tmp_path_factory.mktemp("properties")
    app = create_app(load_settings(write_config(directory)))
    with TestClient(app, base_url="http://gateway.internal", client=("127.0.0.1", 41000)) as client:
        gateway = Gateway(app, client)
        session = gateway.login("john", AuthLevel.ONE_FACTOR)
        yield Fixture(gateway, f"gateway_session={session.id}")


def call(
    gateway: Gateway, path: str, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[bytes, bytes]]:
    messages: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 9091),
        "scheme": "http",
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    async def run() -> None:
        await gateway.app(scope, receive, send)  # type: ignore[arg-type]

    gateway.client.portal.call(run)  # type: ignore[union-attr]
    start = messages[0]
    return start["status"], dict(start["headers"])


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    segments = draw(st.lists(st.sampled_from(SEGMENTS) | st.text(max_size=6), max_size=6))
    uri = "/" + "/".join(segments)
    if draw(st.booleans()):
        uri += "?" + draw(st.sampled_from(["a=1", "rd=https://evil.com", "x=%2e%2e/", ""]))
    return {
        "host": draw(st.sampled_from(HOSTS) | st.text(max_size=20)),
        "uri": uri if draw(st.integers(0, 20)) else draw(st.sampled_from(["//x.com/", "x", ""])),
        "method": draw(st.sampled_from(METHODS) | st.text(max_size=8)),
        "signed_in": draw(st.booleans()),
        "accept": draw(st.sampled_from(["text/html", "application/json", "*/*", ""])),
        "duplicate": draw(st.sampled_from([None, "target", "method", "host", "cookie"])),
        "proto": draw(st.sampled_from(["https", "https", "https", "http", "HTTPS", ""])),
    }  # fmt: skip


def expected_level(fixture: Fixture, endpoint: str, request: dict[str, Any]) -> Level | None:
    """What the policy requires of this request, or None when it is not a valid target."""
    host, uri, method = request["host"], request["uri"], request["method"]
    try:
        if endpoint == FORWARD:
            target = Target.from_request(host, uri, method)
        else:
            target = Target.from_url(f"https://{host}{uri}", method)
    except BadTarget:
        return None
    runtime = fixture.gateway.app.runtime
    assert runtime is not None
    signed_in = request["signed_in"]
    subject = Subject("john", frozenset({"admins", "dev"})) if signed_in else Subject()
    return runtime.policy.current.decide(target, subject).level


def raw_path_is_ambiguous(uri: str) -> bool:
    path = uri.partition("?")[0]
    lowered = path.lower()
    if "\\" in path or any(escape in lowered for escape in ("%2f", "%5c", "%25", "%00")):
        return True
    return any(unquote(segment.partition(";")[0]) in (".", "..") for segment in path.split("/"))


def encode(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def check(
    fixture: Fixture, endpoint: str, request: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    host, uri, method = request["host"], request["uri"], request["method"]
    if endpoint == FORWARD:
        headers = [
            (b"x-forwarded-proto", encode(request["proto"])),
            (b"x-forwarded-host", encode(host)),
            (b"x-forwarded-uri", encode(uri)),
            (b"x-forwarded-method", encode(method)),
        ]
    else:
        scheme = request["proto"] or "https"
        headers = [
            (b"x-original-url", encode(f"{scheme}://{host}{uri}")),
            (b"x-original-method", encode(method)),
        ]
    headers.append((b"accept", encode(request["accept"])))
    if request["signed_in"]:
        headers.append((b"cookie", encode(fixture.cookie)))
    if request["duplicate"]:
        # The same header once more, with another value: which one would the upstream see?
        names = DUPLICATES[endpoint]
        name = names.get(request["duplicate"], b"cookie")
        headers.append((name, b"other"))
    caplog.clear()
    status, answer = call(fixture.gateway, endpoint, headers)

    assert not [
        record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR
    ]
    allowed = {200, 401, 403} if endpoint == NGINX else {200, 302, 303, 400, 401, 403}
    assert status in allowed, (status, request)
    location = answer.get(b"location")
    if location is not None:
        assert location.decode().startswith(PORTALS), location
    if status == 200:
        assert request["proto"] in ("https", "HTTPS") or endpoint == NGINX
        assert not raw_path_is_ambiguous(uri), request
        assert request["duplicate"] is None or request["duplicate"] not in DUPLICATES[endpoint]
        level = expected_level(fixture, endpoint, request)
        assert level is not None, request
        if request["signed_in"]:
            assert level in (Level.BYPASS, Level.ONE_FACTOR), (level, request)
        else:
            assert level is Level.BYPASS, (level, request)
        assert set(answer) >= {b"remote-user", b"remote-groups", b"remote-email", b"remote-name"}


PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY_SETTINGS
@given(request=requests())
def test_forward_auth_answers_only_as_the_policy_allows(
    fixture: Fixture, request: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    check(fixture, FORWARD, request, caplog)


@PROPERTY_SETTINGS
@given(request=requests())
def test_auth_request_answers_only_as_the_policy_allows(
    fixture: Fixture, request: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    check(fixture, NGINX, request, caplog)
