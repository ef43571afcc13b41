"""Schema migrations: applied once, safe to repeat, safe when replicas start together."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from gateway.storage import StorageError, open_storage
from gateway.storage.migrations import latest_version
from tests.storage.support import Backend

pytestmark = pytest.mark.anyio


async def test_first_open_creates_the_schema(backend: Backend) -> None:
    storage = await open_storage(backend.settings())
    await storage.close()
    versions = backend.query("SELECT version FROM schema_version ORDER BY version")
    assert [row[0] for row in versions] == list(range(1, latest_version() + 1))


async def test_reopening_keeps_data_and_applies_nothing_twice(backend: Backend) -> None:
    async with await open_storage(backend.settings()) as storage:
        await storage.second_factor.save_totp("alice", "JBSWY3DPEHPK3PXP")
    async with await open_storage(backend.settings()) as storage:
        record = await storage.second_factor.get_totp("alice")
    assert record is not None and record.secret == "JBSWY3DPEHPK3PXP"
    assert len(backend.query("SELECT version FROM schema_version")) == latest_version()


async def test_replicas_starting_at_once_migrate_exactly_once(backend: Backend) -> None:
    storages = await asyncio.gather(*(open_storage(backend.settings()) for _ in range(4)))
    try:
        await asyncio.gather(
            *(storage.secrets.put_secret(f"s{n}", "value") for n, storage in enumerate(storages))
        )
        assert await storages[0].secrets.list_secret_names() == ["s0", "s1", "s2", "s3"]
    finally:
        await asyncio.gather(*(storage.close() for storage in storages))
    assert len(backend.query("SELECT version FROM schema_version")) == latest_version()


async def test_a_database_from_a_newer_gateway_is_refused(backend: Backend) -> None:
    storage = await open_storage(backend.settings())
    await storage.close()
    backend.execute(
        "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
        (latest_version() + 1, "from the future", 0.0),
    )
    with pytest.raises(StorageError, match="newer than this gateway supports"):
        await open_storage(backend.settings())


async def test_sqlite_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    backend = Backend(
        "sqlite",
        {"type": "sqlite", "sqlite": {"path": str(tmp_path / "db" / "g.sqlite3")}},
        tmp_path,
    )
    async with await open_storage(backend.settings()):
        pass
    mode = stat.S_IMODE((tmp_path / "db" / "g.sqlite3").stat().st_mode)
    assert mode == 0o600
