"""API hosts through the real app: never a redirect, small JSON errors, network allowlists,
API keys made with the CLI's functions, and the credential exchange to the upstream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config.settings import Settings, load_settings
from gateway.credentials.api_keys import generate_api_key, hash_secret
from gateway.storage import ApiKeyRecord, open_storage
from tests.decision.support import Gateway, ask, write_config

MASTER_KEY = "sk-upstream-master-0123456789"

POLICY_EXTRA = """\
    - domain: api.llm.example.com
      resources: ["^/health$"]
      policy: bypass
    - domain: api.llm.example.com
      subject: "key:ci-runner"
      policy: one_factor
"""

CREDENTIALS = """\
credentials:
  api_hosts:
    - domain: api.llm.example.com
      networks: [10.20.0.0/16]
      upstream:
        - header: Authorization
          secret: llm-master-key
          format: "Bearer {secret}"
"""


@dataclass
class ApiGateway:
    gateway: Gateway
    key: str


async def _seed(settings: Settings) -> str:
    storage = await open_storage(settings)
    try:
        await storage.secrets.put_secret("llm-master-key", MASTER_KEY)
        key_id, key = generate_api_key()
        await storage.api_keys.create_api_key(
            ApiKeyRecord(
                key_id=key_id,
                name="ci-runner",
                owner="platform",
                secret_hash=hash_secret(settings.secrets.hash_key.encode(), key),
                previous_secret_hash=None,
                previous_valid_until=None,
                groups=("ci",),
                scopes=(),
                networks=(),
                expires_at=None,
                disabled=False,
                created_at=time.time(),
                last_used_at=None,
            )
        )
        return key
    finally:
        await storage.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiGateway]:
    config = write_config(tmp_path, extra=CREDENTIALS)
    policy = tmp_path / "policy.yml"
    # API rules first: the catch-all "*.example.com" would otherwise decide.
    policy.write_text(policy.read_text().replace("  rules:\n", "  rules:\n" + POLICY_EXTRA, 1))
    settings = load_settings(config)
    key = asyncio.run(_seed(settings))
    app = create_app(settings)
    with TestClient(app, base_url="http://gateway.internal", client=("127.0.0.1", 41000)) as client:
        yield ApiGateway(Gateway(app, client), key)


URL = "https://api.llm.example.com/v1/chat/completions"


def test_key_gets_identity_and_the_exchanged_upstream_credential(api: ApiGateway) -> None:
    response = ask(
        api.gateway, URL, method="POST", client_ip="10.20.3.4", accept="application/json",
        extra={"X-API-Key": api.key},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.headers["remote-user"] == "ci-runner"
    assert response.headers["remote-groups"] == "ci"
    # Caddy copies this onto the upstream request: the client never holds the master key.
    assert response.headers["authorization"] == f"Bearer {MASTER_KEY}"


def test_bearer_form_of_the_key_works_too(api: ApiGateway) -> None:
    response = ask(
        api.gateway, URL, client_ip="10.20.3.4", extra={"Authorization": f"Bearer {api.key}"}
    )
    assert response.status_code == 200
    assert response.headers["remote-user"] == "ci-runner"


def test_no_credential_is_401_json_never_a_redirect(api: ApiGateway) -> None:
    response = ask(api.gateway, URL, client_ip="10.20.3.4", accept="text/html")
    assert response.status_code == 401
    assert "location" not in response.headers
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json() == {"error": "unauthorized"}
    assert "authorization" not in response.headers


def test_wrong_secret_is_401_invalid_token(api: ApiGateway) -> None:
    key_id = api.key.split("_")[1]
    forged = f"gw_{key_id}_{'A' * 43}"
    response = ask(api.gateway, URL, client_ip="10.20.3.4", extra={"X-API-Key": forged})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token"}


def test_address_outside_the_hosts_allowlist_is_403(api: ApiGateway) -> None:
    response = ask(api.gateway, URL, client_ip="10.99.0.1", extra={"X-API-Key": api.key})
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden"}
    assert "authorization" not in response.headers


def test_default_allowlist_of_other_api_hosts_is_private_ranges_only(api: ApiGateway) -> None:
    url = "https://api.other.example.com/"
    assert ask(api.gateway, url, client_ip="203.0.113.5").status_code == 403
    assert ask(api.gateway, url, client_ip="192.168.1.5").status_code == 401


def test_bypass_rule_on_an_api_host_still_keeps_the_allowlist(api: ApiGateway) -> None:
    health = "https://api.llm.example.com/health"
    assert ask(api.gateway, health, client_ip="10.20.0.9").status_code == 200
    assert ask(api.gateway, health, client_ip="203.0.113.5").status_code == 403


@pytest.mark.parametrize("host", ["api.evil.com", "api.example.com.evil.com", "API.Evil.COM"])
def test_an_api_name_outside_every_cookie_domain_is_a_stranger(api: ApiGateway, host: str) -> None:
    # api_host_patterns (api.*) only name API hosts within the deployment's own domains; an
    # api.* host nobody declared is refused like any other unknown host, on every path.
    for path in ("/", "/v1/x", "/health"):
        response = ask(
            api.gateway, f"https://{host}{path}", client_ip="10.20.3.4",
            extra={"X-API-Key": api.key},
        )  # fmt: skip
        assert response.status_code == 400
        assert response.text == "the target host is outside every cookie domain"
        assert "remote-user" not in response.headers
