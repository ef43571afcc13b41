"""A database that cannot be used raises StorageUnavailable, without leaking credentials."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.storage import StorageUnavailable, open_storage
from tests.services import PostgresServer, free_port
from tests.storage.support import Backend

pytestmark = pytest.mark.anyio


async def test_postgres_on_a_closed_port(tmp_path: Path) -> None:
    port = free_port()
    dsn = f"postgresql://gateway:hunter2-in-dsn@127.0.0.1:{port}/gateway"
    backend = Backend("postgres", {"type": "postgres", "postgres": {"dsn": dsn}}, tmp_path)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as raised:
        await open_storage(backend.settings())
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert f"127.0.0.1:{port}/gateway" in message
    assert "hunter2" not in message and "postgresql://" not in message


async def test_postgres_password_setting_is_not_shown(tmp_path: Path) -> None:
    section = {
        "type": "postgres",
        "postgres": {
            "dsn": f"host=127.0.0.1 port={free_port()} dbname=gateway user=gateway",
            "password": "hunter2-in-setting",
        },
    }
    with pytest.raises(StorageUnavailable) as raised:
        await open_storage(Backend("postgres", section, tmp_path).settings())
    assert "hunter2" not in str(raised.value)


async def test_postgres_going_down_and_coming_back(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> None:
    section = {"type": "postgres", "postgres": {"dsn": postgres_database, "connect_timeout": 2}}
    async with await open_storage(Backend("postgres", section, tmp_path).settings()) as storage:
        await storage.put_secret("grafana", "token-1")
        with postgres_server.down():
            with pytest.raises(StorageUnavailable, match="is unavailable"):
                await storage.get_secret("grafana")
            with pytest.raises(StorageUnavailable):
                await storage.mark_totp_used("alice", 1, keep_for=90)
        # Once the server is back, the same storage works again within a few seconds.
        deadline = time.monotonic() + 15
        while True:
            try:
                assert await storage.get_secret("grafana") == "token-1"
                break
            except StorageUnavailable:
                assert time.monotonic() < deadline, "storage did not recover"
                await asyncio.sleep(0.2)


async def test_sqlite_path_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    section = {"type": "sqlite", "sqlite": {"path": str(blocker / "gateway.sqlite3")}}
    with pytest.raises(StorageUnavailable, match="not-a-directory"):
        await open_storage(Backend("sqlite", section, tmp_path).settings())


async def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite3"
    path.write_bytes(b"this is not a database, " * 100)
    section = {"type": "sqlite", "sqlite": {"path": str(path)}}
    with pytest.raises(StorageUnavailable, match=r"gateway\.sqlite3"):
        await open_storage(Backend("sqlite", section, tmp_path).settings())
