"""The storage API: every persistent record, over either database driver.

Sealed values never leave this module in the clear towards the database: TOTP seeds and
upstream secrets are sealed with the :class:`~gateway.security.crypto.Keyring` (the context
binds each to its owner and purpose), and only ciphertext plus the key id are stored.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from gateway.config.settings import Settings
from gateway.security.crypto import DecryptionError, Keyring
from gateway.storage import audit
from gateway.storage.database import Database, Dialect, Param, Row, Transaction
from gateway.storage.errors import RecordExists, RotationIncomplete
from gateway.storage.migrations import apply_migrations
from gateway.storage.postgres import PostgresDatabase
from gateway.storage.records import (
    ApiKeyRecord,
    AuditEntry,
    AuditVerification,
    TotpRecord,
)
from gateway.storage.sqlite import SqliteDatabase

__all__ = ["Storage", "open_storage"]

_log = logging.getLogger("gateway.storage")

_SELECT_API_KEYS = (
    "SELECT key_id, name, owner, secret_hash, previous_secret_hash, previous_valid_until, "
    "groups_json, scopes_json, networks_json, expires_at, disabled, created_at, last_used_at "
    "FROM api_keys"
)
_SELECT_AUDIT = "SELECT id, time, event, actor, detail, prev_hash, hash FROM audit_log"
_AUDIT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class _SealedColumn:
    """A column of sealed values: how to find the ones under an old key and rewrite one."""

    label: str
    context_prefix: bytes
    select_stale: str
    """Rows after a key, not under the current key id, in key order: (key, sealed)."""
    replace: str
    """Compare-and-set one value: (new sealed, new key id, key, old sealed)."""

    def context(self, key: str) -> bytes:
        return self.context_prefix + key.encode()


_TOTP_SEED = _SealedColumn(
    "totp",
    b"totp:",
    "SELECT username, secret FROM totp WHERE username > ? AND key_id <> ? "
    "ORDER BY username LIMIT ?",
    "UPDATE totp SET secret = ?, key_id = ? WHERE username = ? AND secret = ?",
)
_UPSTREAM_SECRET = _SealedColumn(
    "secret",
    b"secret:",
    "SELECT name, value FROM secrets WHERE name > ? AND key_id <> ? ORDER BY name LIMIT ?",
    "UPDATE secrets SET value = ?, key_id = ? WHERE name = ? AND value = ?",
)
_SEALED_COLUMNS = (_TOTP_SEED, _UPSTREAM_SECRET)


class Storage:
    """Persistent records on SQLite or PostgreSQL; create with :func:`open_storage`."""

    def __init__(
        self, database: Database, keyring: Keyring, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = database
        self._keyring = keyring
        self._clock = clock

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

    # ----------------------------------------------------------------------------------------
    # TOTP
    # ----------------------------------------------------------------------------------------

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
        sealed = self._keyring.seal(secret.encode(), context=_TOTP_SEED.context(username))
        now = self._clock()
        async with self._db.transaction(write=True) as tx:
            await tx.execute(
                "INSERT INTO totp (username, secret, key_id, algorithm, digits, period, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (username) DO UPDATE SET secret = excluded.secret, "
                "key_id = excluded.key_id, algorithm = excluded.algorithm, "
                "digits = excluded.digits, period = excluded.period, "
                "created_at = excluded.created_at",
                (username, sealed, self._keyring.current_key_id, algorithm, digits, period, now),
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
        secret = self._keyring.open(bytes(row[0]), context=_TOTP_SEED.context(username))
        return TotpRecord(username, secret.decode(), row[1], int(row[2]), int(row[3]), row[4])

    async def delete_totp(self, username: str) -> bool:
        """Forget the user's TOTP enrolment; True if there was one."""
        async with self._db.transaction(write=True) as tx:
            return await tx.execute("DELETE FROM totp WHERE username = ?", (username,)) > 0

    # ----------------------------------------------------------------------------------------
    # Recovery codes (stored as keyed hashes made by the caller)
    # ----------------------------------------------------------------------------------------

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
        async with self._db.transaction(write=False) as tx:
            row = await tx.fetchone(
                "SELECT COUNT(*) FROM recovery_codes WHERE username = ?", (username,)
            )
        return int(row[0]) if row else 0

    # ----------------------------------------------------------------------------------------
    # Used TOTP codes (replay protection shared by every replica)
    # ----------------------------------------------------------------------------------------

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

    # ----------------------------------------------------------------------------------------
    # API keys
    # ----------------------------------------------------------------------------------------

    async def create_api_key(self, record: ApiKeyRecord) -> None:
        """Store a new key; raises :class:`RecordExists` if its id or name is taken."""
        try:
            async with self._db.transaction(write=True) as tx:
                await tx.execute(
                    "INSERT INTO api_keys (key_id, name, owner, secret_hash, previous_secret_hash, "
                    "previous_valid_until, groups_json, scopes_json, networks_json, expires_at, "
                    "disabled, created_at, last_used_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _api_key_params(record),
                )
        except RecordExists:
            raise RecordExists(
                f"an API key named {record.name!r} or with id {record.key_id!r} already exists"
            ) from None

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        async with self._db.transaction(write=False) as tx:
            row = await tx.fetchone(_SELECT_API_KEYS + " WHERE key_id = ?", (key_id,))
        return _api_key(row) if row else None

    async def get_api_key_by_name(self, name: str) -> ApiKeyRecord | None:
        async with self._db.transaction(write=False) as tx:
            row = await tx.fetchone(_SELECT_API_KEYS + " WHERE name = ?", (name,))
        return _api_key(row) if row else None

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        """Every API key, by name."""
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetchall(_SELECT_API_KEYS + " ORDER BY name")
        return [_api_key(row) for row in rows]

    async def update_api_key(self, record: ApiKeyRecord) -> bool:
        """Overwrite the key with ``record.key_id``; False if there is none.

        Raises :class:`RecordExists` if ``record.name`` belongs to another key.
        """
        params = _api_key_params(record)
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

    # ----------------------------------------------------------------------------------------
    # Upstream secrets (sealed, by name)
    # ----------------------------------------------------------------------------------------

    async def put_secret(self, name: str, value: str) -> None:
        """Store (or replace) a named secret, sealed under the current key."""
        if not name:
            raise ValueError("a secret needs a name")
        sealed = self._keyring.seal(value.encode(), context=_UPSTREAM_SECRET.context(name))
        async with self._db.transaction(write=True) as tx:
            await tx.execute(
                "INSERT INTO secrets (name, value, key_id, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                "key_id = excluded.key_id, updated_at = excluded.updated_at",
                (name, sealed, self._keyring.current_key_id, self._clock()),
            )

    async def get_secret(self, name: str) -> str | None:
        """The secret's value, or None; raises ``DecryptionError`` like :meth:`get_totp`."""
        async with self._db.transaction(write=False) as tx:
            row = await tx.fetchone("SELECT value FROM secrets WHERE name = ?", (name,))
        if row is None:
            return None
        return self._keyring.open(bytes(row[0]), context=_UPSTREAM_SECRET.context(name)).decode()

    async def delete_secret(self, name: str) -> bool:
        async with self._db.transaction(write=True) as tx:
            return await tx.execute("DELETE FROM secrets WHERE name = ?", (name,)) > 0

    async def list_secret_names(self) -> list[str]:
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetchall("SELECT name FROM secrets ORDER BY name")
        return [str(row[0]) for row in rows]

    # ----------------------------------------------------------------------------------------
    # Audit hash chain
    # ----------------------------------------------------------------------------------------

    async def append_audit(
        self, event: str, actor: str, detail: Mapping[str, str] | None = None
    ) -> AuditEntry:
        """Append an entry to the chain; replicas take turns, so the chain never forks.

        ``detail`` is stored in the clear: never put secrets in it (keys that name one,
        such as ``password`` or ``token``, are refused with ``ValueError``).
        """
        stored_detail = audit.canonical_detail(detail or {})
        async with self._db.transaction(write=True) as tx:
            await tx.lock("audit")
            last = await tx.fetchone("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
            entry = audit.link(
                entry_id=int(last[0]) + 1 if last else 1,
                time=self._clock(),
                event=event,
                actor=actor,
                detail=detail or {},
                prev_hash=str(last[1]) if last else audit.GENESIS_HASH,
            )
            await tx.execute(
                "INSERT INTO audit_log (id, time, event, actor, detail, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (entry.id, entry.time, event, actor, stored_detail, entry.prev_hash, entry.hash),
            )
        return entry

    async def verify_audit(self) -> AuditVerification:
        """Walk the whole chain and report the first entry that does not check out."""
        checker = audit.ChainChecker()
        after = 0
        while checker.ok:
            async with self._db.transaction(write=False) as tx:
                rows = await tx.fetchall(
                    _SELECT_AUDIT + " WHERE id > ? ORDER BY id LIMIT ?",
                    (after, _AUDIT_BATCH),
                )
            for row in rows:
                if not checker.feed(
                    int(row[0]), float(row[1]), row[2], row[3], row[4], row[5], row[6]
                ):
                    break
            if len(rows) < _AUDIT_BATCH:
                break
            after = int(rows[-1][0])
        return AuditVerification(checker.ok, checker.entries, checker.first_bad_id, checker.reason)

    async def list_audit(self, limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` entries, oldest first (like ``tail``)."""
        if limit < 1:
            return []
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetchall(_SELECT_AUDIT + " ORDER BY id DESC LIMIT ?", (limit,))
        return [_audit_entry(row) for row in reversed(rows)]

    # ----------------------------------------------------------------------------------------
    # Key rotation
    # ----------------------------------------------------------------------------------------

    async def rotate_encryption(self, new_keyring: Keyring, *, batch_size: int = 200) -> int:
        """Re-seal every value not yet under ``new_keyring``'s current key; returns how many.

        ``new_keyring`` must still hold the old keys so the values can be read. From now on
        this storage seals and opens with ``new_keyring``. Values that cannot be decrypted
        are left as they are and reported with :class:`RotationIncomplete` at the end.
        """
        self._keyring = new_keyring
        changed = 0
        failed: list[str] = []
        for column in _SEALED_COLUMNS:
            column_changed, column_failed = await self._rotate_column(
                column, new_keyring, batch_size
            )
            changed += column_changed
            failed += column_failed
        _log.info(
            "storage: re-encrypted %d value(s) under key %s", changed, new_keyring.current_key_id
        )
        if failed:
            raise RotationIncomplete(changed, failed)
        return changed

    async def _rotate_column(
        self, column: _SealedColumn, keyring: Keyring, batch_size: int
    ) -> tuple[int, list[str]]:
        current = keyring.current_key_id
        changed = 0
        failed: list[str] = []
        after = ""
        while True:
            async with self._db.transaction(write=True) as tx:
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
    tx: Transaction, column: _SealedColumn, keyring: Keyring, key: str, sealed: bytes
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


def _api_key_params(record: ApiKeyRecord) -> tuple[Param, ...]:
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


def _api_key(row: Row) -> ApiKeyRecord:
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


def _audit_entry(row: Row) -> AuditEntry:
    return AuditEntry(
        id=int(row[0]),
        time=float(row[1]),
        event=row[2],
        actor=row[3],
        detail=json.loads(row[4]),
        prev_hash=row[5],
        hash=row[6],
    )


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
