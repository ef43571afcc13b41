"""The LDAP backend against a real slapd (tests/services.py, data in tests/ldap/directory.ldif)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from gateway.config.yaml import ConfigError
from gateway.identity.circuit import CircuitState
from gateway.identity.ldap import LdapBackend, LdapConfig
from gateway.identity.ldap.settings import LdapSettings
from gateway.identity.model import DirectoryUnavailable, User
from tests.services import LdapServer, free_port

pytestmark = pytest.mark.services

T = TypeVar("T")

OBRIEN = "o'brien*(x)\\y"
DISABLED_BY_GROUP = (
    "(&({username_attribute}={input})(objectClass=person)"
    "(!(memberOf=cn=disabled,ou=groups,dc=example,dc=com)))"
)
DISABLED_BY_SHADOW_EXPIRE = (
    "(&({username_attribute}={input})(objectClass=person)(!(shadowExpire=*)))"
)
GROUPS_OF_MANNY = tuple(f"group{n:02d}" for n in range(1, 31))


def settings(server: LdapServer, **overrides: Any) -> LdapSettings:
    values: dict[str, Any] = {
        "implementation": "openldap",
        "urls": (server.url,),
        "base_dn": server.base_dn,
        "additional_users_dn": "ou=people",
        "additional_groups_dn": "ou=groups",
        "user": server.bind_dn,
        "password": server.bind_password,
        "connect_timeout": 2,
        "read_timeout": 2,
    }
    values.update(overrides)
    return LdapSettings(**values)


def with_backend(
    config: LdapSettings, scenario: Callable[[LdapBackend], Awaitable[T]], **options: Any
) -> T:
    async def main() -> T:
        backend = LdapBackend(config, **options)
        await backend.start()
        try:
            return await scenario(backend)
        finally:
            await backend.close()

    return asyncio.run(main())


def login(config: LdapSettings, username: str, password: str) -> User | None:
    async def scenario(backend: LdapBackend) -> User | None:
        return await backend.authenticate(username, password)

    return with_backend(config, scenario)


def test_login_with_the_right_password(ldap_server: LdapServer) -> None:
    assert login(settings(ldap_server), "john", "password") == User(
        "john", "John Doe", "john@example.com", ("admins", "dev")
    )


def test_username_is_the_directory_spelling(ldap_server: LdapServer) -> None:
    user = login(settings(ldap_server), "JOHN", "password")
    assert user is not None and user.username == "john"


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("john", "wrong"),
        ("john", ""),  # would be an unauthenticated bind: refused before asking
        ("nobody", "password"),
        ("", "password"),
        ("harry", "PASSWORD"),
    ],
)
def test_login_refused(ldap_server: LdapServer, username: str, password: str) -> None:
    assert login(settings(ldap_server), username, password) is None


@pytest.mark.parametrize("users_filter", [DISABLED_BY_GROUP, DISABLED_BY_SHADOW_EXPIRE])
def test_disabled_user_cannot_log_in_despite_group_membership(
    ldap_server: LdapServer, users_filter: str
) -> None:
    config = settings(ldap_server, users_filter=users_filter)

    async def scenario(backend: LdapBackend) -> list[User | None]:
        return [
            await backend.authenticate("dave", "password"),
            await backend.get_user("dave"),
            await backend.authenticate("harry", "password"),
        ]

    dave_login, dave_refresh, harry = with_backend(config, scenario)
    assert dave_login is None and dave_refresh is None
    assert harry is not None and harry.groups == ("dev",)


def test_without_a_disabled_clause_the_filter_lets_dave_in(ldap_server: LdapServer) -> None:
    """The filter is what disables: the default one does not know the site's convention."""
    user = login(settings(ldap_server), "dave", "password")
    assert user is not None and "disabled" in user.groups


def test_special_characters_in_a_username(ldap_server: LdapServer) -> None:
    user = login(settings(ldap_server), OBRIEN, "password")
    assert user == User(OBRIEN, "Pat O'Brien *(x)\\y", "obrien@example.com", ("dev", "r&d (team)*"))


@pytest.mark.parametrize(
    "username",
    ["*", ")(uid=*", "*)(uid=*))(|(uid=*", "jo*", "john)(|(uid=*", "o'brien*", "\\2a", "john\x00"],
)
def test_filter_metacharacters_cannot_match_anyone(ldap_server: LdapServer, username: str) -> None:
    async def scenario(backend: LdapBackend) -> tuple[User | None, User | None]:
        return await backend.authenticate(username, "password"), await backend.get_user(username)

    assert with_backend(settings(ldap_server), scenario) == (None, None)


def test_many_groups(ldap_server: LdapServer) -> None:
    user = login(settings(ldap_server), "manny", "password")
    assert user is not None and user.groups == GROUPS_OF_MANNY


@pytest.mark.parametrize(
    ("username", "groups"),
    [
        ("john", ("admins", "dev")),
        ("bob", ()),
        ("manny", GROUPS_OF_MANNY),
        (OBRIEN, ("dev", "r&d (team)*")),
    ],
)
def test_memberof_and_filter_modes_agree(
    ldap_server: LdapServer, username: str, groups: tuple[str, ...]
) -> None:
    for mode in ("filter", "memberof"):
        user = login(settings(ldap_server, group_search_mode=mode), username, "password")
        assert user is not None and user.groups == groups, mode


def test_groups_filter_with_username_placeholder(ldap_server: LdapServer) -> None:
    # groupOfNames has no memberUid; a {username}-based filter on cn shows the placeholder works
    config = settings(ldap_server, groups_filter="(&(cn={username})(objectClass=groupOfNames))")
    user = login(config, "john", "password")
    assert user is not None and user.groups == ()


def test_get_user_refreshes_groups(ldap_server: LdapServer) -> None:
    async def scenario(backend: LdapBackend) -> tuple[User | None, User | None]:
        return await backend.get_user("harry"), await backend.get_user("nobody")

    harry, nobody = with_backend(settings(ldap_server), scenario)
    assert harry == User("harry", "Harry Smith", "harry@example.com", ("dev",))
    assert nobody is None


def test_failover_to_the_second_url(ldap_server: LdapServer) -> None:
    closed = f"ldap://127.0.0.1:{free_port()}"
    config = settings(ldap_server, urls=(closed, ldap_server.url))
    started = time.monotonic()
    user = login(config, "john", "password")
    assert user is not None and user.username == "john"
    assert time.monotonic() - started < 2.0


def test_ldaps_with_the_configured_ca(ldap_server: LdapServer) -> None:
    config = settings(
        ldap_server, urls=(ldap_server.ldaps_url,), ca_certificate=ldap_server.ca_cert_path
    )
    assert login(config, "harry", "password") is not None


def test_start_tls_with_the_configured_ca(ldap_server: LdapServer) -> None:
    config = settings(ldap_server, start_tls=True, ca_certificate=ldap_server.ca_cert_path)
    assert login(config, "harry", "password") is not None


def test_untrusted_certificate_is_refused(
    ldap_server: LdapServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(ldap_server, urls=(ldap_server.ldaps_url,), retries=0)
    with pytest.raises(DirectoryUnavailable, match=r"^directory unavailable$"):
        login(config, "harry", "password")
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_tls_skip_verify_connects_anyway(ldap_server: LdapServer) -> None:
    config = settings(ldap_server, urls=(ldap_server.ldaps_url,), tls_skip_verify=True)
    assert login(config, "harry", "password") is not None


def test_wrong_service_password_is_unavailable_not_retried(
    ldap_server: LdapServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(ldap_server, password="not-the-password", retries=3)
    with pytest.raises(DirectoryUnavailable):
        login(config, "john", "password")
    assert "service account bind failed: 49 invalidCredentials" in caplog.text
    assert "retrying" not in caplog.text


def test_concurrent_logins_share_a_small_pool(ldap_server: LdapServer) -> None:
    config = settings(ldap_server, pool_size=2)
    names = ["john", "harry", "bob", "manny"] * 5

    async def scenario(backend: LdapBackend) -> list[User | None]:
        return list(
            await asyncio.gather(*(backend.authenticate(name, "password") for name in names))
        )

    users = with_backend(config, scenario)
    assert [user.username if user else None for user in users] == names


def test_unknown_user_costs_a_bind_like_a_wrong_password(ldap_server: LdapServer) -> None:
    assert login(settings(ldap_server), "nobody-at-all", "password") is None
    log = ldap_server.log_tail(60)
    assert 'filter="(&(uid=nobody-at-all)(objectClass=person))"' in log
    assert 'BIND dn="cn=gateway-decoy-' in log


# The server is stopped and started from the main thread, not asyncio.to_thread: slapd is
# tied to the thread that starts it (PR_SET_PDEATHSIG) and would die with a worker thread.


def test_stopped_directory_fails_fast_opens_the_circuit_and_recovers(
    ldap_server: LdapServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(ldap_server, retries=1, circuit_breaker_failures=2, circuit_breaker_reset=1.0)

    async def scenario(backend: LdapBackend) -> None:
        assert await backend.authenticate("john", "password") is not None
        ldap_server.stop()
        try:
            for _ in range(2):
                started = time.monotonic()
                with pytest.raises(DirectoryUnavailable, match=r"^directory unavailable$"):
                    await backend.authenticate("john", "password")
                assert time.monotonic() - started < 1.5
            assert backend.breaker.state is CircuitState.OPEN

            started = time.monotonic()
            with pytest.raises(DirectoryUnavailable):
                await backend.get_user("john")
            assert time.monotonic() - started < 0.05  # the open circuit does not even try
        finally:
            ldap_server.start()
        await asyncio.sleep(1.1)  # circuit_breaker_reset: the next call is the probe
        assert await backend.authenticate("john", "password") is not None
        assert backend.breaker.state is CircuitState.CLOSED

    with caplog.at_level(logging.INFO, logger="gateway.identity.ldap"):
        with_backend(config, scenario)
    assert "LDAP directory unavailable, circuit open for 1s" in caplog.text


def test_a_restarted_directory_is_invisible_to_the_next_login(ldap_server: LdapServer) -> None:
    config = settings(ldap_server, retries=0, circuit_breaker_failures=1)

    async def scenario(backend: LdapBackend) -> None:
        assert await backend.authenticate("john", "password") is not None
        ldap_server.stop()
        ldap_server.start()
        # the pooled connection is dead; it is replaced without using a retry
        assert await backend.authenticate("john", "password") is not None
        assert backend.breaker.state is CircuitState.CLOSED

    with_backend(config, scenario)


def test_hung_directory_times_out_instead_of_hanging(ldap_server: LdapServer) -> None:
    config = settings(ldap_server, read_timeout=1, retries=1, circuit_breaker_failures=5)

    async def scenario(backend: LdapBackend) -> None:
        assert await backend.authenticate("harry", "password") is not None
        ldap_server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(DirectoryUnavailable):
                await backend.authenticate("harry", "password")
            elapsed = time.monotonic() - started
            # Two attempts of read_timeout, then a clear failure: not a hang.
            assert elapsed >= 1.0, elapsed
            assert elapsed < 5.0, elapsed
        finally:
            ldap_server.resume()
        assert await backend.authenticate("harry", "password") is not None

    with_backend(config, scenario)


# -- configuration (no server needed) ---------------------------------------------------------


def plain_settings(**overrides: Any) -> LdapSettings:
    values: dict[str, Any] = {"urls": ("ldap://ldap.example.com",), "base_dn": "dc=example,dc=com"}
    values.update(overrides)
    return LdapSettings(**values)


def test_active_directory_preset() -> None:
    config = LdapConfig.from_settings(plain_settings(implementation="activedirectory"))
    assert config.username_attribute == "sAMAccountName"
    assert config.users_filter == (
        "(&(|(sAMAccountName={input})(userPrincipalName={input}))(objectClass=person)"
        "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"
    )
    assert "sAMAccountType=268435456" in config.groups_filter


def test_explicit_options_win_over_the_preset() -> None:
    config = LdapConfig.from_settings(
        plain_settings(
            implementation="activedirectory",
            attributes={"username": "cn"},
            users_filter="(&({username_attribute}={input})(objectClass=user))",
        )
    )
    assert config.username_attribute == "cn"
    assert config.users_filter == "(&(cn={input})(objectClass=user))"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"users_filter": "(uid=john)"}, "must contain {input}"),
        ({"users_filter": "(&(uid={input})"}, "is not a valid LDAP filter"),
        ({"users_filter": "(&(uid={input})({usrname}=x))"}, "unknown placeholders {usrname}"),
        ({"groups_filter": "(objectClass=groupOfNames)"}, "must contain {dn} or {username}"),
        ({"groups_filter": "(member={user_dn})"}, "may only use {dn}, {username}, {input}"),
    ],
)
def test_bad_filters_are_configuration_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"authentication\.ldap: ") as caught:
        LdapConfig.from_settings(plain_settings(**overrides))
    assert message in str(caught.value)
