"""Several gateways, one state: two replicas sharing Redis (sessions, bans) and PostgreSQL
(records), and one gateway with several worker processes sharing SQLite."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from gateway.security.crypto import generate_key
from tests.e2e.stack import E2E_POLICY, PASSWORD, running_gateway, users_text
from tests.services import RedisServer, free_port
from tests.support.config import USERS_FILE, GatewayConfig, Section

KEY = generate_key()


def config(
    directory: Path,
    port: int,
    *,
    store: str,
    session: str = "",
    storage: Section,
    cache_ttl: str = "0.2s",
) -> Path:
    directory.mkdir(exist_ok=True)
    return GatewayConfig(
        address="127.0.0.1",
        port=port,
        encryption_keys=[KEY],
        hash_key="r" * 40,
        store=store,
        session=session + f"  cache_ttl: {cache_ttl}\n",
        authentication=USERS_FILE,
        storage=storage,
        policy=E2E_POLICY,
        users=users_text(),
    ).write(directory)


def sign_in(port: int, username: str, password: str = PASSWORD) -> httpx.Response:
    portal = {"Host": "auth.example.com", "X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=portal) as client:
        page = client.get("/")
        field = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert field
        return client.post(
            "/login",
            data={"csrf": field.group(1), "username": username, "password": password},
            headers={
                "Origin": "https://auth.example.com",
                "Cookie": page.headers["set-cookie"].split(";", 1)[0],
            },
        )


def session_cookie(answer: httpx.Response) -> str:
    assert answer.status_code == 303, answer.text[:300]
    value = next(
        v for v in answer.headers.get_list("set-cookie") if v.startswith("gateway_session=")
    )
    return value.split(";", 1)[0]


def decide(port: int, cookie: str) -> httpx.Response:
    return httpx.get(
        f"http://127.0.0.1:{port}/api/authz/forward-auth",
        headers={
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "app.example.com",
            "X-Forwarded-Uri": "/",
            "X-Forwarded-Method": "GET",
            "Accept": "text/html",
            "Cookie": cookie,
        },
    )


def test_two_replicas_share_sessions_bans_and_logout(
    tmp_path: Path, redis_server: RedisServer, postgres_database: str
) -> None:
    prefix = f"replicas-{tmp_path.name}:"
    redis = f"  redis: {{url: '{redis_server.url}', key_prefix: '{prefix}'}}\n"
    storage = {"type": "postgres", "postgres": {"dsn": postgres_database}}
    port_a, port_b = free_port(), free_port()
    config_a = config(tmp_path / "a", port_a, store="redis", session=redis, storage=storage)
    config_b = config(tmp_path / "b", port_b, store="redis", session=redis, storage=storage)
    with running_gateway(config_a, port_a), running_gateway(config_b, port_b):
        # Signed in on replica A, recognised by replica B.
        cookie = session_cookie(sign_in(port_a, "john"))
        answer = decide(port_b, cookie)
        assert answer.status_code == 200
        assert answer.headers["remote-user"] == "john"

        # Failures on A ban harry on B too.
        for _ in range(3):
            assert sign_in(port_a, "harry", "wrong").status_code == 401
        assert sign_in(port_b, "harry").status_code == 401

        # Signed out through B's portal: A stops answering 200 once its short cache expires.
        with httpx.Client(base_url=f"http://127.0.0.1:{port_b}") as client:
            page = client.get(
                "/",
                headers={
                    "Host": "auth.example.com",
                    "X-Forwarded-Proto": "https",
                    "Cookie": cookie,
                },
            )
            field = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert field
            csrf_cookie = page.headers["set-cookie"].split(";", 1)[0]
            logout = client.post(
                "/logout",
                data={"csrf": field.group(1)},
                headers={
                    "Host": "auth.example.com",
                    "X-Forwarded-Proto": "https",
                    "Origin": "https://auth.example.com",
                    "Cookie": f"{cookie}; {csrf_cookie}",
                },
            )
            assert logout.status_code in (302, 303)
        time.sleep(0.3)
        assert decide(port_a, cookie).status_code == 302


def test_worker_processes_share_sqlite_sessions(tmp_path: Path) -> None:
    port = free_port()
    path = config(tmp_path / "w", port, store="sqlite", storage={"type": "sqlite"})
    with running_gateway(path, port, extra_args=["--workers", "2"]):
        cookie = session_cookie(sign_in(port, "john"))
        # New connections are spread over both workers; every one must know the session.
        answers = [decide(port, cookie) for _ in range(40)]
        assert {a.status_code for a in answers} == {200}
        assert {a.headers["remote-user"] for a in answers} == {"john"}


# -- with a cache that outlives any test: only the change feed can end a cached session -----

PROPAGATION_BOUND = 5.0  # what happens is within a second; generous for a busy machine


def portal_logout(port: int, cookie: str) -> None:
    """Sign out through the portal of the gateway on ``port``, as a browser would."""
    portal = {"Host": "auth.example.com", "X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=portal) as client:
        page = client.get("/", headers={"Cookie": cookie})
        field = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert field
        csrf_cookie = page.headers["set-cookie"].split(";", 1)[0]
        answer = client.post(
            "/logout",
            data={"csrf": field.group(1)},
            headers={"Origin": "https://auth.example.com", "Cookie": f"{cookie}; {csrf_cookie}"},
        )
        assert answer.status_code in (302, 303)


def denied_everywhere_soon(ports: list[int], cookie: str, tries: int) -> None:
    """Poll (bounded) until ``tries`` new connections to each port all answer 302."""
    deadline = time.monotonic() + PROPAGATION_BOUND
    while True:
        codes = {decide(port, cookie).status_code for port in ports for _ in range(tries)}
        if codes == {302}:
            return
        assert time.monotonic() < deadline, f"still {codes} after {PROPAGATION_BOUND:g}s"
        time.sleep(0.05)


def test_a_logout_reaches_a_replica_whose_cache_would_keep_it(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    prefix = f"feed-{tmp_path.name}:"
    redis = f"  redis: {{url: '{redis_server.url}', key_prefix: '{prefix}'}}\n"
    port_a, port_b = free_port(), free_port()
    storage = {"type": "sqlite"}
    config_a = config(
        tmp_path / "a", port_a, store="redis", session=redis, storage=storage, cache_ttl="1h"
    )
    config_b = config(
        tmp_path / "b", port_b, store="redis", session=redis, storage=storage, cache_ttl="1h"
    )
    with running_gateway(config_a, port_a), running_gateway(config_b, port_b):
        cookie = session_cookie(sign_in(port_a, "john"))
        for port in (port_a, port_b):  # both replicas have it cached now
            assert decide(port, cookie).status_code == 200
        portal_logout(port_b, cookie)
        denied_everywhere_soon([port_a, port_b], cookie, tries=1)


def test_worker_processes_follow_each_others_logouts(tmp_path: Path) -> None:
    port = free_port()
    path = config(tmp_path / "w", port, store="sqlite", storage={"type": "sqlite"}, cache_ttl="1h")
    with running_gateway(path, port, extra_args=["--workers", "2"]):
        cookie = session_cookie(sign_in(port, "john"))
        # New connections are spread over both workers: both cache the session.
        assert {decide(port, cookie).status_code for _ in range(40)} == {200}
        portal_logout(port, cookie)  # handled by one of them
        denied_everywhere_soon([port], cookie, tries=20)
