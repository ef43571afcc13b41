"""Fail closed: a store, directory or code failure in the decision path is a deny, never a
200, and the answer carries no internals."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config.settings import Settings, load_settings
from gateway.credentials.api_keys import generate_api_key, hash_secret
from gateway.observability.throttle import DEFAULT_INTERVAL
from gateway.policy import Level
from gateway.storage import ApiKeyRecord, open_storage
from tests.decision.support import Gateway, ask, write_config
from tests.services import LdapServer, PostgresServer, RedisServer


@pytest.fixture
def redis_gateway(tmp_path: Path, redis_server: RedisServer) -> Iterator[Gateway]:
    session_extra = (
        f"  redis:\n    url: {redis_server.url}\n    key_prefix: 'failclosed:{tmp_path.name}:'\n"
        "    timeout: 1s\n  cache_ttl: 0.05s\n"
    )
    settings = load_settings(write_config(tmp_path, store="redis", session=session_extra))
    app = create_app(settings)
    with TestClient(app, base_url="http://gateway.internal", client=("127.0.0.1", 41000)) as client:
        yield Gateway(app, client)


def test_session_store_down_denies_instead_of_allowing(
    redis_gateway: Gateway, redis_server: RedisServer
) -> None:
    session = redis_gateway.login("john")
    cookie = redis_gateway.cookie(session)
    assert ask(redis_gateway, "https://app.example.com/", cookie=cookie).status_code == 200
    with redis_server.down():
        time.sleep(0.1)  # past the in-process session cache
        response = ask(redis_gateway, "https://app.example.com/", cookie=cookie)
        assert response.status_code == 503
        assert "remote-user" not in response.headers
        assert response.text == "Service Unavailable"
        # Readiness tells the operator (and a load balancer) why.
        ready = redis_gateway.client.get("/api/ready")
        assert ready.status_code == 503
        assert ready.json()["session_store"] == "unreachable"
    # Back up. This test Redis keeps nothing on disk, so the old session is gone: the cookie
    # is now simply anonymous (a redirect, not an error), and a new sign-in works.
    assert ask(redis_gateway, "https://app.example.com/", cookie=cookie).status_code == 302
    fresh = redis_gateway.login("john")
    response = ask(redis_gateway, "https://app.example.com/", cookie=redis_gateway.cookie(fresh))
    assert response.status_code == 200
    assert response.headers["remote-user"] == "john"


def test_bypass_without_cookie_does_not_need_the_store(
    redis_gateway: Gateway, redis_server: RedisServer
) -> None:
    with redis_server.down():
        assert ask(redis_gateway, "https://public.example.com/").status_code == 200
        assert ask(redis_gateway, "https://app.example.com/").status_code == 302


def test_unexpected_error_in_the_decision_is_503(
    redis_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = redis_gateway.app.runtime
    assert runtime is not None
    engine = runtime.policy.current

    def broken(*_: object) -> Level:
        raise RuntimeError("SELECT * FROM secrets WHERE path='/etc/gateway/keys'")

    monkeypatch.setattr(engine, "decide", broken)
    session = redis_gateway.login("john")
    for url in ("https://public.example.com/", "https://app.example.com/"):
        response = ask(redis_gateway, url, cookie=redis_gateway.cookie(session))
        assert response.status_code == 503
        assert "SELECT" not in response.text and "/etc/gateway" not in response.text
        assert "remote-user" not in response.headers


def ldap_authentication(server: LdapServer) -> str:
    return (
        "authentication:\n  backend: ldap\n  ldap:\n    implementation: openldap\n"
        f"    urls: [{server.url}]\n    base_dn: {server.base_dn}\n"
        "    additional_users_dn: ou=people\n    additional_groups_dn: ou=groups\n"
        f"    user: {server.bind_dn}\n    password: {server.bind_password}\n"
        "    connect_timeout: 1s\n    read_timeout: 1s\n    retries: 0\n"
        "    refresh_interval: 1s\n"
    )


@pytest.fixture
def ldap_gateway(tmp_path: Path, ldap_server: LdapServer) -> Iterator[Gateway]:
    settings = load_settings(
        write_config(tmp_path, authentication=ldap_authentication(ldap_server))
    )
    app = create_app(settings)
    with TestClient(app, base_url="http://gateway.internal", client=("127.0.0.1", 41000)) as client:
        yield Gateway(app, client)


def test_directory_down_keeps_existing_sessions_and_refuses_new_logins_clearly(
    ldap_gateway: Gateway, ldap_server: LdapServer
) -> None:
    session = ldap_gateway.login("john")
    cookie = ldap_gateway.cookie(session)
    with ldap_server.down():
        time.sleep(1.2)  # the session's groups are due for a refresh, which cannot happen
        response = ask(ldap_gateway, "https://app.example.com/", cookie=cookie)
        assert response.status_code == 200
        assert response.headers["remote-user"] == "john"
        assert response.headers["remote-groups"] == "admins,dev"

        portal = {"Host": "auth.example.com", "X-Forwarded-Proto": "https"}
        page = ldap_gateway.client.get("/", headers=portal)
        field = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        # The CSRF cookie is Secure; this client speaks plain HTTP as Caddy does, so pass it.
        csrf_cookie = page.headers["set-cookie"].split(";", 1)[0]
        answer = ldap_gateway.client.post(
            "/login",
            data={"csrf": field, "username": "harry", "password": "password"},
            headers={**portal, "Origin": "https://auth.example.com", "Cookie": csrf_cookie},
        )
        assert answer.status_code == 503
        assert "temporarily unavailable" in answer.text
        assert "Traceback" not in answer.text and "ldap://" not in answer.text


def test_directory_changes_reach_existing_sessions(ldap_gateway: Gateway) -> None:
    # The session claims groups the directory does not give harry; the refresh corrects it.
    runtime = ldap_gateway.app.runtime
    assert runtime is not None
    cookie_domain = runtime.sessions.cookie_domain_for("example.com")
    assert cookie_domain is not None

    async def create() -> object:
        return await runtime.sessions.login(
            cookie_domain, username="harry", groups=("admins", "dev"), email="harry@example.com"
        )

    session = ldap_gateway.client.portal.call(create)  # type: ignore[union-attr]
    time.sleep(1.2)
    response = ask(ldap_gateway, "https://app.example.com/", cookie=ldap_gateway.cookie(session))  # type: ignore[arg-type]
    assert response.status_code == 200
    assert response.headers["remote-groups"] == "dev"


def test_api_key_with_storage_down_is_503_not_a_stale_allow(
    tmp_path: Path,
    postgres_server: PostgresServer,
    postgres_database: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _api_key_settings(tmp_path, postgres_database, "connect_timeout: 1s")
    key = asyncio.run(_create_key(settings, "ci"))
    app = create_app(settings)
    with TestClient(app, base_url="http://gateway.internal", client=("127.0.0.1", 41000)) as client:
        gateway = Gateway(app, client)
        url = "https://api.example.com/v1"
        assert ask(gateway, url, client_ip="10.0.0.1", extra={"X-API-Key": key}).status_code == 200
        with postgres_server.down():
            time.sleep(1.3)  # past the one-second machine memo and the record cache
            caplog.clear()
            started = time.monotonic()
            for _ in range(6):
                response = ask(gateway, url, client_ip="10.0.0.1", extra={"X-API-Key": key})
                assert response.status_code == 503
                assert response.json() == {"error": "temporarily_unavailable"}
                assert "remote-user" not in response.headers
            # An outage is a line per kind per interval, not one per refused request.
            refusals = [r for r in caplog.records if r.name == "gateway.decision"]
            allowed = 1 + int((time.monotonic() - started) // DEFAULT_INTERVAL)
            assert 0 < len(refusals) <= allowed < 6, [r.getMessage() for r in refusals]


def test_hung_storage_costs_an_api_key_request_the_timeout_and_readiness_says_so(
    tmp_path: Path, postgres_server: PostgresServer, postgres_database: str
) -> None:
    settings = _api_key_settings(tmp_path, postgres_database, "statement_timeout: 2s")
    key = asyncio.run(_create_key(settings, "ci"))
    app = create_app(settings)
    with TestClient(app, base_url="http://gateway.internal", client=("127.0.0.1", 41000)) as client:
        gateway = Gateway(app, client)
        url = "https://api.example.com/v1"
        assert ask(gateway, url, client_ip="10.0.0.1", extra={"X-API-Key": key}).status_code == 200
        assert client.get("/api/ready").status_code == 200
        time.sleep(1.3)  # past the one-second machine memo and the record cache
        with postgres_server.frozen():
            started = time.monotonic()
            response = ask(gateway, url, client_ip="10.0.0.1", extra={"X-API-Key": key})
            assert response.status_code == 503
            assert time.monotonic() - started < 2 + 1.5
            started = time.monotonic()
            ready = client.get("/api/ready")
            assert time.monotonic() - started < 2 + 1.5
            assert ready.status_code == 503
            assert ready.json()["storage"] == "unreachable"
            assert "session_store" not in ready.json()  # SQLite sessions still answer


def _api_key_settings(directory: Path, dsn: str, timeout: str) -> Settings:
    """PostgreSQL storage with ``timeout``, and a rule letting the API key ``ci`` in."""
    extra = (
        "storage:\n  type: postgres\n"
        f"  postgres: {{dsn: '{dsn}', {timeout}}}\n"
        "credentials:\n  api_keys: {cache_ttl: 0.2s}\n"
    )
    config = write_config(directory, extra=extra)
    policy = directory / "policy.yml"
    policy.write_text(
        policy.read_text().replace(
            "  rules:\n",
            "  rules:\n    - domain: api.example.com\n      subject: 'key:ci'\n"
            "      policy: one_factor\n",
            1,
        )
    )
    return load_settings(config)


async def _create_key(settings: Settings, name: str) -> str:
    storage = await open_storage(settings)
    try:
        key_id, key = generate_api_key()
        await storage.api_keys.create_api_key(
            ApiKeyRecord(
                key_id=key_id, name=name, owner="ops",
                secret_hash=hash_secret(settings.secrets.hash_key.encode(), key),
                previous_secret_hash=None, previous_valid_until=None, groups=(), scopes=(),
                networks=(), expires_at=None, disabled=False, created_at=time.time(),
                last_used_at=None,
            )
        )  # fmt: skip
        return key
    finally:
        await storage.close()


def _gateway_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name.startswith("gateway")]


def test_an_outage_logs_a_line_per_kind_not_a_traceback_per_request(
    redis_gateway: Gateway, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    session = redis_gateway.login("john")
    cookie = redis_gateway.cookie(session)
    caplog.set_level(logging.INFO)
    with redis_server.down():
        time.sleep(0.1)  # past the in-process session cache
        for _ in range(200):
            response = ask(redis_gateway, "https://app.example.com/", cookie=cookie)
            assert response.status_code == 503
            time.sleep(0.001)  # not the same instant: each request reaches the store again
    records = _gateway_records(caplog)
    # One line from the store, one from the endpoint; an interval (10 s) has not passed.
    assert 0 < len(records) <= 4, [record.getMessage() for record in records]
    assert all(record.exc_info is None for record in records)
    assert any("session store" in record.getMessage() for record in records)


def test_an_unexpected_error_keeps_its_traceback_once_per_interval(
    redis_gateway: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = redis_gateway.app.runtime
    assert runtime is not None

    def broken(*_: object) -> Level:
        raise RuntimeError("a bug")

    monkeypatch.setattr(runtime.policy.current, "decide", broken)
    for _ in range(50):
        assert ask(redis_gateway, "https://public.example.com/").status_code == 503
    records = [r for r in _gateway_records(caplog) if r.name == "gateway.decision"]
    assert len(records) == 1
    assert records[0].exc_info is not None and "a bug" in str(records[0].exc_info[1])
