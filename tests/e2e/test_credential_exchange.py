"""Credential exchange through a real Caddy: a machine client presents only its own
revocable key; the upstream receives the service's master key instead, never the client's."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.credentials.api_keys import generate_api_key, hash_secret
from gateway.settings import load_settings
from gateway.storage import ApiKeyRecord, open_storage
from tests.e2e.stack import (
    ROOT,
    gateway_config,
    loopback_client,
    running_gateway,
    running_upstream,
    users_file_authentication,
)
from tests.services import CADDY_BINARIES, CaddyFactory, free_port

MASTER = "sk-service-master-key-42"

CADDYFILE = """\
{
	auto_https disable_redirects
}

import snippets.caddy

api.llm.example.com {
	tls internal
	import gateway_exchange
	reverse_proxy {$UPSTREAM}
}
"""

POLICY = """\
access_control:
  default_policy: deny
  rules:
    - domain: api.llm.example.com
      subject: "key:ci-runner"
      policy: one_factor
"""

CREDENTIALS = """\
credentials:
  api_hosts:
    - domain: api.llm.example.com
      upstream:
        - {header: Authorization, secret: llm-master, format: "Bearer {secret}"}
"""


async def seed(config: Path) -> str:
    settings = load_settings(config)
    storage = await open_storage(settings)
    try:
        await storage.put_secret("llm-master", MASTER)
        key_id, key = generate_api_key()
        await storage.create_api_key(
            ApiKeyRecord(
                key_id=key_id, name="ci-runner", owner="ci",
                secret_hash=hash_secret(settings.secrets.hash_key.encode(), key),
                previous_secret_hash=None, previous_valid_until=None, groups=(), scopes=(),
                networks=(), expires_at=None, disabled=False, created_at=time.time(),
                last_used_at=None,
            )
        )  # fmt: skip
        return key
    finally:
        await storage.close()


@pytest.mark.parametrize("binary", CADDY_BINARIES)
def test_upstream_sees_the_master_key_never_the_clients(
    caddy: CaddyFactory, tmp_path: Path, binary: str
) -> None:
    gateway_port, upstream_port = free_port(), free_port()
    caddyfile = CADDYFILE.replace(
        "import snippets.caddy", (ROOT / "caddy" / "snippets.caddy").read_text()
    )
    env = {"GATEWAY": f"127.0.0.1:{gateway_port}", "UPSTREAM": f"127.0.0.1:{upstream_port}"}
    with running_upstream(upstream_port), caddy.start(caddyfile, binary=binary, env=env) as front:
        config = gateway_config(
            tmp_path, front.https_port, gateway_port,
            authentication=users_file_authentication(tmp_path) + CREDENTIALS, policy=POLICY,
        )  # fmt: skip
        key = asyncio.run(seed(config))
        url = f"https://api.llm.example.com:{front.https_port}/v1/chat"
        with running_gateway(config, gateway_port), loopback_client() as client:
            for presented in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
                response = client.post(url, headers=presented)
                assert response.status_code == 200, response.text
                seen = response.json()["headers"]
                assert seen["authorization"] == f"Bearer {MASTER}"
                assert seen["remote-user"] == "ci-runner"
                assert key not in str(seen)
            refused = client.post(url, headers={"Authorization": "Bearer gw_aaaaaaaaaaaa_bad"})
            assert refused.status_code == 401
            assert MASTER not in refused.text
