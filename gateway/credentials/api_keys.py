"""API keys: ``gw_<id>_<secret>``, the compiled :class:`ApiKey` and the storage ports.

* **Format.** ``gw_`` + a 12-character id (lowercase base32, public, the lookup key) + ``_``
  + a secret of at least 32 random bytes in URL-safe base64 (43+ characters). Anything else
  is rejected by one regular expression, before any lookup.
* **Storage.** Only ``keyed_hash(hash_key, secret, purpose="api-key")`` is stored; a
  presented secret is hashed the same way and compared with :func:`~gateway.security.crypto.equal`
  (constant time). After a rotation the previous hash stays valid until
  ``previous_valid_until``.
* **Hot path.** :class:`~gateway.credentials.api_key_verifier.ApiKeyVerifier` checks presented
  keys against cached records.
* **GitOps.** Keys can also be declared by hash in policy files
  (:func:`~gateway.credentials.api_key_declarations.load_static_api_keys`); such keys live
  only in memory.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from gateway.credentials.hosts import HostMatcher
from gateway.credentials.networks import parse_networks
from gateway.errors import Rejected, Unavailable
from gateway.net import AddressSet
from gateway.security.crypto import equal, keyed_hash
from gateway.storage.records import ApiKeyRecord

__all__ = [
    "HASH_PURPOSE",
    "KEY_PREFIX",
    "ApiKey",
    "ApiKeyLookup",
    "ApiKeyRejected",
    "ApiKeyRepository",
    "ApiKeyUnavailable",
    "PresentedKey",
    "generate_api_key",
    "hash_secret",
    "is_valid_key_name",
    "looks_like_api_key",
    "new_key_for",
    "parse_api_key",
]

log = logging.getLogger(__name__)

KEY_PREFIX = "gw_"
HASH_PURPOSE = "api-key"
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_ID_LENGTH = 12
_SECRET_BYTES = 32
_KEY_FORMAT = re.compile(r"gw_([a-z2-7]{12})_([A-Za-z0-9_-]{43,128})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


# --------------------------------------------------------------------------------------------
# The key itself
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PresentedKey:
    """A syntactically valid key as a client sent it."""

    key_id: str
    secret: str = field(repr=False)


def is_valid_key_name(name: str) -> bool:
    """Names: 1-128 of letters, digits, ``.``, ``_``, ``@``, ``-``, starting alphanumeric."""
    return _NAME.fullmatch(name) is not None


def looks_like_api_key(value: str) -> bool:
    """Whether a bearer value is meant as an API key (``gw_`` prefix) rather than a JWT."""
    return value.startswith(KEY_PREFIX)


def parse_api_key(value: str) -> PresentedKey | None:
    """Split ``gw_<id>_<secret>``; None for anything malformed (no lookup is made)."""
    match = _KEY_FORMAT.fullmatch(value)
    if match is None:
        return None
    return PresentedKey(match.group(1), match.group(2))


def generate_api_key() -> tuple[str, str]:
    """A new ``(key_id, full key)``; the key is shown once and never stored."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
    return key_id, new_key_for(key_id)


def new_key_for(key_id: str) -> str:
    """A new full key with a fresh secret for an existing id (rotation keeps the id)."""
    return f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"


def hash_secret(hash_key: bytes, secret_or_key: str) -> bytes:
    """The stored form of a secret; accepts the secret alone or the whole ``gw_...`` key."""
    presented = parse_api_key(secret_or_key)
    secret = presented.secret if presented is not None else secret_or_key
    return keyed_hash(hash_key, secret, purpose=HASH_PURPOSE)


# --------------------------------------------------------------------------------------------
# Compiled keys
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key record with its scopes and networks compiled for per-request checks."""

    key_id: str
    name: str
    owner: str
    secret_hash: bytes = field(repr=False)
    previous_secret_hash: bytes | None = field(default=None, repr=False)
    previous_valid_until: float | None = None
    groups: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    expires_at: float | None = None
    disabled: bool = False
    static: bool = False
    """Declared in a policy file (by hash) rather than stored in the database."""
    scope_matcher: HostMatcher | None = field(default=None, repr=False, compare=False)
    network_set: AddressSet | None = field(default=None, repr=False, compare=False)

    @classmethod
    def compile(
        cls,
        key_id: str,
        name: str,
        owner: str,
        secret_hash: bytes,
        *,
        previous_secret_hash: bytes | None = None,
        previous_valid_until: float | None = None,
        groups: Iterable[str] = (),
        scopes: Iterable[str] = (),
        networks: Iterable[str] = (),
        expires_at: float | None = None,
        disabled: bool = False,
        static: bool = False,
    ) -> ApiKey:
        """Build and compile; raises ValueError / NetworkError for a bad scope or network."""
        scope_list = tuple(scopes)
        network_list = tuple(networks)
        return cls(
            key_id=key_id,
            name=name,
            owner=owner,
            secret_hash=bytes(secret_hash),
            previous_secret_hash=(
                bytes(previous_secret_hash) if previous_secret_hash is not None else None
            ),
            previous_valid_until=previous_valid_until,
            groups=tuple(groups),
            scopes=scope_list,
            networks=network_list,
            expires_at=expires_at,
            disabled=disabled,
            static=static,
            scope_matcher=HostMatcher(scope_list) if scope_list else None,
            network_set=(
                AddressSet(parse_networks(network_list, source=f"API key {name} networks"))
                if network_list
                else None
            ),
        )

    @classmethod
    def from_record(cls, record: ApiKeyRecord) -> ApiKey:
        """Compile a stored record; a record with a broken scope or network allows nothing."""
        try:
            return cls.compile(
                record.key_id,
                record.name,
                record.owner,
                record.secret_hash,
                previous_secret_hash=record.previous_secret_hash,
                previous_valid_until=record.previous_valid_until,
                groups=record.groups,
                scopes=record.scopes,
                networks=record.networks,
                expires_at=record.expires_at,
                disabled=record.disabled,
            )
        except ValueError as error:
            log.error("API key %s is unusable and treated as disabled: %s", record.name, error)
            return cls(record.key_id, record.name, record.owner, record.secret_hash, disabled=True)

    def secret_matches(self, presented_hash: bytes, now: float) -> bool:
        """Constant-time comparison with the current hash, or the previous one in its grace."""
        if equal(presented_hash, self.secret_hash):
            return True
        previous = self.previous_secret_hash
        if previous is None or self.previous_valid_until is None:
            return False
        return now < self.previous_valid_until and equal(presented_hash, previous)

    def allows_host(self, host: str | None) -> bool:
        """Scopes: no scopes = every host (the policy still decides); else a glob must match."""
        if self.scope_matcher is None:
            return True
        return host is not None and self.scope_matcher.matches(host)

    def allows_address(self, address: object) -> bool:
        """The key's own network allowlist (none = any address)."""
        return self.network_set is None or address in self.network_set


# --------------------------------------------------------------------------------------------
# Where records come from
# --------------------------------------------------------------------------------------------


class ApiKeyLookup(Protocol):
    """What the verifier needs from storage: one read by id, and batched last-use writes."""

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None: ...

    async def touch_api_keys(self, last_used: Mapping[str, float]) -> None: ...


class ApiKeyRepository(ApiKeyLookup, Protocol):
    """Everything the ``gateway keys`` command needs (``Storage.api_keys`` fits)."""

    async def create_api_key(self, record: ApiKeyRecord) -> None: ...

    async def get_api_key_by_name(self, name: str) -> ApiKeyRecord | None: ...

    async def list_api_keys(self) -> list[ApiKeyRecord]: ...

    async def update_api_key(self, record: ApiKeyRecord) -> bool: ...

    async def delete_api_key(self, key_id: str) -> bool: ...


class ApiKeyRejected(Rejected):
    """The presented key is not valid; the message is for logs only (the client sees 401)."""


class ApiKeyUnavailable(Unavailable):
    """The key's record cannot be read right now (storage down, nothing cached): answer 503."""
