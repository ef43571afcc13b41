"""Helpers of the decision tests: their configuration, a signed-in Gateway, asking it."""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.testclient import TestClient

from gateway.app import GatewayApp
from gateway.session.model import AuthLevel, Session
from tests.support.config import USERS_FILE, Cookie, GatewayConfig, User, users_yml
from tests.support.passwords import password_hash

POLICY = """\
access_control:
  default_policy: deny
  networks:
    - name: office
      networks: [192.0.2.0/24]
  rules:
    - domain: public.example.com
      policy: bypass
    - domain: office.example.com
      networks: [office]
      policy: bypass
    - domain: blocked.example.com
      policy: deny
    - domain: admin.example.com
      subject: "group:admins"
      policy: two_factor
    - domain: admin.example.com
      policy: deny
    - domain: secure.example.com
      policy: two_factor
    - domain: ["*.example.com", "*.example.org"]
      policy: one_factor
"""

PASSWORD = "correct horse battery staple"
USERS = {
    "john": User("John Doe", "john@example.com", ("admins", "dev")),
    "harry": User("Harry Pötter", "harry@example.com", ("dev",)),
}
COOKIES = (
    Cookie("example.com", "https://auth.example.com", "https://app.example.com"),
    Cookie("example.org", "https://auth.example.org"),
)

FORWARD = "/api/authz/forward-auth"
NGINX = "/api/authz/auth-request"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
REMOTE = ("remote-user", "remote-groups", "remote-email", "remote-name")


def write_config(directory: Path, **parts: Any) -> Path:
    """gateway.yml (SQLite sessions, the users file), POLICY and USERS in ``directory``.

    ``parts`` replace those of the GatewayConfig (tests/support/config.py).
    """
    config = GatewayConfig(
        store="sqlite",
        cookies=COOKIES,
        authentication=USERS_FILE,
        policy=POLICY,
        users=users_yml(password_hash(PASSWORD), **USERS),
    )
    return dataclasses.replace(config, **parts).write(directory)


@dataclass
class Gateway:
    """A running app plus helpers to sign people in without going through the portal."""

    app: GatewayApp
    client: TestClient

    def login(
        self, username: str, level: AuthLevel = AuthLevel.ONE_FACTOR, domain: str = "example.com"
    ) -> Session:
        runtime = self.app.runtime
        assert runtime is not None
        cookie_domain = runtime.sessions.cookie_domain_for(domain)
        assert cookie_domain is not None
        user = USERS[username]

        async def create() -> Session:
            return await runtime.sessions.login(
                cookie_domain,
                username=username,
                display_name=user.displayname,
                email=user.email or "",
                groups=tuple(user.groups or ()),
                level=level,
            )

        return self.client.portal.call(create)  # type: ignore[attr-defined,no-any-return]

    def cookie(self, session: Session) -> str:
        return f"theme=dark; gateway_session={session.id}"


def ask(
    gateway: Gateway,
    url: str,
    *,
    method: str = "GET",
    cookie: str | None = None,
    accept: str = BROWSER,
    client_ip: str = "203.0.113.10",
    endpoint: str = FORWARD,
    extra: dict[str, str] | None = None,
    http_method: str = "GET",
) -> httpx.Response:
    """Ask the gateway about ``url`` as Caddy (FORWARD) or nginx (NGINX) would."""
    parts = urlsplit(url)
    if endpoint == FORWARD:
        headers = {
            "X-Forwarded-Proto": parts.scheme,
            "X-Forwarded-Host": parts.netloc,
            "X-Forwarded-Uri": parts.path + (f"?{parts.query}" if parts.query else ""),
            "X-Forwarded-Method": method,
        }
    else:
        headers = {"X-Original-URL": url, "X-Original-Method": method}
    headers["X-Forwarded-For"] = client_ip
    headers["Accept"] = accept
    if cookie:
        headers["Cookie"] = cookie
    headers.update(extra or {})
    return gateway.client.request(http_method, endpoint, headers=headers, follow_redirects=False)


def remote(response: httpx.Response) -> dict[str, str]:
    """The four identity headers of an answer (None where absent)."""
    return {name: response.headers.get(name) for name in REMOTE}  # type: ignore[misc]


def basic(username: str, password: str) -> dict[str, str]:
    """An Authorization: Basic header."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
