"""A user's second factor: the TOTP seed, the time steps already used, the recovery codes.

One repository for the three, since they change together (enrolling sets the seed, marks the
confirming code used and issues codes; a reset removes seed and codes) and
:class:`gateway.identity.second_factor.SecondFactor` uses them as one store. The seed is
sealed with the keyring, bound to its user; recovery codes arrive as keyed hashes made by
the caller, so neither is ever stored in the clear.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from gateway.security.crypto import Keyring
from gateway.storage.database import Database
from gateway.storage.records import TotpRecord
from gateway.storage.rotation import SealedColumn

__all__ = ["TOTP_SEED", "SecondFactorRepository"]

TOTP_SEED = SealedColumn(
    "totp",
    b"totp:",
    "SELECT username, secret FROM totp WHERE username > ? AND key_id <> ? "
    "ORDER BY username LIMIT ?",
    "UPDATE totp SET secret = ?, key_id = ? WHERE username = ? AND secret = ?",
)


class SecondFactorRepository:
    """TOTP enrolments, used TOTP steps and recovery codes, per user."""

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

    # -- TOTP seeds ----------------------------------------------------------------------

    async def save_totp(
        self,
        username: str,
        secret: str,
        *,
        algorithm: str = "SHA1",
        digits: int = 6,
        period: int = 30,
    ) -> TotpRecord:
        """Store (or replace) ``username``'s TOTP seed, sealed under the current key."""
        if not username:
            raise ValueError("a TOTP enrolment needs a username")
        keyring = self._keyring()
        sealed = keyring.seal(secret.encode(), context=TOTP_SEED.context(username))
        now = self._clock()
        async with self._db.transaction(write=True) as tx:
            await tx.execute(
                "INSERT INTO totp (username, secret, key_id, algorithm, digits, period, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (username) DO UPDATE SET secret = excluded.secret, "
                "key_id = excluded.key_id, algorithm = excluded.algorithm, "
                "digits = excluded.digits, period = excluded.period, "
                "created_at = excluded.created_at",
                (username, sealed, keyring.current_key_id, algorithm, digits, period, now),
            )
        return TotpRecord(username, secret, algorithm, digits, period, now)

    async def get_totp(self, username: str) -> TotpRecord | None:
        """The user's enrolment, or None.

        Raises :class:`~gateway.security.crypto.DecryptionError` if the stored seed was sealed
        under a key that is no longer configured, or was altered.
        """
        async with self._db.transaction(write=False) as tx:
            row = await tx.fetchone(
                "SELECT secret, algorithm, digits, period, created_at FROM totp WHERE username = ?",
                (username,),
            )
        if row is None:
            return None
        secret = self._keyring().open(bytes(row[0]), context=TOTP_SEED.context(username))
        return TotpRecord(username, secret.decode(), row[1], int(row[2]), int(row[3]), row[4])

    async def delete_totp(self, username: str) -> bool:
        """Forget the user's TOTP enrolment; True if there was one."""
        async with self._db.transaction(write=True) as tx:
            return await tx.execute("DELETE FROM totp WHERE username = ?", (username,)) > 0

    # -- used TOTP codes (replay protection shared by every replica) ----------------------

    async def mark_totp_used(self, username: str, step: int, *, keep_for: float) -> bool:
        """Record that ``username`` used the code of time step ``step``.

        True the first time, False if that step was already used (atomic across processes).
        ``keep_for`` seconds must cover the whole window in which the code would be accepted.
        """
        now = self._clock()
        async with self._db.transaction(write=True) as tx:
            await tx.execute("DELETE FROM totp_used WHERE expires_at < ?", (now,))
            inserted = await tx.execute(
                "INSERT INTO totp_used (username, step, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (username, step, now + keep_for),
            )
        return inserted == 1

    # -- recovery codes (keyed hashes made by the caller) --------------------------------

    async def set_recovery_codes(self, username: str, code_hashes: Sequence[bytes]) -> None:
        """Replace all of the user's recovery codes with ``code_hashes``."""
        async with self._db.transaction(write=True) as tx:
            # Two replacements at once must not leave the union of both sets.
            await tx.lock(f"recovery_codes:{username}")
            await tx.execute("DELETE FROM recovery_codes WHERE username = ?", (username,))
            await tx.executemany(
                "INSERT INTO recovery_codes (username, code_hash) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING",
                [(username, bytes(code_hash)) for code_hash in code_hashes],
            )

    async def use_recovery_code(self, username: str, code_hash: bytes) -> bool:
        """Consume one code: True exactly once per code, even across replicas."""
        async with self._db.transaction(write=True) as tx:
            deleted = await tx.execute(
                "DELETE FROM recovery_codes WHERE username = ? AND code_hash = ?",
                (username, bytes(code_hash)),
            )
        return deleted == 1

    async def count_recovery_codes(self, username: str) -> int:
        """How many unused recovery codes the user has left."""
        async with self._db.transaction(write=False) as tx:
            row = await tx.fetchone(
                "SELECT COUNT(*) FROM recovery_codes WHERE username = ?", (username,)
            )
        return int(row[0]) if row else 0
