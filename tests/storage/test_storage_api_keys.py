"""API key records: CRUD, unique id and name, batched last-use updates."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gateway.storage import ApiKeyRecord, RecordExists, Storage

pytestmark = pytest.mark.anyio


def make_key(key_id: str = "k_ci", name: str = "ci-deploy", **changes: Any) -> ApiKeyRecord:
    record = ApiKeyRecord(
        key_id=key_id,
        name=name,
        owner="alice",
        secret_hash=b"\x01" * 32,
        previous_secret_hash=None,
        previous_valid_until=None,
        groups=("deploy", "ci"),
        scopes=("read", "write"),
        networks=("10.0.0.0/8", "2001:db8::/32"),
        expires_at=1_800_000_000.5,
        disabled=False,
        created_at=1_700_000_000.25,
        last_used_at=None,
    )
    return dataclasses.replace(record, **changes)


async def test_create_and_read_back(storage: Storage) -> None:
    key = make_key()
    await storage.api_keys.create_api_key(key)
    assert await storage.api_keys.get_api_key("k_ci") == key
    assert await storage.api_keys.get_api_key_by_name("ci-deploy") == key
    assert await storage.api_keys.get_api_key("k_missing") is None
    assert await storage.api_keys.get_api_key_by_name("missing") is None


async def test_list_is_ordered_by_name(storage: Storage) -> None:
    await storage.api_keys.create_api_key(make_key("k2", "zeta"))
    await storage.api_keys.create_api_key(
        make_key("k1", "alpha", groups=(), scopes=(), networks=())
    )
    assert [key.name for key in await storage.api_keys.list_api_keys()] == ["alpha", "zeta"]
    assert (await storage.api_keys.list_api_keys())[0].groups == ()


async def test_id_and_name_are_unique(storage: Storage) -> None:
    await storage.api_keys.create_api_key(make_key("k1", "one"))
    with pytest.raises(RecordExists, match="'k1'"):
        await storage.api_keys.create_api_key(make_key("k1", "other"))
    with pytest.raises(RecordExists, match="'one'"):
        await storage.api_keys.create_api_key(make_key("k2", "one"))
    assert [key.key_id for key in await storage.api_keys.list_api_keys()] == ["k1"]


async def test_update_rotates_and_disables(storage: Storage) -> None:
    await storage.api_keys.create_api_key(make_key())
    rotated = make_key(
        secret_hash=b"\x02" * 32,
        previous_secret_hash=b"\x01" * 32,
        previous_valid_until=1_700_003_600.0,
        disabled=True,
        scopes=("read",),
    )
    assert await storage.api_keys.update_api_key(rotated) is True
    assert await storage.api_keys.get_api_key("k_ci") == rotated
    assert await storage.api_keys.update_api_key(make_key("k_missing", "nobody")) is False
    assert await storage.api_keys.get_api_key("k_missing") is None


async def test_update_cannot_take_another_keys_name(storage: Storage) -> None:
    await storage.api_keys.create_api_key(make_key("k1", "one"))
    await storage.api_keys.create_api_key(make_key("k2", "two"))
    with pytest.raises(RecordExists, match="'one'"):
        await storage.api_keys.update_api_key(make_key("k2", "one"))
    assert (await storage.api_keys.get_api_key("k2")) == make_key("k2", "two")


async def test_delete(storage: Storage) -> None:
    await storage.api_keys.create_api_key(make_key())
    assert await storage.api_keys.delete_api_key("k_ci") is True
    assert await storage.api_keys.delete_api_key("k_ci") is False
    assert await storage.api_keys.list_api_keys() == []


async def test_touch_records_last_use_in_one_batch(storage: Storage) -> None:
    await storage.api_keys.create_api_key(make_key("k1", "one"))
    await storage.api_keys.create_api_key(make_key("k2", "two"))
    await storage.api_keys.create_api_key(make_key("k3", "three"))
    await storage.api_keys.touch_api_keys(
        {"k1": 1_700_000_100.0, "k2": 1_700_000_200.0, "gone": 5.0}
    )
    used = {key.key_id: key.last_used_at for key in await storage.api_keys.list_api_keys()}
    assert used == {"k1": 1_700_000_100.0, "k2": 1_700_000_200.0, "k3": None}


async def test_touch_never_moves_last_use_backwards(storage: Storage) -> None:
    await storage.api_keys.create_api_key(make_key())
    await storage.api_keys.touch_api_keys({"k_ci": 1_700_000_500.0})
    await storage.api_keys.touch_api_keys(
        {"k_ci": 1_700_000_400.0}
    )  # a slower replica flushing late
    await storage.api_keys.touch_api_keys({})
    key = await storage.api_keys.get_api_key("k_ci")
    assert key is not None and key.last_used_at == 1_700_000_500.0
