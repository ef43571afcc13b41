"""AES-256-GCM sealing, key ids and rotation, keyed hashes."""

from __future__ import annotations

import base64

import pytest

from gateway.security.crypto import (
    DecryptionError,
    InvalidKeyError,
    Keyring,
    equal,
    generate_key,
    keyed_hash,
    parse_key,
)


def test_seal_round_trip_with_context() -> None:
    ring = Keyring.from_texts([generate_key()])
    sealed = ring.seal(b"JBSWY3DPEHPK3PXP", context=b"totp:john")
    assert b"JBSWY3DPEHPK3PXP" not in sealed
    assert ring.open(sealed, context=b"totp:john") == b"JBSWY3DPEHPK3PXP"


def test_same_plaintext_seals_differently_each_time() -> None:
    ring = Keyring.from_texts([generate_key()])
    assert ring.seal(b"x") != ring.seal(b"x")


def test_value_sealed_for_one_context_cannot_be_opened_as_another() -> None:
    ring = Keyring.from_texts([generate_key()])
    sealed = ring.seal(b"seed-of-john", context=b"totp:john")
    with pytest.raises(DecryptionError, match="failed authentication"):
        ring.open(sealed, context=b"totp:mallory")


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_tampering_anywhere_is_detected(position: int) -> None:
    ring = Keyring.from_texts([generate_key()])
    sealed = bytearray(ring.seal(b"secret value"))
    sealed[position] ^= 0x01
    with pytest.raises(DecryptionError):
        ring.open(bytes(sealed))


def test_rotation_old_key_reads_new_key_writes() -> None:
    old, new = generate_key(), generate_key()
    before = Keyring.from_texts([old])
    sealed_old = before.seal(b"value")
    after = Keyring.from_texts([new, old])
    assert after.open(sealed_old) == b"value"
    sealed_new = after.seal(b"value")
    assert after.key_id_of(sealed_new) == after.current_key_id == parse_key(new).id
    assert after.key_id_of(sealed_old) == parse_key(old).id
    with pytest.raises(DecryptionError, match="not configured"):
        before.open(sealed_new)


def test_text_form_round_trip_and_garbage() -> None:
    ring = Keyring.from_texts([generate_key()])
    assert ring.open_text(ring.seal_text("héllo")) == "héllo"
    with pytest.raises(DecryptionError):
        ring.open_text("!!!not base64!!!")


def test_key_formats() -> None:
    raw = bytes(range(32))
    assert parse_key(raw.hex()).material == raw
    assert parse_key(base64.standard_b64encode(raw).decode()).material == raw
    assert parse_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")).material == raw
    assert len(base64.urlsafe_b64decode(generate_key() + "=")) == 32


@pytest.mark.parametrize("text", ["", "short", "a" * 63, base64.b64encode(b"x" * 16).decode()])
def test_bad_keys_are_rejected_with_a_hint(text: str) -> None:
    with pytest.raises(InvalidKeyError, match="gateway secret generate"):
        parse_key(text)


def test_duplicate_and_missing_keys() -> None:
    key = generate_key()
    with pytest.raises(InvalidKeyError, match="twice"):
        Keyring.from_texts([key, key])
    with pytest.raises(InvalidKeyError, match="at least one"):
        Keyring([])


def test_key_repr_never_shows_material() -> None:
    key = parse_key(bytes(range(32)).hex())
    assert bytes(range(32)).hex() not in repr(key)


def test_keyed_hash_is_purpose_bound_and_equal_is_exact() -> None:
    a = keyed_hash(b"k" * 32, "value", purpose="api-key")
    assert a == keyed_hash(b"k" * 32, b"value", purpose="api-key")
    assert a != keyed_hash(b"k" * 32, "value", purpose="csrf")
    assert a != keyed_hash(b"j" * 32, "value", purpose="api-key")
    assert equal(a, a) and not equal(a, a[:-1] + b"\x00")
    assert equal("abc", b"abc") and not equal("abc", "abd")
