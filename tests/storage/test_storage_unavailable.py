"""A database that cannot be used raises StorageUnavailable, without leaking credentials."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
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
        await storage.secrets.put_secret("grafana", "token-1")
        with postgres_server.down():
            with pytest.raises(StorageUnavailable, match="is unavailable"):
                await storage.secrets.get_secret("grafana")
            with pytest.raises(StorageUnavailable):
                await storage.second_factor.mark_totp_used("alice", 1, keep_for=90)
        # Once the server is back, the same storage works again within a few seconds.
        deadline = time.monotonic() + 15
        while True:
            try:
                assert await storage.secrets.get_secret("grafana") == "token-1"
                break
            except StorageUnavailable:
                assert time.monotonic() < deadline, "storage did not recover"
                await asyncio.sleep(0.2)


HUNG_TIMEOUT = 2.0


async def _unavailable_within_the_timeout(operation: Awaitable[object]) -> None:
    started = time.monotonic()
    # The outer bound only keeps a regression from hanging the suite.
    with pytest.raises(StorageUnavailable, match="is unavailable"):
        await asyncio.wait_for(operation, 30)
    elapsed = time.monotonic() - started
    assert elapsed < HUNG_TIMEOUT + 1.5, f"took {elapsed:.1f}s for a {HUNG_TIMEOUT}s timeout"


async def test_a_hung_postgres_costs_a_call_the_statement_timeout(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> None:
    section = {
        "type": "postgres",
        "postgres": {"dsn": postgres_database, "statement_timeout": HUNG_TIMEOUT},
    }
    async with await open_storage(Backend("postgres", section, tmp_path).settings()) as storage:
        await storage.secrets.put_secret("grafana", "token-1")
        with postgres_server.frozen():
            # Postmaster and backends stopped: the pooled connections look healthy to TCP,
            # their check and every statement get no answer.
            await _unavailable_within_the_timeout(storage.api_keys.get_api_key("k1"))
            await _unavailable_within_the_timeout(storage.secrets.get_secret("grafana"))
            await _unavailable_within_the_timeout(storage.ping())
            # Several at once, more than the pool has connections: still one timeout each.
            started = time.monotonic()
            outcomes = await asyncio.gather(
                *(storage.secrets.get_secret("grafana") for _ in range(8)), return_exceptions=True
            )
            assert all(isinstance(outcome, StorageUnavailable) for outcome in outcomes)
            assert time.monotonic() - started < HUNG_TIMEOUT + 1.5
        # Thawed: the broken connections were discarded, new ones work within seconds.
        deadline = time.monotonic() + 15
        while True:
            try:
                assert await storage.secrets.get_secret("grafana") == "token-1"
                break
            except StorageUnavailable:
                assert time.monotonic() < deadline, "storage did not recover"
                await asyncio.sleep(0.2)


async def test_a_slow_statement_is_cancelled_by_postgres(
    postgres_database: str, tmp_path: Path
) -> None:
    section = {"type": "postgres", "postgres": {"dsn": postgres_database, "statement_timeout": 1}}
    async with await open_storage(Backend("postgres", section, tmp_path).settings()) as storage:
        database = storage._db
        with pytest.raises(StorageUnavailable, match="is unavailable"):
            async with database.transaction(write=False) as tx:
                await tx.fetchone("SELECT pg_sleep(5)")
        # A longer deadline for one transaction (as migrations take) lifts both limits.
        async with database.transaction(write=False, deadline=5) as tx:
            assert await tx.fetchone("SELECT pg_sleep(1.5), 7") == ("", 7)
        await storage.ping()


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
