"""The audit hash chain: how an entry is hashed, how a chain is checked, and where it is kept.

Each entry commits to the one before it::

    hash = SHA-256(bytes.fromhex(prev_hash) || canonical_json(id, time, event, actor, detail))

so editing, reordering or deleting any entry breaks every link from there on. (Deleting the
newest entries leaves a valid shorter chain: compare the newest hash with one recorded
elsewhere, e.g. in logs, to detect truncation.)

:class:`AuditLog` keeps the chain in the ``audit_log`` table; replicas append in turn under
one database lock, so the chain never forks.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping

from gateway.storage.database import Database, Row
from gateway.storage.records import AuditEntry, AuditVerification

__all__ = ["GENESIS_HASH", "AuditLog", "ChainChecker", "canonical_detail", "link"]

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first entry."""

_SELECT = "SELECT id, time, event, actor, detail, prev_hash, hash FROM audit_log"
_BATCH = 1000

# Detail keys that name a secret value; refused so one is never written by mistake.
_SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "private_key",
        "seed",
        "totp_secret",
        "recovery_code",
    }
)


def canonical_detail(detail: Mapping[str, str]) -> str:
    """The stored form of ``detail``: compact JSON with sorted keys."""
    for key, value in detail.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("audit detail keys and values must be text")
        if key.lower() in _SECRET_KEYS:
            raise ValueError(
                f"audit detail {key!r} looks like a secret; audit entries never hold secrets"
            )
    return json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _entry_hash(
    prev_hash: str, entry_id: int, time: float, event: str, actor: str, detail: Mapping[str, str]
) -> str:
    body = json.dumps(
        {"actor": actor, "detail": dict(detail), "event": event, "id": entry_id, "time": time},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(bytes.fromhex(prev_hash) + body.encode()).hexdigest()


def link(
    *, entry_id: int, time: float, event: str, actor: str, detail: Mapping[str, str], prev_hash: str
) -> AuditEntry:
    """The entry that follows one whose hash is ``prev_hash``."""
    frozen = dict(detail)
    digest = _entry_hash(prev_hash, entry_id, time, event, actor, frozen)
    return AuditEntry(entry_id, time, event, actor, frozen, prev_hash, digest)


class ChainChecker:
    """Checks entries fed in id order; remembers the first problem."""

    def __init__(self) -> None:
        self.entries = 0
        self.first_bad_id: int | None = None
        self.reason: str | None = None
        self._previous_id = 0
        self._previous_hash = GENESIS_HASH

    @property
    def ok(self) -> bool:
        return self.first_bad_id is None

    def feed(
        self,
        entry_id: int,
        time: float,
        event: str,
        actor: str,
        detail: str,
        prev_hash: str,
        stored_hash: str,
    ) -> bool:
        """Check one stored row; returns False (and stops accepting) at the first bad one."""
        if not self.ok:
            return False
        self.entries += 1
        reason = self._problem(entry_id, time, event, actor, detail, prev_hash, stored_hash)
        if reason is not None:
            self.first_bad_id, self.reason = entry_id, reason
            return False
        self._previous_id, self._previous_hash = entry_id, stored_hash
        return True

    def _problem(
        self,
        entry_id: int,
        time: float,
        event: str,
        actor: str,
        detail: str,
        prev_hash: str,
        stored_hash: str,
    ) -> str | None:
        if entry_id != self._previous_id + 1:
            return f"entry {self._previous_id + 1} is missing"
        if prev_hash != self._previous_hash:
            return "prev_hash does not match the hash of the previous entry"
        try:
            parsed = json.loads(detail)
        except ValueError:
            return "detail is not valid JSON"
        if not isinstance(parsed, dict):
            return "detail is not a JSON object"
        try:
            expected = _entry_hash(prev_hash, entry_id, time, event, actor, parsed)
        except ValueError:
            return "prev_hash is not a SHA-256 hex digest"
        if expected != stored_hash:
            return "hash does not match the entry's content"
        return None


class AuditLog:
    """The audit chain in the database: append, verify from the start, list the newest."""

    def __init__(self, database: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = database
        self._clock = clock

    async def append_audit(
        self, event: str, actor: str, detail: Mapping[str, str] | None = None
    ) -> AuditEntry:
        """Append an entry to the chain; replicas take turns, so the chain never forks.

        ``detail`` is stored in the clear: never put secrets in it (keys that name one,
        such as ``password`` or ``token``, are refused with ``ValueError``).
        """
        stored_detail = canonical_detail(detail or {})
        async with self._db.transaction(write=True) as tx:
            await tx.lock("audit")
            last = await tx.fetchone("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
            entry = link(
                entry_id=int(last[0]) + 1 if last else 1,
                time=self._clock(),
                event=event,
                actor=actor,
                detail=detail or {},
                prev_hash=str(last[1]) if last else GENESIS_HASH,
            )
            await tx.execute(
                "INSERT INTO audit_log (id, time, event, actor, detail, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (entry.id, entry.time, event, actor, stored_detail, entry.prev_hash, entry.hash),
            )
        return entry

    async def verify_audit(self) -> AuditVerification:
        """Walk the whole chain and report the first entry that does not check out."""
        checker = ChainChecker()
        after = 0
        while checker.ok:
            async with self._db.transaction(write=False) as tx:
                rows = await tx.fetchall(
                    _SELECT + " WHERE id > ? ORDER BY id LIMIT ?",
                    (after, _BATCH),
                )
            for row in rows:
                if not checker.feed(
                    int(row[0]), float(row[1]), row[2], row[3], row[4], row[5], row[6]
                ):
                    break
            if len(rows) < _BATCH:
                break
            after = int(rows[-1][0])
        return AuditVerification(checker.ok, checker.entries, checker.first_bad_id, checker.reason)

    async def list_audit(self, limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` entries, oldest first (like ``tail``)."""
        if limit < 1:
            return []
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetchall(_SELECT + " ORDER BY id DESC LIMIT ?", (limit,))
        return [_entry(row) for row in reversed(rows)]


def _entry(row: Row) -> AuditEntry:
    return AuditEntry(
        id=int(row[0]),
        time=float(row[1]),
        event=row[2],
        actor=row[3],
        detail=json.loads(row[4]),
        prev_hash=row[5],
        hash=row[6],
    )
