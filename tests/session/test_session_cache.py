"""The session cache of every active session: no store writes on the read path, activity
recorded in the background at the documented precision, and changes made by one process
reaching the others' caches (the same on the memory, SQLite and Redis stores)."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence

import anyio
import pytest
import redis

from gateway.session.manager import SessionManager
from gateway.session.model import AuthLevel, Session, SessionStoreUnavailable
from gateway.session.stores.base import SessionStore, TouchResult
from tests.services import RedisServer
from tests.session.backends import HASH_KEY, Backend, FakeClock, redis_store, session_settings

pytestmark = pytest.mark.anyio

SETTINGS = session_settings()
COM, ORG = SETTINGS.cookies
INACTIVITY = SETTINGS.inactivity  # 5 minutes on example.com
TOUCH_INTERVAL = min(INACTIVITY / 10, 10.0)  # what docs/sessions.md promises
# How long a change may take to reach another process: within a second is what happens (pub/
# sub is immediate, SQLite is polled twice a second); the bound is generous for a busy host.
PROPAGATION_BOUND = 5.0


class CountingStore:
    """Wraps a real store and counts what reaches it."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.gets = 0
        self.saves = 0
        self.deletes = 0
        self.touched: list[str] = []  # keys of the touches written

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def get(self, key: str) -> Session | None:
        self.gets += 1
        return await self.inner.get(key)

    async def save(self, session: Session, ttl: float, *, existing_only: bool = False) -> bool:
        self.saves += 1
        return await self.inner.save(session, ttl, existing_only=existing_only)

    async def delete(self, key: str) -> bool:
        self.deletes += 1
        return await self.inner.delete(key)

    async def touch(self, touches: Sequence[tuple[Session, float]]) -> list[TouchResult]:
        results = await self.inner.touch(touches)
        self.touched += [s.key for (s, _), r in zip(touches, results, strict=True) if r]
        return results

    def writes(self) -> int:
        return self.saves + self.deletes + len(self.touched)


def manager_for(store: object, clock: FakeClock, **options: object) -> SessionManager:
    return SessionManager(SETTINGS, store, HASH_KEY, clock=clock, **options)  # type: ignore[arg-type]


def second_store(backend: Backend) -> SessionStore:
    """The store another process would open (the memory store is shared in-process)."""
    return backend.store if backend.name == "memory" else backend.another()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait, polling, until ``check()`` holds; fail after PROPAGATION_BOUND."""
    deadline = time.monotonic() + PROPAGATION_BOUND
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {PROPAGATION_BOUND:g}s: {what}")
        await anyio.sleep(0.02)


async def following(manager: SessionManager) -> None:
    await manager.start()

    async def synced() -> bool:
        return manager.following

    await eventually(synced, "the manager follows the store's changes")


async def login(manager: SessionManager, username: str = "alice", **fields: object) -> Session:
    return await manager.login(COM, username=username, groups=("dev",), **fields)  # type: ignore[arg-type]


# -- no writes on the read path -------------------------------------------------------------


async def test_a_thousand_decisions_write_nothing_and_touches_follow_the_interval(
    backend: Backend,
) -> None:
    counting = CountingStore(backend.store)
    manager = manager_for(counting, backend.clock)
    sessions = [await login(manager, f"user{n}") for n in range(5)]
    counting.saves = 0
    written_before = 0
    for request in range(1000):  # one request every 0.05 s: 50 s of traffic
        backend.clock.advance(0.05)
        session = sessions[request % len(sessions)]
        loaded = await manager.load(session.id, COM)
        assert loaded is not None and loaded.username == session.username
        assert counting.writes() == written_before, "a load wrote to the store"
        if request % 20 == 19:  # once a second: what the background writer does
            await manager.flush()
            written_before = counting.writes()
    assert counting.saves == 0 and counting.deletes == 0
    # Every session was active throughout: its activity was recorded, at most once per
    # touch interval (50 s of traffic, one touch each 10 s at most).
    for session in sessions:
        touches = counting.touched.count(session.key)
        assert 0 < touches <= math.ceil(50 / TOUCH_INTERVAL)
    stored = await backend.store.get(sessions[0].key)
    assert stored is not None
    assert backend.clock.now - stored.last_activity <= TOUCH_INTERVAL + 1.0


async def test_pending_touches_are_written_on_close(backend: Backend) -> None:
    manager = manager_for(backend.store, backend.clock)
    session = await login(manager)
    backend.clock.advance(TOUCH_INTERVAL + 1)
    assert await manager.load(session.id, COM) is not None  # queues a touch
    await manager.stop()  # what close() does before closing the store
    stored = await backend.store.get(session.key)
    assert stored is not None and stored.last_activity == backend.clock.now


async def test_the_background_writer_flushes_by_itself(backend: Backend) -> None:
    manager = manager_for(backend.store, backend.clock, flush_interval=0.05)
    session = await login(manager)
    backend.clock.advance(TOUCH_INTERVAL + 1)
    assert await manager.load(session.id, COM) is not None

    async def written() -> bool:
        stored = await backend.store.get(session.key)
        return stored is not None and stored.last_activity == backend.clock.now

    await eventually(written, "the touch is written in the background")
    await manager.stop()


# -- touches never resurrect nor undo --------------------------------------------------------


async def test_a_touch_never_resurrects_a_session_ended_elsewhere(backend: Backend) -> None:
    replica_a = manager_for(backend.store, backend.clock)
    replica_b = manager_for(second_store(backend), backend.clock)
    session = await login(replica_a)
    backend.clock.advance(TOUCH_INTERVAL + 1)
    assert await replica_a.load(session.id, COM) is not None  # touch pending in A
    await replica_b.logout_user("alice")
    await replica_a.flush()
    assert await backend.store.get(session.key) is None
    assert await manager_for(backend.store, backend.clock).load(session.id, COM) is None


async def test_a_touch_does_not_undo_a_change_made_elsewhere(backend: Backend) -> None:
    replica_a = manager_for(backend.store, backend.clock)
    replica_b = manager_for(second_store(backend), backend.clock)
    session = await login(replica_a)
    backend.clock.advance(TOUCH_INTERVAL + 1)
    assert await replica_a.load(session.id, COM) is not None  # touch pending in A
    touched_at = backend.clock.now
    backend.clock.advance(1)
    loaded_b = await replica_b.load(session.id, COM)
    assert loaded_b is not None
    await replica_b.update(loaded_b, groups=["admins"], data={"step": "2"})
    backend.clock.advance(1)
    await replica_a.flush()  # meets the changed value: merged, not overwritten
    stored = await backend.store.get(session.key)
    assert stored is not None
    assert stored.groups == ("admins",) and dict(stored.data) == {"step": "2"}
    assert stored.last_activity >= touched_at


async def test_concurrent_touches_from_two_processes_merge(backend: Backend) -> None:
    replica_a = manager_for(backend.store, backend.clock)
    replica_b = manager_for(second_store(backend), backend.clock)
    session = await login(replica_a)
    assert await replica_b.load(session.id, COM) is not None
    backend.clock.advance(TOUCH_INTERVAL + 1)
    assert await replica_b.load(session.id, COM) is not None
    await replica_b.flush()
    backend.clock.advance(TOUCH_INTERVAL + 1)
    assert await replica_a.load(session.id, COM) is not None  # A read the store before B
    await replica_a.flush()
    stored = await backend.store.get(session.key)
    assert stored is not None and stored.last_activity == backend.clock.now


# -- inactivity at the documented precision --------------------------------------------------


async def active_for_100_seconds(backend: Backend) -> tuple[SessionManager, Session, float]:
    """A session used every 5 s for 100 s (touches written as they would be); returns the
    manager, the session and the time of the last request."""
    manager = manager_for(backend.store, backend.clock)
    session = await login(manager)
    for _ in range(20):
        backend.clock.advance(5)
        assert await manager.load(session.id, COM) is not None
        await manager.flush()
    return manager, session, backend.clock.now


async def test_inactivity_ends_a_session_no_later_than_the_limit(backend: Backend) -> None:
    manager, session, last_request = await active_for_100_seconds(backend)
    backend.clock.now = last_request + INACTIVITY + 0.001
    assert await manager.load(session.id, COM) is None
    assert await manager_for(backend.store, backend.clock).load(session.id, COM) is None


async def test_inactivity_ends_a_session_no_earlier_than_the_limit_less_the_interval(
    backend: Backend,
) -> None:
    manager, session, last_request = await active_for_100_seconds(backend)
    backend.clock.now = last_request + INACTIVITY - TOUCH_INTERVAL - 0.001
    # As every process sees it (list_user reads the store and records no activity)...
    listed = await manager_for(backend.store, backend.clock).list_user("alice")
    assert [s.key for s in listed] == [session.key]
    # ...and as the process that served the requests does.
    assert await manager.load(session.id, COM) is not None


# -- the cache follows changes made by other processes ---------------------------------------


async def test_a_following_cache_outlives_cache_ttl_without_reading_the_store(
    backend: Backend,
) -> None:
    counting = CountingStore(second_store(backend))
    replica_b = manager_for(counting, backend.clock)
    await following(replica_b)
    try:
        session = await login(manager_for(backend.store, backend.clock))
        assert await replica_b.load(session.id, COM) is not None
        reads = counting.gets
        for _ in range(100):  # 5 minutes of requests, far past cache_ttl
            backend.clock.advance(3)
            assert await replica_b.load(session.id, COM) is not None
        assert counting.gets == reads
    finally:
        await replica_b.stop()


@pytest.mark.parametrize("change", ["logout", "logout_user", "update", "raise_level"])
async def test_a_change_in_one_process_reaches_the_other_within_a_second(
    backend: Backend, change: str
) -> None:
    replica_a = manager_for(backend.store, backend.clock)
    replica_b = manager_for(second_store(backend), backend.clock)
    await following(replica_b)
    try:
        session = await login(replica_a)
        other = await login(replica_a, "bob")
        for cached in (session, other):
            assert await replica_b.load(cached.id, COM) is not None  # cached in B
        if change == "logout":
            await replica_a.logout(session)
        elif change == "logout_user":
            assert await replica_a.logout_user("alice") == 1
        elif change == "raise_level":
            await replica_a.raise_level(session, AuthLevel.TWO_FACTOR)
        else:
            await replica_a.update(session, groups=["admins"])

        async def seen() -> bool:
            loaded = await replica_b.load(session.id, COM)
            if change == "update":
                return loaded is not None and loaded.groups == ("admins",)
            return loaded is None

        await eventually(seen, f"{change} on A seen by B")
        assert await replica_b.load(other.id, COM) is not None, "other sessions stay"
    finally:
        await replica_b.stop()


async def test_without_following_the_cache_lives_cache_ttl(backend: Backend) -> None:
    counting = CountingStore(second_store(backend))
    replica_b = manager_for(counting, backend.clock)  # never started
    session = await login(manager_for(backend.store, backend.clock))
    assert await replica_b.load(session.id, COM) is not None
    reads = counting.gets
    backend.clock.advance(SETTINGS.cache_ttl + 0.001)
    assert await replica_b.load(session.id, COM) is not None
    assert counting.gets == reads + 1


# -- Redis: a subscription that breaks fails safe ---------------------------------------------


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_a_killed_subscription_empties_the_cache(backend: Backend) -> None:
    counting = CountingStore(backend.store)
    manager = manager_for(counting, backend.clock)
    await following(manager)
    try:
        session = await login(manager)
        assert await manager.load(session.id, COM) is not None
        reads = counting.gets
        assert await manager.load(session.id, COM) is not None
        assert counting.gets == reads  # from the cache
        client = redis.Redis.from_url(backend.redis_url)
        try:
            client.client_kill_filter(_type="pubsub")
        finally:
            client.close()

        async def read_again() -> bool:
            assert await manager.load(session.id, COM) is not None
            return counting.gets > reads

        await eventually(read_again, "the cache is emptied when the subscription breaks")
        await eventually(lambda: _true(manager.following), "subscribed again")
    finally:
        await manager.stop()


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_redis_down_stops_answering_from_the_cache(
    backend: Backend, redis_server: RedisServer
) -> None:
    manager = manager_for(backend.store, backend.clock)
    await following(manager)
    try:
        session = await login(manager)
        assert await manager.load(session.id, COM) is not None
        with redis_server.down():

            async def denied() -> bool:
                try:
                    await manager.load(session.id, COM)
                except SessionStoreUnavailable:
                    return True
                return False

            await eventually(denied, "a cached session is not served while Redis is down")
        await eventually(lambda: _true(manager.following), "subscribed again once Redis is back")
    finally:
        await manager.stop()


async def test_a_hung_redis_is_noticed_by_the_subscription(
    redis_server: RedisServer, redis_url: str, clock: FakeClock, keyring: object
) -> None:
    store = redis_store(redis_url, f"hung-feed-{time.monotonic_ns()}:", keyring)  # type: ignore[arg-type]
    manager = manager_for(store, clock)
    try:
        await following(manager)
        with redis_server.paused():
            await eventually(
                lambda: _true(not manager.following), "a Redis that stops answering is lost"
            )
        await eventually(lambda: _true(manager.following), "subscribed again once it answers")
    finally:
        await manager.close()
