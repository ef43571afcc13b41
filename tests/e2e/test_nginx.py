"""nginx in front, with the shipped deploy/nginx/gateway.conf: auth_request against
/api/authz/auth-request, the 401 + Location turned into a redirect for browsers, the
identity headers set on the upstream request."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trustme

from tests.e2e.stack import (
    PASSWORD,
    ROOT,
    gateway_config,
    loopback_client,
    running_gateway,
    running_upstream,
    users_file_authentication,
)
from tests.services import NginxFactory, free_port


@dataclass
class NginxStack:
    port: int

    def url(self, host: str, path: str = "/") -> str:
        return f"https://{host}:{self.port}{path}"

    def client(self) -> httpx.Client:
        return loopback_client()


def shipped_config(port: int, gateway_port: int, upstream_port: int, cert: Path, key: Path) -> str:
    text = (ROOT / "deploy" / "nginx" / "gateway.conf").read_text()
    text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    text = text.replace("/etc/ssl/example.com/fullchain.pem", str(cert))
    text = text.replace("/etc/ssl/example.com/privkey.pem", str(key))
    text = text.replace("127.0.0.1:9091", f"127.0.0.1:{gateway_port}")
    return text.replace("127.0.0.1:8080", f"127.0.0.1:{upstream_port}")


@pytest.fixture(scope="module")
def behind_nginx(
    nginx: NginxFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NginxStack]:
    directory = tmp_path_factory.mktemp("nginx")
    authority = trustme.CA()
    leaf = authority.issue_cert("auth.example.com", "app.example.com")
    cert, key = directory / "cert.pem", directory / "key.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    port, gateway_port, upstream_port = free_port(), free_port(), free_port()
    config = gateway_config(
        directory, port, gateway_port, authentication=users_file_authentication(directory)
    )
    with (
        running_upstream(upstream_port),
        running_gateway(config, gateway_port),
        nginx.start(shipped_config(port, gateway_port, upstream_port, cert, key), ports=[port]),
    ):
        yield NginxStack(port)


def sign_in(stack: NginxStack, client: httpx.Client, username: str) -> str:
    page = client.get(stack.url("auth.example.com", "/"))
    assert page.status_code == 200
    field = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert field
    answer = client.post(
        stack.url("auth.example.com", "/login"),
        data={"csrf": field.group(1), "username": username, "password": PASSWORD},
        headers={
            "Origin": f"https://auth.example.com:{stack.port}",
            "Cookie": page.headers["set-cookie"].split(";", 1)[0],
        },
    )
    assert answer.status_code == 303, answer.text[:300]
    cookie = next(
        v for v in answer.headers.get_list("set-cookie") if v.startswith("gateway_session=")
    )
    return cookie.split(";", 1)[0]


def test_browser_without_session_is_sent_to_the_portal(behind_nginx: NginxStack) -> None:
    with behind_nginx.client() as client:
        response = client.get(
            behind_nginx.url("app.example.com", "/reports?q=1"), headers={"Accept": "text/html"}
        )
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.hostname == "auth.example.com"
    assert parse_qs(location.query)["rd"] == [behind_nginx.url("app.example.com", "/reports?q=1")]


def test_api_client_without_session_gets_a_plain_401(behind_nginx: NginxStack) -> None:
    with behind_nginx.client() as client:
        response = client.get(
            behind_nginx.url("app.example.com", "/"), headers={"Accept": "application/json"}
        )
    assert response.status_code == 401
    assert "location" not in response.headers


def test_signed_in_user_reaches_upstream_with_identity_not_spoofable(
    behind_nginx: NginxStack,
) -> None:
    with behind_nginx.client() as client:
        cookie = sign_in(behind_nginx, client, "harry")
        response = client.get(
            behind_nginx.url("app.example.com", "/"),
            headers={"Cookie": cookie, "Remote-Groups": "admins", "Remote-User": "admin"},
        )
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert seen["remote-user"] == "harry"
    assert seen["remote-groups"] == "dev"
    assert seen["remote-name"] == "Harry Smith"


def test_decision_endpoints_are_not_reachable_from_outside(behind_nginx: NginxStack) -> None:
    with behind_nginx.client() as client:
        for path in ("/api/authz/auth-request", "/api/authz/forward-auth", "/metrics"):
            assert client.get(behind_nginx.url("auth.example.com", path)).status_code == 404
