"""An in-memory ApiKeyRepository for unit tests (the CLI tests use real SQLite storage)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from gateway.storage.records import ApiKeyRecord


class MemoryRepository:
    """Dict-backed records; counts reads and can be switched "down"."""

    def __init__(self) -> None:
        self.records: dict[str, ApiKeyRecord] = {}
        self.reads = 0
        self.touches: list[dict[str, float]] = []
        self.down = False
        self.secrets: dict[str, str] = {}
        self.secret_reads = 0

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("database is down")

    async def create_api_key(self, record: ApiKeyRecord) -> None:
        self.records[record.key_id] = record

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        self.reads += 1
        self._check()
        return self.records.get(key_id)

    async def get_api_key_by_name(self, name: str) -> ApiKeyRecord | None:
        return next((r for r in self.records.values() if r.name == name), None)

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        return sorted(self.records.values(), key=lambda r: r.name)

    async def update_api_key(self, record: ApiKeyRecord) -> bool:
        if record.key_id not in self.records:
            return False
        self.records[record.key_id] = record
        return True

    async def delete_api_key(self, key_id: str) -> bool:
        return self.records.pop(key_id, None) is not None

    async def touch_api_keys(self, last_used: Mapping[str, float]) -> None:
        self._check()
        self.touches.append(dict(last_used))
        for key_id, used in last_used.items():
            record = self.records.get(key_id)
            if record is not None:
                self.records[key_id] = replace(record, last_used_at=used)

    async def get_secret(self, name: str) -> str | None:
        self.secret_reads += 1
        self._check()
        return self.secrets.get(name)
