"""The audit hash chain: linked entries, detected tampering, no forks between replicas."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from gateway.storage import Storage
from tests.storage.support import Backend

pytestmark = pytest.mark.anyio


async def fill(storage: Storage, count: int) -> None:
    for n in range(1, count + 1):
        await storage.audit.append_audit("login.success", f"user{n}", {"ip": f"192.0.2.{n}"})


async def test_entries_are_linked_by_hash(storage: Storage) -> None:
    first = await storage.audit.append_audit("login.success", "alice", {"ip": "192.0.2.1"})
    second = await storage.audit.append_audit("totp.reset", "admin", {"user": "alice"})
    assert (first.id, second.id) == (1, 2)
    assert first.prev_hash == "0" * 64
    assert second.prev_hash == first.hash
    # The documented formula, recomputed independently.
    body = json.dumps(
        {
            "actor": "admin",
            "detail": {"user": "alice"},
            "event": "totp.reset",
            "id": 2,
            "time": second.time,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    assert second.hash == hashlib.sha256(bytes.fromhex(first.hash) + body.encode()).hexdigest()


async def test_an_intact_chain_verifies(storage: Storage) -> None:
    empty = await storage.audit.verify_audit()
    assert (empty.ok, empty.entries, empty.first_bad_id) == (True, 0, None)
    await fill(storage, 5)
    result = await storage.audit.verify_audit()
    assert (result.ok, result.entries, result.first_bad_id) == (True, 5, None)


async def test_list_returns_the_newest_entries_oldest_first(storage: Storage) -> None:
    await fill(storage, 5)
    entries = await storage.audit.list_audit(3)
    assert [entry.id for entry in entries] == [3, 4, 5]
    assert entries[0].actor == "user3" and entries[0].detail == {"ip": "192.0.2.3"}


async def test_an_edited_entry_is_reported(storage: Storage, backend: Backend) -> None:
    await fill(storage, 5)
    backend.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 3")
    result = await storage.audit.verify_audit()
    assert (result.ok, result.first_bad_id) == (False, 3)
    assert result.reason == "hash does not match the entry's content"


async def test_an_edited_detail_is_reported(storage: Storage, backend: Backend) -> None:
    await fill(storage, 4)
    backend.execute("""UPDATE audit_log SET detail = '{"ip":"203.0.113.9"}' WHERE id = 2""")
    result = await storage.audit.verify_audit()
    assert (result.ok, result.first_bad_id) == (False, 2)


async def test_a_deleted_entry_is_reported(storage: Storage, backend: Backend) -> None:
    await fill(storage, 5)
    backend.execute("DELETE FROM audit_log WHERE id = 2")
    result = await storage.audit.verify_audit()
    assert (result.ok, result.first_bad_id) == (False, 3)
    assert result.reason == "entry 2 is missing"


async def test_a_rewritten_entry_with_a_recomputed_hash_breaks_the_next_link(
    storage: Storage, backend: Backend
) -> None:
    await fill(storage, 3)
    entry = (await storage.audit.list_audit(10))[1]
    forged = json.dumps(
        {
            "actor": "mallory",
            "detail": dict(entry.detail),
            "event": entry.event,
            "id": 2,
            "time": entry.time,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    forged_hash = hashlib.sha256(bytes.fromhex(entry.prev_hash) + forged.encode()).hexdigest()
    backend.execute("UPDATE audit_log SET actor = 'mallory', hash = ? WHERE id = 2", (forged_hash,))
    result = await storage.audit.verify_audit()
    assert (result.ok, result.first_bad_id) == (False, 3)
    assert result.reason == "prev_hash does not match the hash of the previous entry"


async def test_replicas_appending_at_once_keep_one_chain(
    storage: Storage, second_storage: Storage
) -> None:
    replicas = (storage, second_storage)
    await asyncio.gather(
        *(
            replicas[n % 2].audit.append_audit("api_key.used", f"k{n}", {"n": str(n)})
            for n in range(30)
        )
    )
    result = await second_storage.audit.verify_audit()
    assert (result.ok, result.entries) == (True, 30)
    assert sorted(entry.actor for entry in await storage.audit.list_audit(100)) == sorted(
        f"k{n}" for n in range(30)
    )


async def test_details_that_look_like_secrets_are_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="looks like a secret"):
        await storage.audit.append_audit("user.created", "admin", {"password": "hunter2"})
    assert await storage.audit.list_audit(10) == []
