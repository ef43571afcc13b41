"""The storage: one database, opened and migrated, and a repository per kind of record.

::

    storage.second_factor   TOTP seeds, used TOTP steps, recovery codes   (second_factor.py)
    storage.api_keys        API key records                               (api_keys.py)
    storage.secrets         upstream secrets by name                      (secrets.py)
    storage.audit           the audit hash chain                          (audit.py)

Every repository runs its SQL over the same :class:`~gateway.storage.database.Database`, on
SQLite or PostgreSQL alike. Values sealed with the keyring (TOTP seeds, upstream secrets)
never reach the database in the clear; :meth:`Storage.rotate_encryption` re-seals both under
a new key and from then on every repository seals with the new keyring.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from gateway.config.settings import Settings
from gateway.security.crypto import Keyring
from gateway.storage import rotation
from gateway.storage.api_keys import ApiKeyRepository
from gateway.storage.audit import AuditLog
from gateway.storage.database import Database, Dialect
from gateway.storage.migrations import apply_migrations
from gateway.storage.postgres import PostgresDatabase
from gateway.storage.second_factor import TOTP_SEED, SecondFactorRepository
from gateway.storage.secrets import UPSTREAM_SECRET, SecretRepository
from gateway.storage.sqlite import SqliteDatabase

__all__ = ["Storage", "open_storage"]

_SEALED_COLUMNS = (TOTP_SEED, UPSTREAM_SECRET)


class Storage:
    """Persistent records on SQLite or PostgreSQL; create with :func:`open_storage`."""

    def __init__(
        self, database: Database, keyring: Keyring, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = database
        self._keyring = keyring
        self.second_factor = SecondFactorRepository(database, self._current_keyring, clock=clock)
        self.api_keys = ApiKeyRepository(database)
        self.secrets = SecretRepository(database, self._current_keyring, clock=clock)
        self.audit = AuditLog(database, clock=clock)

    @property
    def backend(self) -> Dialect:
        return self._db.dialect

    @property
    def description(self) -> str:
        """Which database this is (``SQLite database PATH`` / ``PostgreSQL database H:P/DB``)."""
        return self._db.description

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def _current_keyring(self) -> Keyring:
        # The repositories ask for the keyring on every use, so a rotation reaches them all.
        return self._keyring

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        """Raise :class:`~gateway.storage.errors.StorageUnavailable` unless the database
        answers within its deadline (for readiness)."""
        async with self._db.transaction(write=False) as tx:
            await tx.fetchone("SELECT 1")

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def rotate_encryption(self, new_keyring: Keyring, *, batch_size: int = 200) -> int:
        """Re-seal every value not yet under ``new_keyring``'s current key; returns how many.

        ``new_keyring`` must still hold the old keys so the values can be read. From now on
        this storage seals and opens with ``new_keyring``. Values that cannot be decrypted
        are left as they are and reported with
        :class:`~gateway.storage.errors.RotationIncomplete` at the end.
        """
        self._keyring = new_keyring
        return await rotation.rotate(self._db, _SEALED_COLUMNS, new_keyring, batch_size=batch_size)


async def open_storage(settings: Settings, *, clock: Callable[[], float] = time.time) -> Storage:
    """Connect to the configured database, apply pending migrations and return the storage.

    Raises :class:`~gateway.storage.errors.StorageUnavailable` if the database cannot be
    reached or opened.
    """
    keyring = Keyring.from_texts(settings.secrets.encryption_keys)
    config = settings.storage
    database: Database
    if config.type == "postgres":
        assert config.postgres is not None  # guaranteed by StorageSettings validation
        database = await PostgresDatabase.open(config.postgres)
    else:
        database = await SqliteDatabase.open(config.sqlite.path)
    try:
        await apply_migrations(database)
    except BaseException:
        await database.close()
        raise
    return Storage(database, keyring, clock=clock)
