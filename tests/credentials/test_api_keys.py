"""API keys: format, verification from cached records, rotation, static declarations."""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import replace

import pytest

from gateway.credentials import api_key_verifier, api_keys
from gateway.credentials.api_key_declarations import StaticKeyError, load_static_api_keys
from gateway.credentials.api_key_verifier import ApiKeyVerifier, static_key_index
from gateway.credentials.api_keys import (
    ApiKey,
    ApiKeyRejected,
    ApiKeyUnavailable,
    generate_api_key,
    hash_secret,
    new_key_for,
    parse_api_key,
)
from gateway.security.crypto import keyed_hash
from gateway.storage.records import ApiKeyRecord
from tests.credentials.memory_repository import MemoryRepository
from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio

HASH_KEY = b"k" * 40


def make_record(name: str = "ci-runner", **changes: object) -> tuple[ApiKeyRecord, str]:
    key_id, key = generate_api_key()
    record = ApiKeyRecord(
        key_id=key_id,
        name=name,
        owner="platform",
        secret_hash=hash_secret(HASH_KEY, key),
        groups=("ci",),
        created_at=1.0,
    )
    return replace(record, **changes), key  # type: ignore[arg-type]


# -- format -------------------------------------------------------------------------------


def test_generated_keys_have_the_documented_shape() -> None:
    key_id, key = generate_api_key()
    assert len(key_id) == 12
    presented = parse_api_key(key)
    assert presented is not None
    assert presented.key_id == key_id
    assert len(presented.secret) >= 43  # 32 random bytes, URL-safe base64
    assert key.startswith(f"gw_{key_id}_")


def test_stored_hash_is_the_keyed_hash_of_the_secret() -> None:
    _, key = generate_api_key()
    presented = parse_api_key(key)
    assert presented is not None
    expected = keyed_hash(HASH_KEY, presented.secret, purpose="api-key")
    assert hash_secret(HASH_KEY, key) == expected
    assert hash_secret(HASH_KEY, presented.secret) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "gw_",
        "gw_abcdefghijkl",
        "gw_abcdefghijkl_",
        "gw_abcdefghijkl_short",
        "gw_ABCDEFGHIJKL_" + "a" * 43,  # upper-case id
        "gw_abcdefghijk1_" + "a" * 43,  # '1' is not base32
        "gw_abcdefghij_" + "a" * 43,  # id too short
        "xx_abcdefghijkl_" + "a" * 43,
        "gw_abcdefghijkl_" + "a" * 42 + "!",
        "gw_abcdefghijkl_" + "a" * 200,  # too long
        " gw_abcdefghijkl_" + "a" * 43,
    ],
)
def test_malformed_keys_parse_to_none(value: str) -> None:
    assert parse_api_key(value) is None


async def test_malformed_key_is_rejected_without_a_lookup() -> None:
    repository = MemoryRepository()
    verifier = ApiKeyVerifier(HASH_KEY, repository)
    with pytest.raises(ApiKeyRejected, match="malformed"):
        await verifier.verify("gw_nope")
    assert repository.reads == 0


# -- verification -------------------------------------------------------------------------


async def test_valid_key_is_accepted_and_its_record_cached(clock: FakeClock) -> None:
    repository = MemoryRepository()
    record, key = make_record()
    await repository.create_api_key(record)
    verifier = ApiKeyVerifier(HASH_KEY, repository, cache_ttl=5, clock=clock)
    found = await verifier.verify(key)
    assert (found.name, found.owner, found.groups) == ("ci-runner", "platform", ("ci",))
    for _ in range(10):
        await verifier.verify(key)
    assert repository.reads == 1
    clock.advance(6)
    await verifier.verify(key)
    assert repository.reads == 2


async def test_unknown_id_is_rejected_and_negatively_cached(clock: FakeClock) -> None:
    repository = MemoryRepository()
    verifier = ApiKeyVerifier(HASH_KEY, repository, negative_cache_ttl=5, clock=clock)
    _, key = generate_api_key()
    for _ in range(5):
        with pytest.raises(ApiKeyRejected, match="unknown API key id"):
            await verifier.verify(key)
    assert repository.reads == 1


async def test_wrong_secret_is_rejected() -> None:
    repository = MemoryRepository()
    record, _ = make_record()
    await repository.create_api_key(record)
    verifier = ApiKeyVerifier(HASH_KEY, repository)
    with pytest.raises(ApiKeyRejected, match="wrong secret"):
        await verifier.verify(new_key_for(record.key_id))


async def test_hash_key_matters() -> None:
    repository = MemoryRepository()
    record, key = make_record()
    await repository.create_api_key(record)
    with pytest.raises(ApiKeyRejected, match="wrong secret"):
        await ApiKeyVerifier(b"x" * 40, repository).verify(key)


async def test_expired_and_disabled_keys_are_rejected(clock: FakeClock) -> None:
    repository = MemoryRepository()
    expired, expired_key = make_record("old", expires_at=clock.now - 1)
    disabled, disabled_key = make_record("off", disabled=True)
    await repository.create_api_key(expired)
    await repository.create_api_key(disabled)
    verifier = ApiKeyVerifier(HASH_KEY, repository, clock=clock)
    with pytest.raises(ApiKeyRejected, match="expired"):
        await verifier.verify(expired_key)
    with pytest.raises(ApiKeyRejected, match="revoked"):
        await verifier.verify(disabled_key)


async def test_key_expires_while_cached(clock: FakeClock) -> None:
    repository = MemoryRepository()
    record, key = make_record(expires_at=clock.now + 2)
    await repository.create_api_key(record)
    verifier = ApiKeyVerifier(HASH_KEY, repository, cache_ttl=60, clock=clock)
    await verifier.verify(key)
    clock.advance(3)
    with pytest.raises(ApiKeyRejected, match="expired"):
        await verifier.verify(key)


async def test_rotation_keeps_the_old_secret_for_the_grace_period(clock: FakeClock) -> None:
    repository = MemoryRepository()
    record, old_key = make_record()
    new_key = new_key_for(record.key_id)
    rotated = replace(
        record,
        secret_hash=hash_secret(HASH_KEY, new_key),
        previous_secret_hash=record.secret_hash,
        previous_valid_until=clock.now + 3600,
    )
    await repository.create_api_key(rotated)
    verifier = ApiKeyVerifier(HASH_KEY, repository, cache_ttl=1, clock=clock)
    assert (await verifier.verify(old_key)).name == "ci-runner"
    assert (await verifier.verify(new_key)).name == "ci-runner"
    clock.advance(3601)
    await verifier.verify(new_key)
    with pytest.raises(ApiKeyRejected, match="wrong secret"):
        await verifier.verify(old_key)


async def test_revocation_takes_effect_after_the_cache_ttl(clock: FakeClock) -> None:
    repository = MemoryRepository()
    record, key = make_record()
    await repository.create_api_key(record)
    verifier = ApiKeyVerifier(HASH_KEY, repository, cache_ttl=5, clock=clock)
    await verifier.verify(key)
    await repository.update_api_key(replace(record, disabled=True))
    await verifier.verify(key)  # still cached
    clock.advance(5)
    with pytest.raises(ApiKeyRejected, match="revoked"):
        await verifier.verify(key)


async def test_constant_time_comparison_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    from gateway.security.crypto import equal as real_equal

    def spy(a: bytes | str, b: bytes | str) -> bool:
        assert isinstance(a, bytes) and isinstance(b, bytes)
        calls.append((a, b))
        return real_equal(a, b)

    monkeypatch.setattr(api_keys, "equal", spy)
    monkeypatch.setattr(api_key_verifier, "equal", spy)
    repository = MemoryRepository()
    record, key = make_record()
    await repository.create_api_key(record)
    verifier = ApiKeyVerifier(HASH_KEY, repository)
    await verifier.verify(key)
    assert calls[-1] == (hash_secret(HASH_KEY, key), record.secret_hash)
    with pytest.raises(ApiKeyRejected):
        await verifier.verify(new_key_for(record.key_id))
    # An unknown id still costs a hash and a constant-time comparison (against a decoy).
    calls.clear()
    with pytest.raises(ApiKeyRejected):
        await verifier.verify(generate_api_key()[1])
    assert len(calls) == 1


async def test_concurrent_misses_share_one_read() -> None:
    repository = MemoryRepository()
    record, key = make_record()
    await repository.create_api_key(record)
    original = repository.get_api_key

    async def slow(key_id: str) -> ApiKeyRecord | None:
        await asyncio.sleep(0.01)
        return await original(key_id)

    repository.get_api_key = slow  # type: ignore[method-assign]
    verifier = ApiKeyVerifier(HASH_KEY, repository)
    results = await asyncio.gather(*(verifier.verify(key) for _ in range(20)))
    assert {r.name for r in results} == {"ci-runner"}
    assert repository.reads == 1


async def test_storage_outage_uses_stale_records_then_fails(clock: FakeClock) -> None:
    repository = MemoryRepository()
    record, key = make_record()
    await repository.create_api_key(record)
    verifier = ApiKeyVerifier(HASH_KEY, repository, cache_ttl=5, max_stale=60, clock=clock)
    await verifier.verify(key)
    repository.down = True
    clock.advance(10)
    assert (await verifier.verify(key)).name == "ci-runner"  # stale, but within max_stale
    clock.advance(60)
    with pytest.raises(ApiKeyUnavailable):
        await verifier.verify(key)
    _, other = generate_api_key()
    with pytest.raises(ApiKeyUnavailable):
        await verifier.verify(other)


async def test_cache_is_bounded(clock: FakeClock) -> None:
    repository = MemoryRepository()
    verifier = ApiKeyVerifier(HASH_KEY, repository, cache_size=3, clock=clock)
    for _ in range(10):
        with pytest.raises(ApiKeyRejected):
            await verifier.verify(generate_api_key()[1])
    assert len(verifier._cache) == 3


# -- last used ----------------------------------------------------------------------------


async def test_last_used_times_are_flushed_in_one_batch(clock: FakeClock) -> None:
    repository = MemoryRepository()
    first, first_key = make_record("one")
    second, second_key = make_record("two")
    await repository.create_api_key(first)
    await repository.create_api_key(second)
    verifier = ApiKeyVerifier(HASH_KEY, repository, clock=clock)
    for _ in range(5):
        await verifier.verify(first_key)
        clock.advance(1)
    await verifier.verify(second_key)
    assert repository.touches == []
    assert await verifier.flush_last_used() == 2
    assert repository.touches == [{first.key_id: clock.now - 1, second.key_id: clock.now}]
    assert await verifier.flush_last_used() == 0


async def test_failed_flush_is_retried(clock: FakeClock) -> None:
    repository = MemoryRepository()
    record, key = make_record()
    await repository.create_api_key(record)
    verifier = ApiKeyVerifier(HASH_KEY, repository, clock=clock)
    await verifier.verify(key)
    repository.down = True
    assert await verifier.flush_last_used() == 0
    repository.down = False
    assert await verifier.flush_last_used() == 1
    assert repository.records[record.key_id].last_used_at == clock.now


async def test_background_flush_and_final_flush_on_close() -> None:
    repository = MemoryRepository()
    record, key = make_record()
    await repository.create_api_key(record)
    verifier = ApiKeyVerifier(HASH_KEY, repository, touch_interval=0.05)
    await verifier.start()
    await verifier.verify(key)
    for _ in range(100):
        if repository.touches:
            break
        await asyncio.sleep(0.01)
    assert repository.touches
    await verifier.verify(key)
    await verifier.close()
    assert len(repository.touches) == 2


# -- scopes and networks ------------------------------------------------------------------


def test_scopes_and_networks() -> None:
    key = ApiKey.compile(
        "abcdefghijkl",
        "reports",
        "",
        b"h" * 32,
        scopes=["api.reports.example.com", "api.*.internal.example.com"],
        networks=["10.20.0.0/16"],
    )
    assert key.allows_host("api.reports.example.com")
    assert key.allows_host("api.x.internal.example.com")
    assert not key.allows_host("api.billing.example.com")
    assert not key.allows_host(None)
    assert key.allows_address("10.20.3.4")
    assert not key.allows_address("10.21.0.1")
    unrestricted = ApiKey.compile("abcdefghijkm", "any", "", b"h" * 32)
    assert unrestricted.allows_host("whatever.example.com")
    assert unrestricted.allows_address("8.8.8.8")


def test_broken_stored_record_is_treated_as_disabled() -> None:
    record, _ = make_record(networks=("not-a-network",))
    key = ApiKey.from_record(record)
    assert key.disabled


# -- static (GitOps) declarations ---------------------------------------------------------


async def test_static_declarations_verify_without_storage(clock: FakeClock) -> None:
    key_id, key = generate_api_key()
    declared = load_static_api_keys(
        [
            {
                "name": "deploy-bot",
                "id": key_id,
                "hash": hash_secret(HASH_KEY, key).hex(),
                "groups": ["deployers"],
                "scopes": ["api.deploy.example.com"],
                "networks": ["10.0.0.0/8"],
                "expires": datetime.date(2030, 1, 1),
            }
        ]
    )
    verifier = ApiKeyVerifier(HASH_KEY, None, static_keys=declared, clock=clock)
    found = await verifier.verify(key)
    assert found.static and found.groups == ("deployers",)
    assert found.expires_at == datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC).timestamp()
    assert await verifier.flush_last_used() == 0  # static keys are not written anywhere
    clock.now = found.expires_at + 1
    with pytest.raises(ApiKeyRejected, match="expired"):
        await verifier.verify(key)


async def test_static_keys_take_precedence_and_can_be_replaced() -> None:
    repository = MemoryRepository()
    verifier = ApiKeyVerifier(HASH_KEY, repository)
    key_id, key = generate_api_key()
    entry = {"name": "bot", "id": key_id, "hash": hash_secret(HASH_KEY, key).hex()}
    declared = static_key_index(load_static_api_keys([entry]))
    assert (await verifier.verify(key, declared)).name == "bot"
    assert repository.reads == 0
    with pytest.raises(ApiKeyRejected):
        await verifier.verify(key, static_key_index([]))


def test_static_declaration_errors_name_the_field() -> None:
    with pytest.raises(StaticKeyError) as caught:
        load_static_api_keys(
            [
                {"name": "ok", "id": "abcdefghijkl", "hash": "00" * 32},
                {"name": "bad id", "id": "ABC", "hash": "zz", "colour": "red"},
                {"name": "nets", "id": "abcdefghijkm", "hash": "11" * 32, "networks": ["x"]},
                {"name": "ok", "id": "abcdefghijkn", "hash": "22" * 32},
                {"name": "when", "id": "abcdefghijko", "hash": "33" * 32, "expires": "soon"},
            ],
            path=("policy.yml", "api_keys"),
        )
    paths = {path: message for path, message in caught.value.problems}
    assert ("policy.yml", "api_keys", 1, "colour") in paths
    assert ("policy.yml", "api_keys", 1, "name") in paths
    assert ("policy.yml", "api_keys", 1, "id") in paths
    assert ("policy.yml", "api_keys", 1, "hash") in paths
    assert "'x' is not an IP address" in paths[("policy.yml", "api_keys", 2, "networks")]
    assert "declared twice" in paths[("policy.yml", "api_keys", 3, "name")]
    assert "not a date" in paths[("policy.yml", "api_keys", 4, "expires")]
    assert "policy.yml.api_keys.1.id: id must be 12 characters" in str(caught.value)


def test_static_rotation_with_previous_hash(clock: FakeClock) -> None:
    key_id, old = generate_api_key()
    new = new_key_for(key_id)
    [key] = load_static_api_keys(
        [
            {
                "name": "bot",
                "id": key_id,
                "hash": hash_secret(HASH_KEY, new).hex(),
                "previous_hash": hash_secret(HASH_KEY, old).hex(),
                "previous_valid_until": "2023-11-15T00:00:00Z",
            }
        ]
    )
    before = datetime.datetime(2023, 11, 14, tzinfo=datetime.UTC).timestamp()
    assert key.secret_matches(hash_secret(HASH_KEY, old), before)
    assert not key.secret_matches(hash_secret(HASH_KEY, old), before + 2 * 86400)
    assert key.secret_matches(hash_secret(HASH_KEY, new), before + 2 * 86400)
