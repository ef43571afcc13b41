"""API key records: machine credentials, of which only keyed hashes of the secret are kept.

The method names are those of the ports in :mod:`gateway.credentials.api_keys`
(``ApiKeyLookup`` for the verifier, ``ApiKeyRepository`` for ``gateway keys``), which this
repository fits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from gateway.storage.database import Database, Param, Row
from gateway.storage.errors import RecordExists
from gateway.storage.records import ApiKeyRecord

__all__ = ["ApiKeyRepository"]

_SELECT = (
    "SELECT key_id, name, owner, secret_hash, previous_secret_hash, previous_valid_until, "
    "groups_json, scopes_json, networks_json, expires_at, disabled, created_at, last_used_at "
    "FROM api_keys"
)


class ApiKeyRepository:
    """API key records by id and by unique name."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def create_api_key(self, record: ApiKeyRecord) -> None:
        """Store a new key; raises :class:`RecordExists` if its id or name is taken."""
        try:
            async with self._db.transaction(write=True) as tx:
                await tx.execute(
                    "INSERT INTO api_keys (key_id, name, owner, secret_hash, previous_secret_hash, "
                    "previous_valid_until, groups_json, scopes_json, networks_json, expires_at, "
                    "disabled, created_at, last_used_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _params(record),
                )
        except RecordExists:
            raise RecordExists(
                f"an API key named {record.name!r} or with id {record.key_id!r} already exists"
            ) from None

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with ``key_id``, or None."""
        async with self._db.transaction(write=False) as tx:
            row = await tx.fetchone(_SELECT + " WHERE key_id = ?", (key_id,))
        return _record(row) if row else None

    async def get_api_key_by_name(self, name: str) -> ApiKeyRecord | None:
        """The key named ``name``, or None."""
        async with self._db.transaction(write=False) as tx:
            row = await tx.fetchone(_SELECT + " WHERE name = ?", (name,))
        return _record(row) if row else None

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """Every API key, by name."""
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetchall(_SELECT + " ORDER BY name")
        return [_record(row) for row in rows]

    async def update_api_key(self, record: ApiKeyRecord) -> bool:
        """Overwrite the key with ``record.key_id``; False if there is none.

        Raises :class:`RecordExists` if ``record.name`` belongs to another key.
        """
        params = _params(record)
        try:
            async with self._db.transaction(write=True) as tx:
                changed = await tx.execute(
                    "UPDATE api_keys SET name = ?, owner = ?, secret_hash = ?, "
                    "previous_secret_hash = ?, previous_valid_until = ?, groups_json = ?, "
                    "scopes_json = ?, networks_json = ?, expires_at = ?, disabled = ?, "
                    "created_at = ?, last_used_at = ? WHERE key_id = ?",
                    (*params[1:], record.key_id),
                )
        except RecordExists:
            raise RecordExists(f"another API key is already named {record.name!r}") from None
        return changed > 0

    async def delete_api_key(self, key_id: str) -> bool:
        """Remove the key with ``key_id``; True if there was one."""
        async with self._db.transaction(write=True) as tx:
            return await tx.execute("DELETE FROM api_keys WHERE key_id = ?", (key_id,)) > 0

    async def touch_api_keys(self, last_used: Mapping[str, float]) -> None:
        """Record last-use times for many keys in one write (never moves a time backwards)."""
        if not last_used:
            return
        async with self._db.transaction(write=True) as tx:
            await tx.executemany(
                "UPDATE api_keys SET last_used_at = ? "
                "WHERE key_id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                [(used, key_id, used) for key_id, used in sorted(last_used.items())],
            )


def _params(record: ApiKeyRecord) -> tuple[Param, ...]:
    return (
        record.key_id,
        record.name,
        record.owner,
        bytes(record.secret_hash),
        bytes(record.previous_secret_hash) if record.previous_secret_hash is not None else None,
        record.previous_valid_until,
        json.dumps(list(record.groups)),
        json.dumps(list(record.scopes)),
        json.dumps(list(record.networks)),
        record.expires_at,
        record.disabled,
        record.created_at,
        record.last_used_at,
    )


def _record(row: Row) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row[0],
        name=row[1],
        owner=row[2],
        secret_hash=bytes(row[3]),
        previous_secret_hash=bytes(row[4]) if row[4] is not None else None,
        previous_valid_until=row[5],
        groups=tuple(json.loads(row[6])),
        scopes=tuple(json.loads(row[7])),
        networks=tuple(json.loads(row[8])),
        expires_at=row[9],
        disabled=bool(row[10]),
        created_at=row[11],
        last_used_at=row[12],
    )
