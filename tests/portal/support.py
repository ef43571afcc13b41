"""Helpers for the portal tests: a gateway on real components (users file, memory session
store, regulation, policy files, SQLite storage, the second-factor service) and a client.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from starlette.testclient import TestClient

from gateway.config.settings import Settings
from gateway.identity.second_factor import SecondFactor
from gateway.identity.users_file import UsersFileBackend
from gateway.observability.metrics import Metrics
from gateway.policy.reload import PolicyWatcher
from gateway.runtime import Runtime
from gateway.security.crypto import Keyring
from gateway.security.regulation import Regulator
from gateway.session.manager import SessionManager
from gateway.session.stores.memory import MemorySessionStore
from gateway.snapshot import Snapshots
from gateway.storage import open_storage
from tests.support.config import Cookie, GatewayConfig, User, users_yml
from tests.support.passwords import password_hash

T = TypeVar("T")

PORTAL = "https://auth.example.com"
CLIENT_IP = "198.51.100.7"
PASSWORD = "correct horse battery staple"

POLICY = """\
access_control:
  default_policy: deny
  rules:
    - domain: auth.example.com
      policy: bypass
    - domain: secure.example.com
      policy: two_factor
    - domain: admin.example.com
      subject: "group:admins"
      policy: one_factor
    - domain: admin.example.com
      policy: deny
    - domain: "*.example.com"
      policy: one_factor
    - domain: "*.example.org"
      policy: one_factor
"""


def write_configuration(directory: Path) -> Path:
    users = users_yml(
        password_hash(PASSWORD, fast=True),
        alice=User("Alice Liddell", "alice@example.com", ("admins", "dev")),
        bob=User("Bob <b>Builder</b>", "bob@example.com", ()),
        carol=User("Carol", "carol@example.com", disabled=True),
    )
    return GatewayConfig(
        store="memory",
        cookies=(
            Cookie("example.com", "https://auth.example.com", "https://home.example.com"),
            Cookie("example.org", "https://auth.example.org"),
        ),
        authentication={"backend": "file", "file": {"path": "users.yml", "watch": False}},
        storage={"type": "sqlite", "sqlite": {"path": "gateway.sqlite3"}},
        hash_key="k" * 48,
        extra={"regulation": {"max_retries": 3, "find_time": "2m", "ban_time": "5m"}},
        policy=POLICY,
        users=users,
    ).write(directory)


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    keyring = Keyring.from_texts(settings.secrets.encryption_keys)
    hash_key = settings.secrets.hash_key.encode()
    store = MemorySessionStore()
    assert settings.authentication.file is not None
    users = UsersFileBackend(settings.authentication.file.path, watch=False)
    await users.start()
    storage = await open_storage(settings)
    policy = PolicyWatcher(settings.policy.files)
    try:
        yield Runtime(
            settings=settings,
            keyring=keyring,
            hash_key=hash_key,
            policy=policy,
            snapshots=Snapshots(policy, None),
            sessions=SessionManager(settings.session, store, hash_key),
            users=users,
            regulator=Regulator(settings.regulation, store.regulation),
            storage=storage,
            second_factor=SecondFactor.from_settings(
                settings, storage.second_factor, hash_key, keyring=keyring
            ),
            metrics=Metrics(),
        )
    finally:
        await storage.close()
        await users.close()


@dataclass
class Gateway:
    """A running portal: the HTTP client and the components behind it."""

    client: TestClient
    runtime: Runtime

    def run(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Call an async component method on the app's event loop."""

        async def call() -> T:
            return await function(*args, **kwargs)

        assert self.client.portal is not None
        return self.client.portal.call(call)

    def csrf(self, path: str = "/") -> str:
        """The CSRF field of the form on ``path`` (and the cookie that goes with it)."""
        response = self.client.get(path)
        return csrf_field(response.text)

    def login(
        self,
        username: str = "alice",
        password: str = PASSWORD,
        *,
        rd: str | None = None,
        rm: str | None = None,
        remember: bool = False,
        **headers: str,
    ) -> Any:
        data = {"username": username, "password": password, "csrf": self.csrf()}
        if rd is not None:
            data["rd"] = rd
        if rm is not None:
            data["rm"] = rm
        if remember:
            data["remember"] = "1"
        return self.client.post("/login", data=data, headers=headers)

    def session_cookie(self) -> str | None:
        return self.client.cookies.get("gateway_session")


_CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_field(html: str) -> str:
    match = _CSRF_FIELD.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)
