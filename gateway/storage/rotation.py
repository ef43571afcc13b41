"""Key rotation: re-seal every sealed value that is not yet under the current key.

Each repository that seals values (TOTP seeds, upstream secrets) declares its column as a
:class:`SealedColumn`: the context that binds a value to its owner, and the two statements
rotation needs. :func:`rotate` walks each column in key order, in batches, one transaction per
batch, and rewrites a value only if nobody changed it meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.security.crypto import DecryptionError, Keyring
from gateway.storage.database import Database, Transaction
from gateway.storage.errors import RotationIncomplete

__all__ = ["SealedColumn", "rotate"]

_log = logging.getLogger("gateway.storage")


@dataclass(frozen=True, slots=True)
class SealedColumn:
    """A column of sealed values: how to find the ones under an old key and rewrite one."""

    label: str
    context_prefix: bytes
    select_stale: str
    """Rows after a key, not under the current key id, in key order: (key, sealed)."""
    replace: str
    """Compare-and-set one value: (new sealed, new key id, key, old sealed)."""

    def context(self, key: str) -> bytes:
        """The sealing context of the value stored under ``key`` (its owner or name)."""
        return self.context_prefix + key.encode()


async def rotate(
    database: Database, columns: Sequence[SealedColumn], keyring: Keyring, *, batch_size: int
) -> int:
    """Re-seal every value of ``columns`` not yet under ``keyring``'s current key; returns
    how many. Values that cannot be decrypted are left as they are and reported with
    :class:`RotationIncomplete` at the end."""
    changed = 0
    failed: list[str] = []
    for column in columns:
        column_changed, column_failed = await _rotate_column(database, column, keyring, batch_size)
        changed += column_changed
        failed += column_failed
    _log.info("storage: re-encrypted %d value(s) under key %s", changed, keyring.current_key_id)
    if failed:
        raise RotationIncomplete(changed, failed)
    return changed


async def _rotate_column(
    database: Database, column: SealedColumn, keyring: Keyring, batch_size: int
) -> tuple[int, list[str]]:
    current = keyring.current_key_id
    changed = 0
    failed: list[str] = []
    after = ""
    while True:
        async with database.transaction(write=True) as tx:
            rows = await tx.fetchall(column.select_stale, (after, current, batch_size))
            for key, sealed in rows:
                changed_one = await _reseal(tx, column, keyring, str(key), bytes(sealed))
                if changed_one is None:
                    failed.append(f"{column.label}:{key}")
                else:
                    changed += changed_one
        if len(rows) < batch_size:
            return changed, failed
        after = str(rows[-1][0])


async def _reseal(
    tx: Transaction, column: SealedColumn, keyring: Keyring, key: str, sealed: bytes
) -> int | None:
    """Re-seal one value; 1 if rewritten, 0 if it changed meanwhile, None if unreadable."""
    context = column.context(key)
    try:
        plaintext = keyring.open(sealed, context=context)
    except DecryptionError:
        return None
    # Compare-and-set: a replica that rewrote the value meanwhile wins.
    return await tx.execute(
        column.replace,
        (keyring.seal(plaintext, context=context), keyring.current_key_id, key, sealed),
    )
