"""Machine credentials through a real Caddy.

Credential exchange: a machine client presents only its own revocable key; the upstream
receives the service's master key instead, never the client's. And on any API host
(``gateway_machine``) the upstream never receives a gateway API key, in whichever form the
client sent it, while a bearer JWT from an external issuer (meant for the service) passes.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.config.settings import load_settings
from gateway.credentials.api_keys import generate_api_key, hash_secret
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


async def seed(config: Path, *, secret: bool = True) -> str:
    settings = load_settings(config)
    storage = await open_storage(settings)
    try:
        if secret:
            await storage.secrets.put_secret("llm-master", MASTER)
        key_id, key = generate_api_key()
        await storage.api_keys.create_api_key(
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
            authentication=users_file_authentication(tmp_path), extra=CREDENTIALS, policy=POLICY,
        )  # fmt: skip
        key = asyncio.run(seed(config))
        url = f"https://api.llm.example.com:{front.https_port}/v1/chat"
        with running_gateway(config, gateway_port), loopback_client() as client:
            for presented in (
                [("Authorization", f"Bearer {key}")],
                [("X-API-Key", key)],
                [("Authorization", f"bearer {key}")],
            ):
                response = client.post(url, headers=presented)
                assert response.status_code == 200, response.text
                seen = response.json()["headers"]
                assert seen["authorization"] == f"Bearer {MASTER}"
                assert seen["remote-user"] == "ci-runner"
                fields = received(response)
                assert key not in str(fields)
                assert [v for n, v in fields if n == "authorization"] == [f"Bearer {MASTER}"]
            # Two credentials in one request: which would the upstream read? Refused.
            twice = [("Authorization", f"Bearer {key}"), ("Authorization", f"Bearer {key}")]
            response = client.post(url, headers=twice)
            assert response.status_code == 400
            assert "appears more than once" in response.text
            refused = client.post(url, headers={"Authorization": "Bearer gw_aaaaaaaaaaaa_bad"})
            assert refused.status_code == 401
            assert MASTER not in refused.text


MACHINE_CADDYFILE = """\
{
	auto_https disable_redirects
}

import snippets.caddy

api.build.example.com {
	tls internal
	import gateway_machine
	reverse_proxy {$UPSTREAM}
}
"""

MACHINE_POLICY = """\
access_control:
  default_policy: deny
  rules:
    - domain: api.build.example.com
      resources: ["^/public/"]
      policy: bypass
    - domain: api.build.example.com
      subject: ["key:ci-runner", "client:ci/deployer"]
      policy: one_factor
"""

MACHINE_CREDENTIALS = """\
credentials:
  issuers:
    - name: ci
      issuer: https://ci.example.com
      public_key_files: [ci-signing.pub]
      audiences: [api.build.example.com]
      algorithms: [ES256]
"""


def received(response: httpx.Response) -> list[tuple[str, str]]:
    """Every header field the echo upstream received, repeated ones included."""
    assert response.status_code == 200, response.text
    return [(name, value) for name, value in response.json()["header_list"]]


@pytest.mark.parametrize("binary", CADDY_BINARIES)
def test_gateway_machine_never_forwards_an_api_key(
    caddy: CaddyFactory, tmp_path: Path, binary: str
) -> None:
    signing = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ci-signing.pub").write_bytes(
        signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    token = jwt.encode(
        {
            "iss": "https://ci.example.com",
            "aud": "api.build.example.com",
            "sub": "deployer",
            "exp": int(time.time()) + 600,
        },
        signing,
        algorithm="ES256",
    )
    gateway_port, upstream_port = free_port(), free_port()
    caddyfile = MACHINE_CADDYFILE.replace(
        "import snippets.caddy", (ROOT / "caddy" / "snippets.caddy").read_text()
    )
    env = {"GATEWAY": f"127.0.0.1:{gateway_port}", "UPSTREAM": f"127.0.0.1:{upstream_port}"}
    with running_upstream(upstream_port), caddy.start(caddyfile, binary=binary, env=env) as front:
        config = gateway_config(
            tmp_path, front.https_port, gateway_port,
            authentication=users_file_authentication(tmp_path), extra=MACHINE_CREDENTIALS,
            policy=MACHINE_POLICY,
        )  # fmt: skip
        key = asyncio.run(seed(config, secret=False))
        base = f"https://api.build.example.com:{front.https_port}"
        with running_gateway(config, gateway_port), loopback_client() as client:
            # Every form in which the gateway accepts its own key; a bypass rule too (the key
            # is still checked there, and still is not the upstream's business).
            presented: list[list[tuple[str, str]]] = [
                [("X-API-Key", key)],
                [("Authorization", f"Bearer {key}")],
                [("Authorization", f"bearer {key}")],
                [("Authorization", f"BEARER {key}")],
                [("X-API-Key", key), ("Authorization", f"Bearer {token}")],
            ]
            # A credential header twice is refused before anything reaches the upstream.
            duplicated: list[list[tuple[str, str]]] = [
                [("X-API-Key", key), ("X-API-Key", key)],
                [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {key}")],
                [("Authorization", f"Bearer {key}"), ("Authorization", f"Bearer {token}")],
            ]
            for path in ("/v1/builds", "/public/status"):
                for headers in presented:
                    response = client.get(base + path, headers=headers)
                    seen = received(response)
                    assert key not in str(seen), (path, headers, seen)
                    assert not [v for n, v in seen if n == "x-api-key"], (path, headers)
                    assert dict(seen)["remote-user"] in ("ci-runner", "deployer")
                for headers in duplicated:
                    response = client.get(base + path, headers=headers)
                    assert response.status_code == 400, (path, headers)
                    assert key not in response.text
            # Only the API key goes: a bearer JWT beside it is the service's to read.
            seen = received(
                client.get(
                    base + "/v1/builds",
                    headers={"X-API-Key": key, "Authorization": f"Bearer {token}"},
                )
            )
            assert ("authorization", f"Bearer {token}") in seen
            assert dict(seen)["remote-user"] == "ci-runner"
            # A bearer JWT from the external issuer reaches the upstream unchanged.
            seen = received(
                client.get(base + "/v1/builds", headers={"Authorization": f"Bearer {token}"})
            )
            assert ("authorization", f"Bearer {token}") in seen
            assert dict(seen)["remote-user"] == "deployer"
