"""Upstream secrets by name (the credentials an API host sends on to its upstream), sealed.

Each value is sealed with the keyring, bound to its name; only ciphertext and the key id are
stored. :class:`gateway.credentials.upstream.UpstreamCredentials` reads them through its
``SecretSource`` port, which this repository fits.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.security.crypto import Keyring
from gateway.storage.database import Database
from gateway.storage.rotation import SealedColumn

__all__ = ["UPSTREAM_SECRET", "SecretRepository"]

UPSTREAM_SECRET = SealedColumn(
    "secret",
    b"secret:",
    "SELECT name, value FROM secrets WHERE name > ? AND key_id <> ? ORDER BY name LIMIT ?",
    "UPDATE secrets SET value = ?, key_id = ? WHERE name = ? AND value = ?",
)


class SecretRepository:
    """Named secrets, sealed under the keyring's current key."""

    def __init__(
        self,
        database: Database,
        keyring: Callable[[], Keyring],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = database
        self._keyring = keyring
        self._clock = clock

    async def put_secret(self, name: str, value: str) -> None:
        """Store (or replace) a named secret, sealed under the current key."""
        if not name:
            raise ValueError("a secret needs a name")
        keyring = self._keyring()
        sealed = keyring.seal(value.encode(), context=UPSTREAM_SECRET.context(name))
        async with self._db.transaction(write=True) as tx:
            await tx.execute(
                "INSERT INTO secrets (name, value, key_id, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                "key_id = excluded.key_id, updated_at = excluded.updated_at",
                (name, sealed, keyring.current_key_id, self._clock()),
            )

    async def get_secret(self, name: str) -> str | None:
        """The secret's value, or None.

        Raises :class:`~gateway.security.crypto.DecryptionError` if the stored value was sealed
        under a key that is no longer configured, or was altered.
        """
        async with self._db.transaction(write=False) as tx:
            row = await tx.fetchone("SELECT value FROM secrets WHERE name = ?", (name,))
        if row is None:
            return None
        opened = self._keyring().open(bytes(row[0]), context=UPSTREAM_SECRET.context(name))
        return opened.decode()

    async def delete_secret(self, name: str) -> bool:
        """Forget the secret; True if there was one."""
        async with self._db.transaction(write=True) as tx:
            return await tx.execute("DELETE FROM secrets WHERE name = ?", (name,)) > 0

    async def list_secret_names(self) -> list[str]:
        """The names of every stored secret, sorted (never their values)."""
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetchall("SELECT name FROM secrets ORDER BY name")
        return [str(row[0]) for row in rows]
