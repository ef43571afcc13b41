"""Fixtures shared by the session and regulation suites: one per store backend.

``backend`` is parametrized over memory, SQLite and a real Redis (the private server of
tests/services.py, started only when a Redis case runs). Each Redis case uses its own key
prefix, so cases never see each other's keys on the shared server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.security.crypto import Keyring, generate_key
from gateway.session.settings import CookieDomain, RedisSettings, SessionSettings
from gateway.session.stores.base import SessionStore
from gateway.session.stores.memory import MemorySessionStore
from gateway.session.stores.redis import RedisSessionStore
from gateway.session.stores.sqlite import SqliteSessionStore
from tests.support.clock import FakeClock

HASH_KEY = b"k" * 40
BACKENDS = ("memory", "sqlite", "redis")


@dataclass
class Backend:
    """A store under test and what a test needs to look behind it."""

    name: str
    store: SessionStore
    clock: FakeClock
    keyring: Keyring
    redis_url: str = ""
    redis_prefix: str = ""
    sqlite_path: Path | None = None
    extra: list[SessionStore] = field(default_factory=list)

    def another(self) -> SessionStore:
        """A second store on the same backend, as another process would open it."""
        if self.name == "memory":
            raise ValueError("the memory store cannot be shared")
        if self.name == "sqlite":
            assert self.sqlite_path is not None
            other: SessionStore = SqliteSessionStore(self.sqlite_path, clock=self.clock)
        else:
            other = redis_store(self.redis_url, self.redis_prefix, self.keyring)
        self.extra.append(other)
        return other


def redis_store(url: str, prefix: str, keyring: Keyring) -> RedisSessionStore:
    settings = RedisSettings(url=url, key_prefix=prefix, timeout=1.0)
    return RedisSessionStore.from_settings(settings, keyring, HASH_KEY)


def session_settings(**overrides: object) -> SessionSettings:
    """Two root domains, with example.org overriding the expiry settings."""
    values: dict[str, object] = {
        "cookies": (
            CookieDomain(domain="example.com", portal_url="https://auth.example.com"),
            CookieDomain(
                domain="example.org",
                portal_url="https://login.example.org",
                name="org_session",
                expiration=7200,
                inactivity=600,
                remember_me=86400,
            ),
        ),
    }
    values.update(overrides)
    return SessionSettings.model_validate(values)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    """Starting at the real time: SQLite and Redis expire keys by their own clocks."""
    return FakeClock(time.time())


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.from_texts([generate_key()])


@pytest.fixture(params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock, keyring: Keyring
) -> AsyncIterator[Backend]:
    name: str = request.param
    if name == "memory":
        created = Backend(name, MemorySessionStore(clock=clock), clock, keyring)
    elif name == "sqlite":
        path = tmp_path / "sessions.sqlite3"
        created = Backend(
            name, SqliteSessionStore(path, clock=clock), clock, keyring, sqlite_path=path
        )
    else:
        url: str = request.getfixturevalue("redis_url")
        prefix = f"test-{uuid.uuid4().hex[:12]}:"
        created = Backend(name, redis_store(url, prefix, keyring), clock, keyring, url, prefix)
    yield created
    for store in (created.store, *created.extra):
        await store.close()
