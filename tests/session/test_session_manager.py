"""SessionManager behaviour, the same on the memory, SQLite and Redis stores."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import anyio
import pytest

from gateway.session.manager import SessionManager
from gateway.session.model import AuthLevel, Session, SessionExpired
from gateway.session.settings import CookieDomain
from gateway.session.stores.base import SessionStore, TouchResult
from tests.session.backends import HASH_KEY, Backend, session_settings
from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio

SETTINGS = session_settings()
COM, ORG = SETTINGS.cookies


def manager_for(backend: Backend, store: SessionStore | None = None) -> SessionManager:
    return SessionManager(SETTINGS, store or backend.store, HASH_KEY, clock=backend.clock)


async def login(
    manager: SessionManager, domain: CookieDomain = COM, username: str = "alice", **fields: object
) -> Session:
    values: dict[str, object] = {
        "display_name": "Alice Liddell",
        "email": "alice@example.com",
        "groups": ("admins", "dev"),
    }
    values.update(fields)
    return await manager.login(domain, username=username, **values)  # type: ignore[arg-type]


async def test_round_trip_keeps_every_field(backend: Backend) -> None:
    manager = manager_for(backend)
    session = await login(manager, data={"next": "https://app.example.com/x"})
    reader = manager_for(backend)  # no cache: the values come from the store
    loaded = await reader.load(session.id, COM)
    assert loaded is not None
    assert loaded.id == session.id
    assert (loaded.username, loaded.display_name, loaded.email) == (
        "alice",
        "Alice Liddell",
        "alice@example.com",
    )
    assert loaded.groups == ("admins", "dev")
    assert loaded.level is AuthLevel.ONE_FACTOR
    assert loaded.domain == "example.com"
    assert loaded.expires_at == pytest.approx(backend.clock.now + 3600)
    assert loaded.first_factor_at == pytest.approx(backend.clock.now)
    assert loaded.second_factor_at is None
    assert dict(loaded.data) == {"next": "https://app.example.com/x"}


async def test_session_id_is_256_random_bits_and_never_a_store_key(backend: Backend) -> None:
    manager = manager_for(backend)
    first, second = await login(manager), await login(manager)
    assert len(first.id) == 43 and first.id != second.id
    assert first.key != first.id and first.id not in first.key
    stored = await backend.store.get(first.key)
    assert stored is not None and stored.id == ""
    assert await backend.store.get(first.id) is None


@pytest.mark.parametrize("cookie", ["", "short", "x" * 43, "x" * 44])
async def test_unknown_or_malformed_cookie_is_no_session(backend: Backend, cookie: str) -> None:
    manager = manager_for(backend)
    await login(manager)
    assert await manager.load(cookie, COM) is None


async def test_cookie_of_one_domain_is_refused_on_another(backend: Backend) -> None:
    manager = manager_for(backend)
    session = await login(manager, COM)
    assert await manager.load(session.id, ORG) is None
    assert await manager_for(backend).load(session.id, ORG) is None
    assert await manager.load(session.id, COM) is not None


async def test_absolute_expiration_ends_an_active_session(backend: Backend) -> None:
    manager = manager_for(backend)
    session = await login(manager)
    for _ in range(14):  # active every 4 minutes: 56 minutes
        backend.clock.advance(240)
        assert await manager.load(session.id, COM) is not None
        await manager.flush()  # what the background writer does between requests
    backend.clock.advance(240)  # 60 minutes
    assert await manager.load(session.id, COM) is None
    assert await backend.store.get(session.key) is None, "an expired session is deleted"


async def test_inactivity_ends_an_idle_session(backend: Backend) -> None:
    manager = manager_for(backend)
    session = await login(manager)
    backend.clock.advance(299)
    assert await manager.load(session.id, COM) is not None  # activity resets the idle timer
    await manager.flush()  # what the background writer does between requests
    backend.clock.advance(299)
    assert await manager.load(session.id, COM) is not None
    await manager.flush()
    backend.clock.advance(301)
    assert await manager.load(session.id, COM) is None
    assert await manager_for(backend).load(session.id, COM) is None


async def test_cookie_domain_overrides_expiry_settings(backend: Backend) -> None:
    manager = manager_for(backend)
    com = await login(manager, COM)
    org = await login(manager, ORG)
    assert org.expires_at - org.created_at == 7200
    backend.clock.advance(400)  # idle longer than example.com's 5m, not example.org's 10m
    assert await manager.load(com.id, COM) is None
    assert await manager.load(org.id, ORG) is not None


async def test_remember_me_outlives_inactivity_until_its_own_expiry(backend: Backend) -> None:
    manager = manager_for(backend)
    session = await login(manager, remember_me=True)
    assert session.remember_me
    assert session.expires_at == pytest.approx(backend.clock.now + 30 * 86400)
    backend.clock.advance(3 * 3600)  # idle for three hours
    assert await manager_for(backend).load(session.id, COM) is not None
    backend.clock.advance(30 * 86400)
    assert await manager_for(backend).load(session.id, COM) is None


async def test_raise_level_changes_the_id_and_kills_the_old_one(backend: Backend) -> None:
    manager = manager_for(backend)
    session = await login(manager)
    backend.clock.advance(5)
    raised = await manager.raise_level(session, AuthLevel.TWO_FACTOR)
    assert raised.id != session.id and raised.key != session.key
    assert raised.level is AuthLevel.TWO_FACTOR
    assert raised.second_factor_at == pytest.approx(backend.clock.now)
    assert raised.first_factor_at == session.first_factor_at
    assert raised.expires_at == session.expires_at
    assert await manager.load(session.id, COM) is None
    assert await manager_for(backend).load(session.id, COM) is None
    loaded = await manager_for(backend).load(raised.id, COM)
    assert loaded is not None and loaded.level is AuthLevel.TWO_FACTOR
    with pytest.raises(SessionExpired):  # a second submit with the old session
        await manager.raise_level(session, AuthLevel.TWO_FACTOR)


async def test_raise_level_refuses_to_lower(backend: Backend) -> None:
    manager = manager_for(backend)
    session = await login(manager, level=AuthLevel.TWO_FACTOR)
    with pytest.raises(ValueError):
        await manager.raise_level(session, AuthLevel.ONE_FACTOR)


async def test_login_replaces_the_old_session(backend: Backend) -> None:
    manager = manager_for(backend)
    old = await login(manager, data={"flow": "consent"})
    new = await login(manager, username="bob", old_session=old)
    assert new.id != old.id
    assert await manager_for(backend).load(old.id, COM) is None
    loaded = await manager_for(backend).load(new.id, COM)
    assert loaded is not None and loaded.username == "bob"
    assert dict(loaded.data) == {"flow": "consent"}


async def test_logout_ends_the_session_at_once(backend: Backend) -> None:
    manager = manager_for(backend)
    session = await login(manager)
    assert await manager.load(session.id, COM) is not None  # now cached
    await manager.logout(session)
    assert await manager.load(session.id, COM) is None
    assert await manager_for(backend).load(session.id, COM) is None


async def test_logout_everywhere_ends_every_session_of_the_user(backend: Backend) -> None:
    manager = manager_for(backend)
    alice = [await login(manager, COM), await login(manager, COM), await login(manager, ORG)]
    bob = await login(manager, username="bob")
    listed = await manager.list_user("alice")
    assert sorted(s.domain for s in listed) == ["example.com", "example.com", "example.org"]
    assert {s.key for s in listed} == {s.key for s in alice}
    for session in alice:  # cached in this process
        assert await manager.load(session.id, session_domain(session)) is not None

    assert await manager.logout_user("alice") == 3

    for session in alice:
        assert await manager.load(session.id, session_domain(session)) is None
    assert await manager.list_user("alice") == []
    assert await manager.load(bob.id, COM) is not None
    assert await manager.logout_user("alice") == 0


def session_domain(session: Session) -> CookieDomain:
    return COM if session.domain == COM.domain else ORG


async def test_update_stores_details_under_the_same_id(backend: Backend) -> None:
    manager = manager_for(backend)
    session = await login(manager)
    backend.clock.advance(60)
    updated = await manager.update(session, groups=["dev"], data={"step": "2"})
    assert updated.id == session.id
    loaded = await manager_for(backend).load(session.id, COM)
    assert loaded is not None
    assert loaded.groups == ("dev",)
    assert loaded.groups_refreshed_at == pytest.approx(backend.clock.now)
    assert dict(loaded.data) == {"step": "2"}
    await manager.logout(session)
    with pytest.raises(SessionExpired):
        await manager.update(session, groups=["admins"])
    assert await manager_for(backend).load(session.id, COM) is None, "not resurrected"


async def test_cached_copies_in_other_processes_go_stale_within_cache_ttl(
    backend: Backend,
) -> None:
    if backend.name == "memory":
        store_b: SessionStore = backend.store  # two managers, one store: two caches
    else:
        store_b = backend.another()
    process_a, process_b = manager_for(backend), manager_for(backend, store_b)
    session = await login(process_a)
    assert await process_b.load(session.id, COM) is not None  # B caches it
    await process_a.logout(session)
    # Documented staleness: B may answer from its copy until cache_ttl (1 s) has passed...
    backend.clock.advance(SETTINGS.cache_ttl * 0.5)
    assert await process_b.load(session.id, COM) is not None
    # ...and not a moment longer.
    backend.clock.advance(SETTINGS.cache_ttl * 0.5 + 0.001)
    assert await process_b.load(session.id, COM) is None


class CountingStore:
    """Wraps a store and counts reads and writes (``saves``: saves and touches)."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.gets = 0
        self.saves = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def get(self, key: str) -> Session | None:
        self.gets += 1
        return await self.inner.get(key)

    async def save(self, session: Session, ttl: float, *, existing_only: bool = False) -> bool:
        self.saves += 1
        return await self.inner.save(session, ttl, existing_only=existing_only)

    async def touch(self, touches: Sequence[tuple[Session, float]]) -> list[TouchResult]:
        self.saves += len(touches)
        return await self.inner.touch(touches)


async def test_hot_path_reads_once_per_cache_ttl_and_writes_every_few_seconds(
    backend: Backend,
) -> None:
    counting = CountingStore(backend.store)
    manager = manager_for(backend, counting)  # type: ignore[arg-type]
    session = await login(manager)
    assert counting.saves == 1
    for _ in range(50):  # 50 requests within 0.5 s
        assert await manager.load(session.id, COM) is not None
        backend.clock.advance(0.01)
    assert counting.gets == 0, "a fresh login is served from the cache"
    for _ in range(90):  # one request every 0.1 s for 9 s
        backend.clock.advance(0.1)
        assert await manager.load(session.id, COM) is not None
    assert counting.gets <= 10
    assert counting.saves == 1, "last_activity is not written again within 10 s"
    backend.clock.advance(2)
    loaded = await manager.load(session.id, COM)
    assert loaded is not None and loaded.last_activity == backend.clock.now
    await manager.flush()  # the touch is written in the background, not by the load
    assert counting.saves == 2


async def test_concurrent_requests_share_one_store_read(backend: Backend) -> None:
    counting = CountingStore(backend.store)
    manager = manager_for(backend, counting)  # type: ignore[arg-type]
    session = await login(manager)
    backend.clock.advance(20)  # past the cache and due a touch
    loads = await asyncio.gather(*(manager.load(session.id, COM) for _ in range(20)))
    assert all(loaded is not None and loaded.id == session.id for loaded in loads)
    await manager.flush()  # the touch is written in the background, not by the loads
    assert (counting.gets, counting.saves) == (1, 2)  # one read, one touch (after login)


async def test_anonymous_sessions_are_never_stored(backend: Backend) -> None:
    anonymous = Session(id="", key="k" * 64, domain="example.com", username=None)
    assert await backend.store.save(anonymous, 60) is False
    assert await backend.store.get(anonymous.key) is None


async def test_store_expires_sessions_by_ttl(backend: Backend, clock: FakeClock) -> None:
    session = await login(manager_for(backend))
    assert await backend.store.save(session, 0.3)
    assert await backend.store.get(session.key) is not None
    clock.advance(0.5)
    if backend.name == "redis":
        await anyio.sleep(0.5)  # Redis keeps its own time
    assert await backend.store.get(session.key) is None
    assert await backend.store.list_user("alice") == []
    assert await backend.store.delete(session.key) is False
