"""A real gateway app (SQLite sessions and storage, users file, policy file) for protocol tests."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.app import GatewayApp, create_app
from gateway.config.settings import load_settings
from gateway.identity.passwords import hash_password
from gateway.security.crypto import generate_key
from gateway.session.model import AuthLevel, Session

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
USERS_FILE = "authentication:\n  backend: file\n  file:\n    path: users.yml\n"


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


def users_file(path: Path) -> None:
    hashed = _password_hash()
    path.write_text(
        "users:\n"
        "  john:\n"
        "    displayname: John Doe\n"
        "    email: john@example.com\n"
        "    groups: [admins, dev]\n"
        f'    password: "{hashed}"\n'
        "  harry:\n"
        "    displayname: Harry Pötter\n"
        "    email: harry@example.com\n"
        "    groups: [dev]\n"
        f'    password: "{hashed}"\n'
    )


def write_config(
    directory: Path,
    *,
    store: str = "sqlite",
    session_extra: str = "",
    authentication: str | None = None,
    extra: str = "",
) -> Path:
    (directory / "policy.yml").write_text(POLICY)
    users_file(directory / "users.yml")
    config = directory / "gateway.yml"
    config.write_text(
        f"""\
secrets:
  encryption_keys: [{generate_key()}]
  hash_key: {"k" * 40}
policy:
  files: [policy.yml]
session:
  store: {store}
{session_extra}  cookies:
    - domain: example.com
      portal_url: https://auth.example.com
      default_redirect_url: https://app.example.com
    - domain: example.org
      portal_url: https://auth.example.org
{authentication or USERS_FILE}{extra}"""
    )
    return config


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
        users = {
            "john": ("John Doe", "john@example.com", ("admins", "dev")),
            "harry": ("Harry Pötter", "harry@example.com", ("dev",)),
        }
        name, email, groups = users[username]

        async def create() -> Session:
            return await runtime.sessions.login(
                cookie_domain,
                username=username,
                display_name=name,
                email=email,
                groups=groups,
                level=level,
            )

        return self.client.portal.call(create)  # type: ignore[attr-defined,no-any-return]

    def cookie(self, session: Session) -> str:
        return f"theme=dark; gateway_session={session.id}"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    settings = load_settings(write_config(tmp_path))
    app = create_app(settings)
    with TestClient(app, base_url="http://gateway.internal", client=("127.0.0.1", 41000)) as client:
        yield Gateway(app, client)


@pytest.fixture
def untrusting_gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway whose trusted proxies do not include the test client's address."""
    extra = "server:\n  trusted_proxies: [10.9.9.0/24]\n"
    settings = load_settings(write_config(tmp_path, extra=extra))
    app = create_app(settings)
    with TestClient(app, base_url="http://gateway.internal", client=("127.0.0.1", 41000)) as client:
        yield Gateway(app, client)
