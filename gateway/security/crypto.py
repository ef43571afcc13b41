"""The only module that touches keys, nonces and AES-GCM.

Everything else calls :meth:`Keyring.seal` / :meth:`Keyring.open` (bytes) or their text
forms, and :func:`keyed_hash` / :func:`equal` for secrets that are compared, not decrypted.

Sealed format (version 1)::

    0x01 | len(key_id) | key_id (ASCII) | nonce (12 bytes) | AES-256-GCM(ciphertext || tag)

The header is authenticated as associated data together with the caller's ``context``, so a
value sealed for one purpose (say, a TOTP seed of user A) cannot be replayed as another.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import ConfigError, GatewayError

__all__ = [
    "DecryptionError",
    "InvalidKeyError",
    "Key",
    "Keyring",
    "equal",
    "generate_key",
    "keyed_hash",
    "parse_key",
    "random_token",
]

_VERSION = 1
_NONCE_BYTES = 12
_KEY_BYTES = 32


class DecryptionError(GatewayError):
    """A sealed value is damaged, was sealed for another context, or its key is unknown."""


class InvalidKeyError(ConfigError, ValueError):
    """A configured key is not a valid AES-256 key."""


@dataclass(frozen=True, slots=True)
class Key:
    """An AES-256 key and its short public id (derived from the key, so it needs no config)."""

    id: str
    material: bytes

    @classmethod
    def from_material(cls, material: bytes) -> Key:
        if len(material) != _KEY_BYTES:
            raise InvalidKeyError(f"an encryption key must be 32 bytes, got {len(material)}")
        key_id = hashlib.sha256(b"gateway/key-id\x00" + material).hexdigest()[:8]
        return cls(key_id, material)

    def __repr__(self) -> str:  # never print key material
        return f"Key(id={self.id!r})"


def generate_key() -> str:
    """A new random AES-256 key as text (URL-safe base64, 43 characters)."""
    return base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).rstrip(b"=").decode()


def parse_key(text: str) -> Key:
    """Accept a key as URL-safe or standard base64 (32 bytes) or 64 hex digits."""
    value = text.strip()
    candidates: list[bytes] = []
    if len(value) == 2 * _KEY_BYTES:
        with contextlib.suppress(ValueError):
            candidates.append(bytes.fromhex(value))
    padded = value + "=" * (-len(value) % 4)
    for decode in (base64.urlsafe_b64decode, base64.standard_b64decode):
        try:
            candidates.append(decode(padded))
        except (binascii.Error, ValueError):
            continue
    for material in candidates:
        if len(material) == _KEY_BYTES:
            return Key.from_material(material)
    raise InvalidKeyError(
        "an encryption key must be 32 random bytes as base64 or 64 hex digits "
        "(make one with `gateway secret generate`)"
    )


class Keyring:
    """The current key (first) and older keys still accepted for reading."""

    def __init__(self, keys: Sequence[Key]) -> None:
        if not keys:
            raise InvalidKeyError("at least one encryption key is required")
        self._current = keys[0]
        self._ciphers = {key.id: AESGCM(key.material) for key in keys}
        if len(self._ciphers) != len(keys):
            raise InvalidKeyError("the same encryption key is configured twice")
        self._header = bytes([_VERSION, len(self._current.id)]) + self._current.id.encode()

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Keyring:
        return cls([parse_key(text) for text in texts])

    @property
    def current_key_id(self) -> str:
        return self._current.id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def seal(self, plaintext: bytes, *, context: bytes = b"") -> bytes:
        """Encrypt and authenticate ``plaintext`` under the current key with a fresh nonce."""
        nonce = os.urandom(_NONCE_BYTES)
        cipher = self._ciphers[self._current.id]
        return self._header + nonce + cipher.encrypt(nonce, plaintext, self._header + context)

    def open(self, sealed: bytes, *, context: bytes = b"") -> bytes:
        """Decrypt a value from :meth:`seal`; raises :class:`DecryptionError` on any problem."""
        if len(sealed) < 2 or sealed[0] != _VERSION:
            raise DecryptionError("unknown sealed-value format")
        id_length = sealed[1]
        header_end = 2 + id_length
        key_id = sealed[2:header_end].decode("ascii", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise DecryptionError(f"value was sealed with key {key_id!r}, which is not configured")
        nonce = sealed[header_end : header_end + _NONCE_BYTES]
        body = sealed[header_end + _NONCE_BYTES :]
        try:
            return cipher.decrypt(nonce, body, sealed[:header_end] + context)
        except InvalidTag:
            raise DecryptionError("sealed value failed authentication") from None

    def key_id_of(self, sealed: bytes) -> str | None:
        """The id of the key a value was sealed with (for rotation), or None if unreadable."""
        if len(sealed) < 2 or sealed[0] != _VERSION:
            return None
        return sealed[2 : 2 + sealed[1]].decode("ascii", errors="replace")

    def seal_text(self, plaintext: str, *, context: bytes = b"") -> str:
        """:meth:`seal` for text columns: URL-safe base64 without padding."""
        sealed = self.seal(plaintext.encode(), context=context)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open_text(self, sealed: str, *, context: bytes = b"") -> str:
        try:
            raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
        except (binascii.Error, ValueError):
            raise DecryptionError("sealed value is not valid base64") from None
        try:
            return self.open(raw, context=context).decode()
        except UnicodeDecodeError:
            raise DecryptionError("sealed value is not text") from None


@functools.lru_cache(maxsize=64)
def _subkey(secret: bytes, purpose: str) -> bytes:
    return hmac.digest(secret, b"gateway/purpose\x00" + purpose.encode(), "sha256")


def keyed_hash(secret: bytes, value: bytes | str, *, purpose: str) -> bytes:
    """HMAC-SHA256 of ``value`` under a per-purpose subkey of ``secret``."""
    data = value.encode() if isinstance(value, str) else value
    return hmac.digest(_subkey(secret, purpose), data, "sha256")


def equal(a: bytes | str, b: bytes | str) -> bool:
    """Constant-time comparison for secrets (tokens, hashes, codes)."""
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


def random_token(nbytes: int = 32) -> str:
    """A URL-safe random token; 32 bytes (256 bits) by default."""
    return secrets.token_urlsafe(nbytes)
