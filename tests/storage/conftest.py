"""Fixtures for the storage suite: every behavioural test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.storage import Storage, open_storage
from tests.storage.support import Backend
from tests.support.clock import FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        section = {"type": "sqlite", "sqlite": {"path": str(tmp_path / "gateway.sqlite3")}}
    else:
        dsn = request.getfixturevalue("postgres_database")
        section = {"type": "postgres", "postgres": {"dsn": dsn}}
    return Backend(request.param, section, tmp_path)


@pytest.fixture
async def storage(backend: Backend) -> AsyncIterator[Storage]:
    """A migrated storage sealing with OLD_KEY."""
    opened = await open_storage(backend.settings())
    yield opened
    await opened.close()


@pytest.fixture
async def second_storage(backend: Backend) -> AsyncIterator[Storage]:
    """Another storage on the same database, as a second replica would have."""
    opened = await open_storage(backend.settings())
    yield opened
    await opened.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
