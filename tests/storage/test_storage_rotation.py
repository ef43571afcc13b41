"""Key rotation: old keys keep reading, rotate re-seals, then the old key can go."""

from __future__ import annotations

import pytest

from gateway.security.crypto import DecryptionError, Keyring, generate_key
from gateway.storage import RotationIncomplete, open_storage
from tests.storage.support import NEW_KEY, OLD_KEY, Backend

pytestmark = pytest.mark.anyio

OLD_ID = Keyring.from_texts([OLD_KEY]).current_key_id
NEW_ID = Keyring.from_texts([NEW_KEY]).current_key_id


def stored_key_ids(backend: Backend) -> list[str]:
    rows = backend.query("SELECT key_id FROM totp UNION ALL SELECT key_id FROM secrets")
    return sorted(row[0] for row in rows)


async def test_full_rotation(backend: Backend) -> None:
    async with await open_storage(backend.settings([OLD_KEY])) as storage:
        await storage.second_factor.save_totp("alice", "JBSWY3DPEHPK3PXP")
        await storage.second_factor.save_totp("bob", "GEZDGNBVGY3TQOJQ")
        await storage.secrets.put_secret("grafana", "token-1")
    # Step 1: the new key goes first, the old one stays: everything still reads.
    async with await open_storage(backend.settings([NEW_KEY, OLD_KEY])) as storage:
        alice = await storage.second_factor.get_totp("alice")
        assert alice is not None and alice.secret == "JBSWY3DPEHPK3PXP"
        await storage.second_factor.save_totp(
            "carol", "MFRGGZDFMZTWQ2LK"
        )  # new writes use the new key
        assert stored_key_ids(backend) == sorted([OLD_ID, OLD_ID, OLD_ID, NEW_ID])
        # Step 2: rotate; carol is already under the new key and is skipped.
        assert await storage.rotate_encryption(storage.keyring) == 3
        assert stored_key_ids(backend) == [NEW_ID] * 4
        assert await storage.rotate_encryption(storage.keyring) == 0
    # Step 3: the old key is removed; everything still reads.
    async with await open_storage(backend.settings([NEW_KEY])) as storage:
        for username, seed in (
            ("alice", "JBSWY3DPEHPK3PXP"),
            ("bob", "GEZDGNBVGY3TQOJQ"),
            ("carol", "MFRGGZDFMZTWQ2LK"),
        ):
            record = await storage.second_factor.get_totp(username)
            assert record is not None and record.secret == seed
        assert await storage.secrets.get_secret("grafana") == "token-1"


async def test_rotation_in_small_batches_reaches_every_value(backend: Backend) -> None:
    async with await open_storage(backend.settings([OLD_KEY])) as storage:
        for n in range(7):
            await storage.second_factor.save_totp(f"user{n}", f"SEED{n}")
            await storage.secrets.put_secret(f"secret{n}", f"value{n}")
    async with await open_storage(backend.settings([NEW_KEY, OLD_KEY])) as storage:
        assert await storage.rotate_encryption(storage.keyring, batch_size=2) == 14
    assert stored_key_ids(backend) == [NEW_ID] * 14
    async with await open_storage(backend.settings([NEW_KEY])) as storage:
        records = [await storage.second_factor.get_totp(f"user{n}") for n in range(7)]
        secrets = [await storage.secrets.get_secret(f"secret{n}") for n in range(7)]
    assert [record.secret if record else None for record in records] == [
        f"SEED{n}" for n in range(7)
    ]
    assert secrets == [f"value{n}" for n in range(7)]


async def test_values_under_a_missing_key_are_reported_and_kept(backend: Backend) -> None:
    lost_key = generate_key()
    async with await open_storage(backend.settings([lost_key])) as storage:
        await storage.second_factor.save_totp("dave", "JBSWY3DPEHPK3PXP")
    async with await open_storage(backend.settings([OLD_KEY])) as storage:
        await storage.second_factor.save_totp("alice", "GEZDGNBVGY3TQOJQ")
    async with await open_storage(backend.settings([NEW_KEY, OLD_KEY])) as storage:
        with pytest.raises(RotationIncomplete) as raised:
            await storage.rotate_encryption(storage.keyring)
        assert raised.value.changed == 1
        assert raised.value.failed == ("totp:dave",)
        record = await storage.second_factor.get_totp("alice")
        assert record is not None and record.secret == "GEZDGNBVGY3TQOJQ"
        with pytest.raises(DecryptionError):
            await storage.second_factor.get_totp("dave")
    # Adding the lost key back lets a second run finish the job.
    async with await open_storage(backend.settings([NEW_KEY, OLD_KEY, lost_key])) as storage:
        assert await storage.rotate_encryption(storage.keyring) == 1
    assert stored_key_ids(backend) == [NEW_ID, NEW_ID]
