"""Brute-force regulation, the same on the memory, SQLite and Redis backends."""

from __future__ import annotations

import asyncio

import pytest

from gateway.security.regulation import Ban, Regulator, ip_subject, user_subject
from gateway.security.settings import RegulationSettings
from gateway.session.model import SessionStoreUnavailable
from tests.services import RedisServer
from tests.session.backends import Backend, anyio_backend, backend, clock, keyring

__all__ = ["anyio_backend", "backend", "clock", "keyring"]  # fixtures used by name

pytestmark = pytest.mark.anyio

DEFAULTS = RegulationSettings()  # 3 failures in 2 minutes: banned for 5 minutes


def regulator(backend: Backend, settings: RegulationSettings = DEFAULTS) -> Regulator:
    return Regulator(settings, backend.store.regulation, clock=backend.clock)


async def test_three_failures_ban_the_user_from_any_address(backend: Backend) -> None:
    guard = regulator(backend)
    for ip in ("192.0.2.1", "192.0.2.2"):
        assert await guard.record_failure("alice", ip) is False
    assert not await guard.is_banned("alice", "192.0.2.3")
    assert await guard.record_failure("alice", "192.0.2.3") is True
    assert await guard.is_banned("alice", "198.51.100.9")
    assert await guard.is_banned("ALICE", None), "usernames are compared case-insensitively"
    assert not await guard.is_banned("bob", "192.0.2.1"), "each address failed only once"


async def test_three_failures_ban_the_address_for_every_user(backend: Backend) -> None:
    guard = regulator(backend)
    for user in ("alice", "bob", "carol"):
        await guard.record_failure(user, "203.0.113.5")
    assert await guard.is_banned("dave", "203.0.113.5")
    assert not await guard.is_banned("dave", "203.0.113.6")
    assert not await guard.is_banned("alice", "203.0.113.6")


async def test_ipv6_addresses_count_per_slash_64(backend: Backend) -> None:
    guard = regulator(backend)
    for suffix in ("1", "2", "3"):
        await guard.record_failure(None, f"2001:db8:1:2::{suffix}")
    assert await guard.is_banned(None, "2001:db8:1:2:ffff::1")
    assert not await guard.is_banned(None, "2001:db8:1:3::1")
    assert ip_subject("::ffff:192.0.2.1") == "ip:192.0.2.1"


async def test_failures_outside_the_window_do_not_count(backend: Backend) -> None:
    guard = regulator(backend)
    await guard.record_failure("alice", None)
    backend.clock.advance(70)
    await guard.record_failure("alice", None)
    backend.clock.advance(70)  # the first failure is now older than find_time (120 s)
    assert await guard.record_failure("alice", None) is False
    assert not await guard.is_banned("alice", None)
    assert await guard.record_failure("alice", None) is True


async def test_ban_ends_after_ban_time(backend: Backend) -> None:
    guard = regulator(backend)
    for _ in range(3):
        await guard.record_failure("alice", "192.0.2.1")
    backend.clock.advance(299)
    assert await guard.is_banned("alice", None)
    assert await guard.is_banned(None, "192.0.2.1")
    backend.clock.advance(2)
    assert not await guard.is_banned("alice", "192.0.2.1")
    assert await guard.list_bans() == []
    # And the counter started afresh: one more failure is not a ban.
    assert await guard.record_failure("alice", "192.0.2.1") is False


async def test_success_clears_the_users_failures_but_not_the_addresss(backend: Backend) -> None:
    guard = regulator(backend)
    await guard.record_failure("alice", "192.0.2.1")
    await guard.record_failure("alice", "192.0.2.2")
    await guard.record_success("alice", "192.0.2.3")
    await guard.record_failure("alice", "192.0.2.4")
    await guard.record_failure("alice", "192.0.2.5")
    assert not await guard.is_banned("alice", None)

    for user in ("bob", "carol"):
        await guard.record_failure(user, "203.0.113.1")
    await guard.record_success("dave", "203.0.113.1")
    await guard.record_failure("erin", "203.0.113.1")
    assert await guard.is_banned(None, "203.0.113.1")


async def test_list_and_clear_bans(backend: Backend) -> None:
    guard = regulator(backend)
    for _ in range(3):
        await guard.record_failure("Alice", "192.0.2.1")
    backend.clock.advance(10)
    for _ in range(3):
        await guard.record_failure("bob", "192.0.2.2")
    now = backend.clock.now
    bans = await guard.list_bans()
    assert [ban.value for ban in bans[2:]] in (["bob", "192.0.2.2"], ["192.0.2.2", "bob"])
    assert sorted_bans(bans) == sorted_bans(
        [
            Ban("user", "alice", now - 10 + 300),
            Ban("ip", "192.0.2.1", now - 10 + 300),
            Ban("user", "bob", now + 300),
            Ban("ip", "192.0.2.2", now + 300),
        ]
    )

    assert await guard.clear(username="ALICE") == 1
    assert not await guard.is_banned("alice", None)
    assert await guard.is_banned(None, "192.0.2.1")
    assert await guard.clear(ip="192.0.2.1") == 1
    assert not await guard.is_banned("alice", "192.0.2.1")
    assert await guard.clear(username="alice") == 0
    assert sorted(b.value for b in await guard.list_bans()) == ["192.0.2.2", "bob"]
    assert await guard.clear() == 2
    assert await guard.list_bans() == []
    assert not await guard.is_banned("bob", "192.0.2.2")


def sorted_bans(bans: list[Ban]) -> list[tuple[str, str, float]]:
    return sorted((b.kind, b.value, round(b.until, 3)) for b in bans)


async def test_clear_forgets_recent_failures_too(backend: Backend) -> None:
    guard = regulator(backend)
    await guard.record_failure("alice", None)
    await guard.record_failure("alice", None)
    assert await guard.clear(username="alice") == 0
    assert await guard.record_failure("alice", None) is False


async def test_zero_max_retries_disables_regulation(backend: Backend) -> None:
    guard = regulator(backend, RegulationSettings(max_retries=0))
    for _ in range(10):
        assert await guard.record_failure("alice", "192.0.2.1") is False
    assert not await guard.is_banned("alice", "192.0.2.1")
    assert await guard.list_bans() == []


async def test_concurrent_failures_are_all_counted(backend: Backend) -> None:
    settings = RegulationSettings(max_retries=20)
    stores = [backend.store] if backend.name == "memory" else [backend.store, backend.another()]
    guards = [Regulator(settings, s.regulation, clock=backend.clock) for s in stores]
    # 19 failures at once, spread over every store (process) sharing the backend.
    await asyncio.gather(
        *(guards[i % len(guards)].record_failure("alice", f"192.0.2.{i}") for i in range(19))
    )
    assert not await guards[0].is_banned("alice", None)
    assert await guards[-1].record_failure("alice", "192.0.2.200") is True
    assert await guards[0].is_banned("alice", None)


@pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)  # memory: one process
async def test_bans_are_shared_by_every_process_on_the_backend(backend: Backend) -> None:
    first = regulator(backend)
    second = Regulator(DEFAULTS, backend.another().regulation, clock=backend.clock)
    for _ in range(3):
        await first.record_failure("alice", None)
    assert await second.is_banned("alice", None)
    assert [b.value for b in await second.list_bans()] == ["alice"]
    assert await second.clear(username="alice") == 1
    assert not await first.is_banned("alice", None)


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_backend_down_raises_unavailable(backend: Backend, redis_server: RedisServer) -> None:
    guard = regulator(backend)
    with redis_server.down():
        with pytest.raises(SessionStoreUnavailable):
            await guard.is_banned("alice", "192.0.2.1")
        with pytest.raises(SessionStoreUnavailable):
            await guard.record_failure("alice", "192.0.2.1")
        with pytest.raises(SessionStoreUnavailable):
            await guard.list_bans()
    assert not await guard.is_banned("alice", "192.0.2.1")


def test_subjects_are_normalised() -> None:
    assert user_subject("  Alice ") == "user:alice"
    assert ip_subject("2001:DB8::1") == "ip:2001:db8::/64"
    assert ip_subject("192.0.2.1") == "ip:192.0.2.1"
