"""Numbered schema migrations, applied at start-up.

Each migration has the same number and meaning on both backends, with SQL written for each.
:func:`apply_migrations` runs inside one write transaction holding the ``schema`` lock
(``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so any number of processes
may start at once: the first applies what is missing, the others then find nothing to do.
Never edit a released migration; add a new one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gateway.storage.database import Database
from gateway.storage.errors import StorageError

__all__ = ["MIGRATIONS", "Migration", "apply_migrations", "latest_version"]

_log = logging.getLogger("gateway.storage")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


_INITIAL_SQLITE = (
    # Sealed values (secret, value) are Keyring.seal() output; key_id repeats the id in
    # their header so rotation can find what is still under an old key.
    """CREATE TABLE totp (
        username   TEXT PRIMARY KEY,
        secret     BLOB NOT NULL,
        key_id     TEXT NOT NULL,
        algorithm  TEXT NOT NULL,
        digits     INTEGER NOT NULL,
        period     INTEGER NOT NULL,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE recovery_codes (
        username  TEXT NOT NULL,
        code_hash BLOB NOT NULL,
        PRIMARY KEY (username, code_hash)
    )""",
    """CREATE TABLE totp_used (
        username   TEXT NOT NULL,
        step       INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (username, step)
    )""",
    "CREATE INDEX totp_used_expires_at ON totp_used (expires_at)",
    """CREATE TABLE api_keys (
        key_id               TEXT PRIMARY KEY,
        name                 TEXT NOT NULL UNIQUE,
        owner                TEXT NOT NULL,
        secret_hash          BLOB NOT NULL,
        previous_secret_hash BLOB,
        previous_valid_until REAL,
        groups_json          TEXT NOT NULL,
        scopes_json          TEXT NOT NULL,
        networks_json        TEXT NOT NULL,
        expires_at           REAL,
        disabled             INTEGER NOT NULL,
        created_at           REAL NOT NULL,
        last_used_at         REAL
    )""",
    """CREATE TABLE secrets (
        name       TEXT PRIMARY KEY,
        value      BLOB NOT NULL,
        key_id     TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE audit_log (
        id        INTEGER PRIMARY KEY,
        time      REAL NOT NULL,
        event     TEXT NOT NULL,
        actor     TEXT NOT NULL,
        detail    TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    )""",
)

_INITIAL_POSTGRES = (
    """CREATE TABLE totp (
        username   TEXT PRIMARY KEY,
        secret     BYTEA NOT NULL,
        key_id     TEXT NOT NULL,
        algorithm  TEXT NOT NULL,
        digits     INTEGER NOT NULL,
        period     INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE recovery_codes (
        username  TEXT NOT NULL,
        code_hash BYTEA NOT NULL,
        PRIMARY KEY (username, code_hash)
    )""",
    """CREATE TABLE totp_used (
        username   TEXT NOT NULL,
        step       BIGINT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (username, step)
    )""",
    "CREATE INDEX totp_used_expires_at ON totp_used (expires_at)",
    """CREATE TABLE api_keys (
        key_id               TEXT PRIMARY KEY,
        name                 TEXT NOT NULL UNIQUE,
        owner                TEXT NOT NULL,
        secret_hash          BYTEA NOT NULL,
        previous_secret_hash BYTEA,
        previous_valid_until DOUBLE PRECISION,
        groups_json          TEXT NOT NULL,
        scopes_json          TEXT NOT NULL,
        networks_json        TEXT NOT NULL,
        expires_at           DOUBLE PRECISION,
        disabled             BOOLEAN NOT NULL,
        created_at           DOUBLE PRECISION NOT NULL,
        last_used_at         DOUBLE PRECISION
    )""",
    """CREATE TABLE secrets (
        name       TEXT PRIMARY KEY,
        value      BYTEA NOT NULL,
        key_id     TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE audit_log (
        id        BIGINT PRIMARY KEY,
        time      DOUBLE PRECISION NOT NULL,
        event     TEXT NOT NULL,
        actor     TEXT NOT NULL,
        detail    TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    )""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "TOTP, recovery codes, used codes, API keys, secrets, audit log",
        _INITIAL_SQLITE,
        _INITIAL_POSTGRES,
    ),
)

_SCHEMA_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  DOUBLE PRECISION NOT NULL
)"""


def latest_version() -> int:
    """The schema version this code expects."""
    return MIGRATIONS[-1].version


MIGRATION_DEADLINE = 300.0
"""Seconds the schema transaction may take, waiting for the lock included."""


async def apply_migrations(database: Database) -> list[int]:
    """Bring the schema up to date; returns the versions applied (empty if none were due).

    Raises :class:`StorageError` if the database was migrated by a newer gateway.
    """
    applied: list[int] = []
    # Longer than an ordinary transaction: another replica may hold the schema lock while it
    # migrates, and a migration may rewrite a table.
    async with database.transaction(write=True, deadline=MIGRATION_DEADLINE) as tx:
        await tx.lock("schema")
        await tx.execute(_SCHEMA_VERSION_TABLE)
        row = await tx.fetchone("SELECT MAX(version) FROM schema_version")
        current = int(row[0]) if row and row[0] is not None else 0
        if current > latest_version():
            raise StorageError(
                f"{database.description} has schema version {current}, newer than this "
                f"gateway supports ({latest_version()}); upgrade the gateway or restore a "
                "matching backup"
            )
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            statements = migration.sqlite if database.dialect == "sqlite" else migration.postgres
            for statement in statements:
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.description, time.time()),
            )
            applied.append(migration.version)
    for version in applied:
        _log.info("storage: applied schema migration %d to %s", version, database.description)
    return applied
