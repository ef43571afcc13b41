"""What only some stores promise: SQLite sharing and persistence, Redis encryption and outages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path

import pytest
import redis

from gateway.config.settings import Settings
from gateway.credentials.rate_limit import Limit, RedisRateLimiter
from gateway.security.crypto import Keyring, generate_key
from gateway.security.regulation import Regulator
from gateway.security.settings import RegulationSettings
from gateway.session.manager import SessionManager
from gateway.session.model import SessionStoreUnavailable
from gateway.session.settings import RedisSettings
from gateway.session.stores import open_session_store
from gateway.session.stores.redis import RedisSessionStore
from gateway.session.stores.sqlite import SqliteSessionStore
from tests.services import RedisServer
from tests.session.backends import HASH_KEY, Backend, redis_store, session_settings
from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio

SETTINGS = session_settings()
COM, ORG = SETTINGS.cookies


def manager(store: object, clock: FakeClock) -> SessionManager:
    return SessionManager(SETTINGS, store, HASH_KEY, clock=clock)  # type: ignore[arg-type]


# -- SQLite ---------------------------------------------------------------------------------


async def test_sqlite_file_is_shared_by_two_stores(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "shared.sqlite3"
    first = SqliteSessionStore(path, clock=clock)
    second = SqliteSessionStore(path, clock=clock)
    try:
        worker_a, worker_b = manager(first, clock), manager(second, clock)
        session = await worker_a.login(COM, username="alice")
        loaded = await worker_b.load(session.id, COM)
        assert loaded is not None and loaded.username == "alice"
        assert await worker_b.logout_user("alice") == 1
        assert await manager(first, clock).load(session.id, COM) is None
    finally:
        await first.close()
        await second.close()


async def test_sqlite_sessions_survive_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "data" / "sessions.sqlite3"  # the directory is created
    store = SqliteSessionStore(path, clock=clock)
    session = await manager(store, clock).login(ORG, username="alice", remember_me=True)
    await store.close()
    reopened = SqliteSessionStore(path, clock=clock)
    try:
        loaded = await manager(reopened, clock).load(session.id, ORG)
        assert loaded is not None and loaded.remember_me
    finally:
        await reopened.close()


async def test_sqlite_file_holds_no_usable_cookie(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "sessions.sqlite3"
    store = SqliteSessionStore(path, clock=clock)
    session = await manager(store, clock).login(COM, username="alice")
    await store.close()  # checkpoints the WAL into the file
    dump = read_directory(tmp_path)
    assert b"alice" in dump  # the file is what we think it is
    assert session.id.encode() not in dump


def read_directory(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())


async def test_sqlite_that_cannot_open_is_unavailable(tmp_path: Path, clock: FakeClock) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = SqliteSessionStore(blocker / "sessions.sqlite3", clock=clock)
    with pytest.raises(SessionStoreUnavailable) as raised:
        await store.get("k" * 64)
    assert str(raised.value) == "the session store is unavailable"
    await store.close()


async def test_open_session_store_opens_sqlite_at_start_up(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, store="sqlite")
    store = await open_session_store(settings, Keyring.from_texts([generate_key()]))
    try:
        assert isinstance(store, SqliteSessionStore)
        assert store.path == tmp_path / "sessions.sqlite3"
        assert store.path.exists()
    finally:
        await store.close()
    broken = tmp_path / "file"
    broken.write_text("")
    settings = settings_with(tmp_path, store="sqlite", path=str(broken / "x.sqlite3"))
    with pytest.raises(SessionStoreUnavailable):
        await open_session_store(settings, Keyring.from_texts([generate_key()]))


def settings_with(tmp_path: Path, *, store: str, path: str | None = None) -> Settings:
    return Settings.model_validate(
        {
            "secrets": {"encryption_keys": [generate_key()], "hash_key": "h" * 40},
            "policy": {"files": ["policy.yml"]},
            "session": {
                "store": store,
                "sqlite": {"path": path or str(tmp_path / "sessions.sqlite3")},
                "cookies": [{"domain": "example.com", "portal_url": "https://auth.example.com"}],
            },
        }
    )


# -- Redis ----------------------------------------------------------------------------------


def raw_redis(backend: Backend) -> redis.Redis:
    return redis.Redis.from_url(backend.redis_url)


def raw_dump(backend: Backend) -> list[tuple[bytes, bytes]]:
    """Every key of this test and its value, as a person with Redis access sees them."""
    client = raw_redis(backend)
    dump: list[tuple[bytes, bytes]] = []
    for key in client.scan_iter(match=backend.redis_prefix + "*"):
        kind = client.type(key)
        if kind == b"string":
            value = client.get(key) or b""
        elif kind == b"set":
            value = b" ".join(sorted(client.smembers(key)))  # type: ignore[arg-type]
        elif kind == b"hash":
            value = b" ".join(v for kv in client.hgetall(key).items() for v in kv)  # type: ignore[union-attr]
        else:
            value = b" ".join(m for m, _ in client.zrange(key, 0, -1, withscores=True))  # type: ignore[union-attr]
        dump.append((key, value))
    client.close()
    return dump


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_redis_holds_only_ciphertext_and_hashed_names(backend: Backend) -> None:
    sessions = manager(backend.store, backend.clock)
    session = await sessions.login(
        COM,
        username="alice.liddell",
        display_name="Alice Liddell",
        email="alice@wonderland.example",
        groups=["queen-of-hearts"],
    )
    regulator = Regulator(RegulationSettings(), backend.store.regulation, clock=backend.clock)
    for _ in range(3):
        await regulator.record_failure("alice.liddell", "203.0.113.77")
    dump = raw_dump(backend)
    assert len(dump) >= 4  # session, user index, bans, ban subjects
    for key, value in dump:
        for secret in (b"alice.liddell", b"Alice Liddell", b"wonderland", b"queen-of-hearts",
                       b"203.0.113.77", session.id.encode()):  # fmt: skip
            assert secret not in key and secret not in value, (key, secret)
    client = raw_redis(backend)
    session_key = f"{backend.redis_prefix}s:{session.key}"
    assert 0 < client.pttl(session_key) <= 300_000  # inactivity bounds the TTL
    index = [key for key, _ in dump if key.startswith(f"{backend.redis_prefix}u:".encode())]
    assert len(index) == 1 and client.pttl(index[0]) > 0
    client.close()
    assert {(b.kind, b.value) for b in await regulator.list_bans()} == {
        ("user", "alice.liddell"),
        ("ip", "203.0.113.77"),
    }


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_tampered_redis_value_is_no_session(backend: Backend) -> None:
    session = await manager(backend.store, backend.clock).login(COM, username="alice")
    client = raw_redis(backend)
    key = f"{backend.redis_prefix}s:{session.key}"
    value = bytearray(client.get(key) or b"")
    value[-5] ^= 0x01
    client.set(key, bytes(value), px=60_000)
    client.close()
    assert await manager(backend.store, backend.clock).load(session.id, COM) is None


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_redis_value_moved_to_another_key_does_not_open(backend: Backend) -> None:
    sessions = manager(backend.store, backend.clock)
    alice = await sessions.login(COM, username="alice", groups=["admins"])
    mallory = await sessions.login(COM, username="mallory")
    client = raw_redis(backend)
    alice_value = client.get(f"{backend.redis_prefix}s:{alice.key}")
    client.set(f"{backend.redis_prefix}s:{mallory.key}", alice_value or b"", px=60_000)
    client.close()
    assert await manager(backend.store, backend.clock).load(mallory.id, COM) is None
    assert await manager(backend.store, backend.clock).load(alice.id, COM) is not None


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_redis_sessions_open_after_key_rotation(backend: Backend) -> None:
    old_key, new_key = generate_key(), generate_key()
    before = redis_store(backend.redis_url, backend.redis_prefix, Keyring.from_texts([old_key]))
    after = redis_store(
        backend.redis_url, backend.redis_prefix, Keyring.from_texts([new_key, old_key])
    )
    backend.extra += [before, after]
    session = await manager(before, backend.clock).login(COM, username="alice")
    backend.clock.advance(30)  # the next load records activity: resealed with the new key
    replica = manager(after, backend.clock)
    assert await replica.load(session.id, COM) is not None
    await replica.flush()  # the background writer
    client = raw_redis(backend)
    sealed = client.get(f"{backend.redis_prefix}s:{session.key}") or b""
    client.close()
    assert (
        Keyring.from_texts([new_key]).key_id_of(sealed)
        == Keyring.from_texts([new_key]).current_key_id
    )
    assert await manager(before, backend.clock).load(session.id, COM) is None, (
        "a replica without the new key cannot read it, and says so by denying"
    )


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_redis_down_is_unavailable_then_recovers(
    backend: Backend, redis_server: RedisServer
) -> None:
    sessions = manager(backend.store, backend.clock)
    session = await sessions.login(COM, username="alice")
    regulator = Regulator(RegulationSettings(), backend.store.regulation, clock=backend.clock)
    backend.clock.advance(2)  # past the cache: the next load must ask Redis
    with redis_server.down():
        with pytest.raises(SessionStoreUnavailable) as raised:
            await sessions.load(session.id, COM)
        assert "redis" not in str(raised.value).lower()
        assert "127.0.0.1" not in str(raised.value)
        with pytest.raises(SessionStoreUnavailable):
            await sessions.login(COM, username="bob")
        with pytest.raises(SessionStoreUnavailable):
            await sessions.logout_user("alice")
        with pytest.raises(SessionStoreUnavailable):
            await regulator.is_banned("alice", "192.0.2.1")
        with pytest.raises(SessionStoreUnavailable):
            await regulator.record_failure("alice", "192.0.2.1")
        with pytest.raises(SessionStoreUnavailable):
            await sessions.ping()
    # The restarted server is empty (no persistence), but the store works again.
    await sessions.ping()
    assert await sessions.load(session.id, COM) is None
    again = await sessions.login(COM, username="alice")
    assert await manager(backend.store, backend.clock).load(again.id, COM) is not None


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_redis_store_shared_by_two_replicas(backend: Backend) -> None:
    replica_a = manager(backend.store, backend.clock)
    replica_b = manager(backend.another(), backend.clock)
    session = await replica_a.login(COM, username="alice")
    assert await replica_b.load(session.id, COM) is not None
    assert await replica_b.logout_user("alice") == 1
    assert await manager(backend.store, backend.clock).load(session.id, COM) is None


# -- Redis that hangs (SIGSTOP): the kernel accepts, nothing answers -------------------------

HUNG_TIMEOUT = 2.0


async def _fails_within_the_timeout(operation: Awaitable[object]) -> float:
    started = time.monotonic()
    with pytest.raises(SessionStoreUnavailable):
        await operation
    elapsed = time.monotonic() - started
    # Once the timeout, not twice (a retried timeout) or more (a retried reconnect).
    assert elapsed < HUNG_TIMEOUT + 1.0, f"took {elapsed:.1f}s for a {HUNG_TIMEOUT}s timeout"
    return elapsed


async def test_a_hung_redis_costs_one_timeout_per_operation(
    redis_server: RedisServer, redis_url: str, keyring: Keyring, clock: FakeClock
) -> None:
    settings = RedisSettings(
        url=redis_url, key_prefix=f"hung-{uuid.uuid4().hex[:8]}:", timeout=HUNG_TIMEOUT
    )
    store = RedisSessionStore.from_settings(settings, keyring, HASH_KEY)
    sessions = manager(store, clock)
    try:
        session = await sessions.login(COM, username="alice")
        clock.advance(2)  # past the cache
        with redis_server.paused():
            await _fails_within_the_timeout(store.get(session.key))
            await _fails_within_the_timeout(store.ping())
            await _fails_within_the_timeout(store.regulation.is_banned(["user:alice"], now=1.0))
        assert await store.get(session.key) is not None
    finally:
        await store.close()


async def test_a_hung_redis_does_not_queue_requests_past_the_timeout(
    redis_server: RedisServer, redis_url: str, keyring: Keyring
) -> None:
    # More callers than pooled connections: waiting for one is part of the same deadline.
    settings = RedisSettings(url=redis_url, timeout=HUNG_TIMEOUT, pool_size=2)
    store = RedisSessionStore.from_settings(settings, keyring, HASH_KEY)
    try:
        await store.ping()
        with redis_server.paused():
            started = time.monotonic()
            outcomes = await asyncio.gather(
                *(store.get(f"key-{n}") for n in range(10)), return_exceptions=True
            )
            elapsed = time.monotonic() - started
        assert all(isinstance(outcome, SessionStoreUnavailable) for outcome in outcomes)
        assert elapsed < HUNG_TIMEOUT + 1.0, f"took {elapsed:.1f}s"
    finally:
        await store.close()


async def test_a_hung_redis_costs_a_rate_limit_check_one_timeout(
    redis_server: RedisServer, redis_url: str
) -> None:
    limiter = RedisRateLimiter.from_url(
        redis_url, key_prefix=f"hung-{uuid.uuid4().hex[:8]}:", timeout=HUNG_TIMEOUT
    )
    limit = Limit(rate=100, burst=100)
    try:
        assert (await limiter.hit("k", limit)).allowed
        with redis_server.paused():
            started = time.monotonic()
            assert (await limiter.hit("k", limit)).allowed  # the local fallback answers
            elapsed = time.monotonic() - started
        assert elapsed < HUNG_TIMEOUT + 1.0, f"took {elapsed:.1f}s"
    finally:
        await limiter.close()
