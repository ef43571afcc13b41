"""TOTP enrolments: sealed at rest, bound to their user, replay markers shared by replicas."""

from __future__ import annotations

import asyncio

import pytest

from gateway.security.crypto import DecryptionError, Keyring
from gateway.storage import Storage, open_storage
from tests.storage.support import NEW_KEY, OLD_KEY, Backend
from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio

SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


async def test_round_trip(storage: Storage) -> None:
    saved = await storage.second_factor.save_totp(
        "alice", SEED, algorithm="SHA256", digits=8, period=60
    )
    record = await storage.second_factor.get_totp("alice")
    assert record == saved
    assert (record.username, record.secret, record.algorithm) == ("alice", SEED, "SHA256")
    assert (record.digits, record.period) == (8, 60)
    assert await storage.second_factor.get_totp("bob") is None


async def test_saving_again_replaces_the_enrolment(storage: Storage) -> None:
    await storage.second_factor.save_totp("alice", SEED)
    await storage.second_factor.save_totp("alice", "GEZDGNBVGY3TQOJQ")
    record = await storage.second_factor.get_totp("alice")
    assert record is not None and record.secret == "GEZDGNBVGY3TQOJQ"


async def test_replicas_enrolling_the_same_user_at_once_leave_one_enrolment(
    storage: Storage, second_storage: Storage
) -> None:
    seeds = [f"SEED{n:02d}AAAAAAAAAAAA" for n in range(10)]
    replicas = (storage, second_storage)
    await asyncio.gather(
        *(replicas[n % 2].second_factor.save_totp("alice", seed) for n, seed in enumerate(seeds))
    )
    record = await storage.second_factor.get_totp("alice")
    assert record is not None and record.secret in seeds


async def test_delete(storage: Storage) -> None:
    await storage.second_factor.save_totp("alice", SEED)
    assert await storage.second_factor.delete_totp("alice") is True
    assert await storage.second_factor.get_totp("alice") is None
    assert await storage.second_factor.delete_totp("alice") is False


async def test_database_holds_only_ciphertext_and_key_id(
    storage: Storage, backend: Backend
) -> None:
    await storage.second_factor.save_totp("alice", SEED)
    [(sealed, key_id)] = backend.query("SELECT secret, key_id FROM totp WHERE username = 'alice'")
    sealed = bytes(sealed)
    assert SEED.encode() not in sealed
    assert SEED.lower().encode() not in sealed.lower()
    assert key_id == Keyring.from_texts([OLD_KEY]).current_key_id
    assert storage.keyring.key_id_of(sealed) == key_id


async def test_a_seed_copied_to_another_user_does_not_open(
    storage: Storage, backend: Backend
) -> None:
    await storage.second_factor.save_totp("alice", SEED)
    await storage.second_factor.save_totp("mallory", "GEZDGNBVGY3TQOJQ")
    backend.execute(
        "UPDATE totp SET secret = (SELECT secret FROM totp WHERE username = 'alice') "
        "WHERE username = 'mallory'"
    )
    with pytest.raises(DecryptionError):
        await storage.second_factor.get_totp("mallory")


async def test_a_tampered_seed_does_not_open(storage: Storage, backend: Backend) -> None:
    await storage.second_factor.save_totp("alice", SEED)
    [(sealed,)] = backend.query("SELECT secret FROM totp WHERE username = 'alice'")
    tampered = bytearray(sealed)
    tampered[-1] ^= 0x01
    backend.execute("UPDATE totp SET secret = ? WHERE username = 'alice'", (bytes(tampered),))
    with pytest.raises(DecryptionError, match="failed authentication"):
        await storage.second_factor.get_totp("alice")


async def test_a_seed_under_an_unconfigured_key_names_the_key(
    storage: Storage, backend: Backend
) -> None:
    await storage.second_factor.save_totp("alice", SEED)
    async with await open_storage(backend.settings([NEW_KEY])) as other:
        with pytest.raises(DecryptionError, match="not configured"):
            await other.second_factor.get_totp("alice")


# -------------------------------------------------------------------------------------------
# Used codes (replay protection)


async def test_a_code_step_is_accepted_once_per_user(storage: Storage) -> None:
    assert await storage.second_factor.mark_totp_used("alice", 1000, keep_for=90) is True
    assert await storage.second_factor.mark_totp_used("alice", 1000, keep_for=90) is False
    assert await storage.second_factor.mark_totp_used("alice", 1001, keep_for=90) is True
    assert await storage.second_factor.mark_totp_used("bob", 1000, keep_for=90) is True


async def test_concurrent_use_of_one_code_on_two_replicas_succeeds_once(
    storage: Storage, second_storage: Storage
) -> None:
    replicas = (storage, second_storage)
    results = await asyncio.gather(
        *(
            replicas[n % 2].second_factor.mark_totp_used("alice", 4242, keep_for=90)
            for n in range(20)
        )
    )
    assert results.count(True) == 1


async def test_expired_markers_are_pruned(backend: Backend, clock: FakeClock) -> None:
    async with await open_storage(backend.settings(), clock=clock) as storage:
        assert await storage.second_factor.mark_totp_used("alice", 1, keep_for=90)
        clock.advance(91)
        assert await storage.second_factor.mark_totp_used("bob", 4, keep_for=90)
    rows = backend.query("SELECT username, step FROM totp_used")
    assert rows == [("bob", 4)]


# -------------------------------------------------------------------------------------------
# Recovery codes


async def test_recovery_codes_are_one_time(storage: Storage) -> None:
    codes = [bytes([n]) * 32 for n in range(1, 11)]
    await storage.second_factor.set_recovery_codes("alice", codes)
    assert await storage.second_factor.count_recovery_codes("alice") == 10
    assert await storage.second_factor.use_recovery_code("alice", codes[3]) is True
    assert await storage.second_factor.use_recovery_code("alice", codes[3]) is False
    assert await storage.second_factor.use_recovery_code("alice", b"\xff" * 32) is False
    assert await storage.second_factor.use_recovery_code("bob", codes[4]) is False
    assert await storage.second_factor.count_recovery_codes("alice") == 9


async def test_setting_recovery_codes_replaces_the_old_ones(storage: Storage) -> None:
    await storage.second_factor.set_recovery_codes("alice", [b"a" * 32, b"b" * 32])
    await storage.second_factor.set_recovery_codes("bob", [b"a" * 32])
    await storage.second_factor.set_recovery_codes("alice", [b"c" * 32])
    assert await storage.second_factor.use_recovery_code("alice", b"a" * 32) is False
    assert await storage.second_factor.use_recovery_code("alice", b"c" * 32) is True
    assert await storage.second_factor.count_recovery_codes("alice") == 0
    assert await storage.second_factor.count_recovery_codes("bob") == 1


async def test_one_recovery_code_used_concurrently_on_two_replicas_works_once(
    storage: Storage, second_storage: Storage
) -> None:
    await storage.second_factor.set_recovery_codes("alice", [b"x" * 32])
    replicas = (storage, second_storage)
    results = await asyncio.gather(
        *(replicas[n % 2].second_factor.use_recovery_code("alice", b"x" * 32) for n in range(10))
    )
    assert results.count(True) == 1


async def test_replacing_recovery_codes_at_once_on_two_replicas_keeps_one_set(
    storage: Storage, second_storage: Storage
) -> None:
    first = [bytes([1, n]) * 16 for n in range(10)]
    second = [bytes([2, n]) * 16 for n in range(10)]
    await asyncio.gather(
        storage.second_factor.set_recovery_codes("alice", first),
        second_storage.second_factor.set_recovery_codes("alice", second),
    )
    assert await storage.second_factor.count_recovery_codes("alice") == 10
    kept = first if await storage.second_factor.use_recovery_code("alice", first[0]) else second
    assert all([await storage.second_factor.use_recovery_code("alice", code) for code in kept[1:]])
