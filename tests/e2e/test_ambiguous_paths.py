"""Through real Caddy with the shipped snippet: a raw path that an upstream could read
differently from the policy never reaches the upstream; it is refused with 400.

Requests are written byte for byte over TLS: HTTP client libraries clean dot segments and
would hide exactly what an attacker sends.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack, stack, users_file_authentication
from tests.services import CADDY_BINARIES, CaddyFactory

POLICY = """\
access_control:
  default_policy: deny
  rules:
    - domain: auth.example.com
      policy: bypass
    - domain: app.example.com
      resources: ['^/public([/?].*)?$']
      policy: bypass
    - domain: app.example.com
      policy: one_factor
"""

AMBIGUOUS = [
    "/public/..;/admin",
    "/public/%252e%252e/admin",
    "/public\\..\\admin",
    "/admin%2F..%2Fpublic",
    "/admin/%2e%2e/public",
    "/public/../admin",
    "/public/%2e%2e/admin",
    "/public/%00/x",
]


@pytest.fixture(scope="module", params=CADDY_BINARIES)
def running(
    request: pytest.FixtureRequest, caddy: CaddyFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    directory: Path = tmp_path_factory.mktemp(f"paths-{request.param}")
    with stack(
        caddy,
        directory,
        authentication=users_file_authentication(directory),
        binary=request.param,
        policy=POLICY,
    ) as instance:
        yield instance


def raw_get(running: Stack, host: str, target: str) -> tuple[int, bytes]:
    """Send ``GET target`` exactly as written; the status and body Caddy answers."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", running.https_port), timeout=15) as plain,
        context.wrap_socket(plain, server_hostname=host) as tls,
    ):
        tls.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\n"
            "Connection: close\r\n\r\n".encode("latin-1")
        )
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_a_clean_public_path_reaches_the_upstream_as_sent(running: Stack) -> None:
    status, body = raw_get(running, "app.example.com", "/public/docs?x=1")
    assert status == 200
    assert json.loads(body)["path"] == "/public/docs?x=1"


def test_a_protected_path_needs_a_login(running: Stack) -> None:
    status, _ = raw_get(running, "app.example.com", "/admin")
    assert status == 302


@pytest.mark.parametrize("target", AMBIGUOUS)
def test_an_ambiguous_path_is_refused_before_the_upstream(running: Stack, target: str) -> None:
    status, body = raw_get(running, "app.example.com", target)
    assert status == 400, body[:300]
    # The gateway's own answer, not the upstream's echo of what it would have served.
    assert b"ambiguous path" in body
    assert b'"path"' not in body
