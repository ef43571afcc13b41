"""A whole deployment for end-to-end tests: the gateway as a real process, an echo upstream,
and a real Caddy in front using the shipped Caddyfile and snippets.

Everything listens on loopback; hostnames under example.com reach it through Chromium's
host-resolver rules (tests/services.py) or through an explicit Host header / SNI in httpx.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.services import CaddyFactory, CaddyInstance, free_port, port_is_open
from tests.support.config import USERS_FILE, Cookie, GatewayConfig, User, users_yml
from tests.support.passwords import password_hash

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "e2e password 1"


def render_caddyfile(name: str = "gateway.Caddyfile") -> str:
    """A shipped Caddyfile with `import snippets.caddy` inlined (the test runs it elsewhere)."""
    text = (ROOT / "caddy" / name).read_text()
    snippets = (ROOT / "caddy" / "snippets.caddy").read_text()
    return text.replace("import snippets.caddy", snippets)


USERS = {
    "john": User("John Doe", "john@example.com", ("admins", "dev")),
    "harry": User("Harry Smith", "harry@example.com", ("dev",)),
}


def users_text() -> str:
    """users.yml of the end-to-end tests: john and harry, both with PASSWORD."""
    return users_yml(password_hash(PASSWORD), **USERS)


E2E_POLICY = """\
access_control:
  default_policy: deny
  rules:
    - domain: auth.example.com
      policy: bypass
    - domain: public.example.com
      policy: bypass
    - domain: admin.example.com
      subject: "group:admins"
      policy: two_factor
    - domain: "*.example.com"
      policy: one_factor
"""


@dataclass
class Stack:
    directory: Path
    caddy: CaddyInstance
    gateway_port: int
    upstream_port: int

    @property
    def https_port(self) -> int:
        return self.caddy.https_port

    def url(self, host: str, path: str = "/") -> str:
        return f"https://{host}:{self.https_port}{path}"

    def client(self) -> httpx.Client:
        """An HTTP client that reaches *.example.com through Caddy on loopback."""
        return loopback_client()


def loopback_client(cert: tuple[Path, Path] | None = None) -> httpx.Client:
    """An HTTPS client for *.example.com names that connects to 127.0.0.1 (keeping the name
    for SNI and Host), trusting the test CAs; ``cert`` presents a client certificate."""
    transport = httpx.HTTPTransport(
        verify=False,
        cert=(str(cert[0]), str(cert[1])) if cert else None,
    )

    class Loopback(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            request.extensions["sni_hostname"] = request.url.host
            request.headers["Host"] = f"{request.url.host}:{request.url.port}"
            request.url = request.url.copy_with(host="127.0.0.1")
            return transport.handle_request(request)

    return httpx.Client(transport=Loopback(), follow_redirects=False, timeout=15)


def gateway_config(
    directory: Path,
    https_port: int,
    gateway_port: int,
    *,
    authentication: str,
    policy: str = E2E_POLICY,
    extra: str = "",
) -> Path:
    """gateway.yml and policy.yml: the gateway on ``gateway_port``, HTTPS on ``https_port``."""
    return GatewayConfig(
        address="127.0.0.1",
        port=gateway_port,
        hash_key="e" * 40,
        store="sqlite",
        cookies=(
            Cookie(
                "example.com",
                f"https://auth.example.com:{https_port}",
                f"https://app.example.com:{https_port}",
            ),
        ),
        authentication=authentication,
        storage={"type": "sqlite"},
        extra=extra,
        policy=policy,
    ).write(directory)


@contextmanager
def running_gateway(
    config: Path, port: int, *, extra_args: list[str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    log = (config.parent / "gateway.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config),
            *(extra_args or []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while not port_is_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "the gateway did not start:\n"
                    + (config.parent / "gateway.log").read_text()[-4000:]
                )
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()


@contextmanager
def running_upstream(port: int) -> Iterator[None]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "echo_upstream.py"), "--port", str(port)],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_is_open(port):
            if time.monotonic() > deadline:
                raise AssertionError("the echo upstream did not start")
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def stack(
    caddy: CaddyFactory,
    directory: Path,
    *,
    authentication: str,
    binary: str = "pypi",
    policy: str = E2E_POLICY,
    caddyfile: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    gateway_port = free_port()
    upstream_port = free_port()
    env = {
        "GATEWAY": f"127.0.0.1:{gateway_port}",
        "UPSTREAM": f"127.0.0.1:{upstream_port}",
        "DOMAIN": "example.com",
        **(extra_env or {}),
    }
    with (
        running_upstream(upstream_port),
        caddy.start(caddyfile or render_caddyfile(), binary=binary, env=env) as instance,
    ):
        config = gateway_config(
            directory,
            instance.https_port,
            gateway_port,
            authentication=authentication,
            policy=policy,
        )
        with running_gateway(config, gateway_port):
            yield Stack(directory, instance, gateway_port, upstream_port)


def users_file_authentication(directory: Path) -> str:
    """Write users.yml into ``directory``; the authentication section that names it."""
    users = directory / "users.yml"
    users.write_text(users_text())
    users.chmod(0o600)
    return USERS_FILE


def echoed(text: str) -> dict[str, str]:
    """The headers the echo upstream received, from its JSON page (as shown in a browser)."""
    import json

    match = re.search(r"\{.*\}", text, re.DOTALL)
    assert match, f"not an echo page: {text[:300]}"
    return dict(json.loads(match.group(0))["headers"])
