"""The records kept in persistent storage, as plain immutable values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ApiKeyRecord", "AuditEntry", "AuditVerification", "TotpRecord"]


@dataclass(frozen=True, slots=True)
class TotpRecord:
    """A user's TOTP enrolment; ``secret`` is the plaintext base32 seed."""

    username: str
    secret: str = field(repr=False)
    algorithm: str = "SHA1"
    digits: int = 6
    period: int = 30
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A machine credential. Only keyed hashes of its secret are stored, never the secret."""

    key_id: str
    """Public identifier, the non-secret part of the presented key."""
    name: str
    """Unique human-readable name."""
    owner: str
    secret_hash: bytes = field(repr=False)
    previous_secret_hash: bytes | None = field(default=None, repr=False)
    """Hash of the secret before the last rotation, accepted until ``previous_valid_until``."""
    previous_valid_until: float | None = None
    groups: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    expires_at: float | None = None
    disabled: bool = False
    created_at: float = 0.0
    last_used_at: float | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One link of the audit hash chain.

    ``hash = SHA-256(prev_hash || canonical JSON of {id, time, event, actor, detail})``,
    both hashes as lowercase hex; the first entry's ``prev_hash`` is 64 zeros.
    """

    id: int
    time: float
    event: str
    actor: str
    detail: Mapping[str, str]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """The result of walking the audit chain from the first entry to the last."""

    ok: bool
    entries: int
    """How many entries were checked (up to and including the first bad one)."""
    first_bad_id: int | None = None
    reason: str | None = None
