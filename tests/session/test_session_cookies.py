"""Cookie domains and the exact Set-Cookie headers."""

from __future__ import annotations

import time

import pytest

from gateway.net import normalize_host
from gateway.session.manager import SessionManager
from gateway.session.settings import CookieDomain
from gateway.session.stores.memory import MemorySessionStore
from tests.session.backends import HASH_KEY, session_settings
from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio


def domains(*names: str) -> tuple[CookieDomain, ...]:
    return tuple(CookieDomain(domain=n, portal_url=f"https://auth.{n}") for n in names)


def manager_with(*names: str, clock: FakeClock | None = None, **options: object) -> SessionManager:
    settings = session_settings(cookies=domains(*names), **options)
    return SessionManager(
        settings, MemorySessionStore(), HASH_KEY, **({"clock": clock} if clock else {})
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com", "example.com"),
        ("app.example.com", "example.com"),
        ("a.b.c.example.com", "example.com"),
        ("APP.Example.COM", "example.com"),
        ("app.example.com:8443", "example.com"),
        ("app.example.com.", "example.com"),
        ("corp.example.com", "corp.example.com"),
        ("wiki.corp.example.com", "corp.example.com"),
        ("xcorp.example.com", "example.com"),
        ("example.org", "example.org"),
        ("www.example.org", "example.org"),
        ("example.com.evil.com", None),
        ("notexample.com", None),
        ("evil-example.com", None),
        ("example.co", None),
        ("com", None),
        ("", None),
        ("[::1]:443", None),
        ("127.0.0.1", None),
    ],
)
def test_cookie_domain_for_picks_the_longest_configured_domain(
    host: str, expected: str | None
) -> None:
    manager = manager_with("example.com", "corp.example.com", "example.org")
    # The lookup takes the canonical host, as the request parser and the portal compute it
    # (an empty host has no canonical form and reaches the lookup as itself).
    host = normalize_host(host) if host else host
    found = manager.cookie_domain_for(host)
    assert (found.domain if found else None) == expected
    assert manager.cookie_domain_for(host) is found  # the memoised answer is the same


async def test_browser_session_cookie_header() -> None:
    manager = manager_with("example.com", "example.org")
    com = manager.cookie_domain_for("example.com")
    assert com is not None
    session = await manager.login(com, username="alice")
    assert manager.cookie_header(session, com) == (
        f"gateway_session={session.id}; Domain=example.com; Path=/; Secure; HttpOnly; SameSite=Lax"
    )
    assert manager.cookie_name(com) == "gateway_session"


async def test_remember_me_cookie_header_has_max_age() -> None:
    clock = FakeClock(time.time())
    manager = manager_with("example.com", clock=clock)
    com = manager.cookie_domain_for("example.com")
    assert com is not None
    session = await manager.login(com, username="alice", remember_me=True)
    assert manager.cookie_header(session, com) == (
        f"gateway_session={session.id}; Domain=example.com; Path=/; Max-Age=2592000; "
        "Secure; HttpOnly; SameSite=Lax"
    )
    clock.advance(86400)
    assert "; Max-Age=2505600;" in manager.cookie_header(session, com)


async def test_domain_cookie_name_and_strict_same_site() -> None:
    settings = session_settings(same_site="strict")
    manager = SessionManager(settings, MemorySessionStore(), HASH_KEY)
    org = settings.cookies[1]
    session = await manager.login(org, username="alice")
    assert manager.cookie_header(session, org) == (
        f"org_session={session.id}; Domain=example.org; Path=/; Secure; HttpOnly; SameSite=Strict"
    )
    assert manager.clear_cookie_header(org) == (
        "org_session=; Domain=example.org; Path=/; Max-Age=0; "
        "Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; HttpOnly; SameSite=Strict"
    )


async def test_localhost_gets_a_host_only_cookie() -> None:
    manager = manager_with("localhost")
    local = manager.cookie_domain_for(normalize_host("localhost:9091"))
    assert local is not None
    session = await manager.login(local, username="alice")
    header = manager.cookie_header(session, local)
    assert header == f"gateway_session={session.id}; Path=/; Secure; HttpOnly; SameSite=Lax"


async def test_listed_session_without_id_cannot_become_a_cookie() -> None:
    manager = manager_with("example.com")
    com = manager.cookie_domain_for("example.com")
    assert com is not None
    await manager.login(com, username="alice")
    (listed,) = await manager.list_user("alice")
    assert listed.id == ""
    with pytest.raises(ValueError):
        manager.cookie_header(listed, com)
