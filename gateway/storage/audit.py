"""The audit hash chain: how an entry is hashed and how a chain is checked.

Each entry commits to the one before it::

    hash = SHA-256(bytes.fromhex(prev_hash) || canonical_json(id, time, event, actor, detail))

so editing, reordering or deleting any entry breaks every link from there on. (Deleting the
newest entries leaves a valid shorter chain: compare the newest hash with one recorded
elsewhere, e.g. in logs, to detect truncation.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from gateway.storage.records import AuditEntry

__all__ = ["GENESIS_HASH", "ChainChecker", "canonical_detail", "link"]

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first entry."""

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
