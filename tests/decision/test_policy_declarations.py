"""API hosts and keys declared in the policy file, through the real app, with hot reload."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from gateway.app import GatewayApp, create_app
from gateway.config.settings import load_settings
from gateway.credentials.api_keys import generate_api_key, hash_secret
from gateway.runtime import Runtime
from tests.decision.support import write_config

HASH_KEY = b"k" * 40  # secrets.hash_key of write_config
HOST = "llm.example.com"  # not matched by the default api_host_patterns (api.*)
PARTNER = "198.51.100.7"
BROWSER = "text/html,application/xhtml+xml"


def declaration(name: str, key: str) -> str:
    key_id = key.split("_")[1]
    return (
        f"  - {{name: {name}, id: {key_id}, hash: {hash_secret(HASH_KEY, key).hex()}, "
        "groups: [ci]}\n"
    )


def policy(*keys: str, host: bool = True) -> str:
    text = (
        "definitions:\n"
        "  network:\n"
        "    partner-a: [198.51.100.0/24]\n"
        "access_control:\n"
        "  default_policy: deny\n"
        "  rules:\n"
        f"    - domain: {HOST}\n"
        "      subject: group:ci\n"
        "      policy: one_factor\n"
        '    - domain: "*.example.com"\n'
        "      policy: one_factor\n"
    )
    if host:
        text += f"api_hosts:\n  - domain: {HOST}\n    networks: [10.20.0.0/16, partner-a]\n"
    if keys:
        text += "api_keys:\n" + "".join(keys)
    return text


@dataclass
class Deployment:
    app: GatewayApp
    client: TestClient
    policy_file: Path

    @property
    def runtime(self) -> Runtime:
        assert self.app.runtime is not None
        return self.app.runtime

    def ask(
        self, key: str | None = None, client_ip: str = PARTNER, host: str = HOST
    ) -> httpx.Response:
        headers = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": host,
            "X-Forwarded-Uri": "/v1/chat/completions",
            "X-Forwarded-Method": "POST",
            "X-Forwarded-For": client_ip,
            "Accept": BROWSER,
        }
        if key is not None:
            headers["X-API-Key"] = key
        return self.client.get("/api/authz/forward-auth", headers=headers, follow_redirects=False)

    def reload(self, text: str) -> bool:
        self.policy_file.write_text(text)
        return bool(self.client.portal.call(self.runtime.policy.reload_now))  # type: ignore[attr-defined]


@pytest.fixture
def ci_key() -> str:
    return generate_api_key()[1]


@pytest.fixture
def deployment(tmp_path: Path, ci_key: str) -> Iterator[Deployment]:
    config = write_config(tmp_path)
    # Reloads happen when the test says so, not when the poller notices.
    text = config.read_text().replace(
        "  files: [policy.yml]\n", "  files: [policy.yml]\n  reload_interval: 1h\n"
    )
    config.write_text(text)
    policy_file = tmp_path / "policy.yml"
    policy_file.write_text(policy(declaration("ci-runner", ci_key)))
    app = create_app(load_settings(config))
    with TestClient(app, base_url="http://gateway.internal", client=("127.0.0.1", 1)) as client:
        yield Deployment(app, client, policy_file)


def error_of(response: httpx.Response) -> tuple[int, str]:
    assert "location" not in response.headers
    assert response.headers["content-type"] == "application/json"
    return response.status_code, json.loads(response.content)["error"]


def test_a_declared_api_host_never_redirects(deployment: Deployment) -> None:
    assert error_of(deployment.ask()) == (401, "unauthorized")
    assert error_of(deployment.ask("gw_not_a_key")) == (401, "invalid_token")


def test_the_declared_allowlist_applies(deployment: Deployment, ci_key: str) -> None:
    assert error_of(deployment.ask(ci_key, client_ip="203.0.113.10")) == (403, "forbidden")
    assert deployment.ask(ci_key, client_ip="10.20.3.4").status_code == 200
    assert deployment.ask(ci_key, client_ip=PARTNER).status_code == 200  # a network name


def test_a_declared_key_authenticates(deployment: Deployment, ci_key: str) -> None:
    response = deployment.ask(ci_key)
    assert response.status_code == 200
    assert response.headers["remote-user"] == "ci-runner"
    assert response.headers["remote-groups"] == "ci"


def test_hot_reload_adds_a_key(deployment: Deployment, ci_key: str) -> None:
    new_key = generate_api_key()[1]
    assert error_of(deployment.ask(new_key)) == (401, "invalid_token")
    assert deployment.reload(
        policy(declaration("ci-runner", ci_key), declaration("new-bot", new_key))
    )
    response = deployment.ask(new_key)
    assert (response.status_code, response.headers["remote-user"]) == (200, "new-bot")


def test_hot_reload_removes_a_key_at_once(deployment: Deployment, ci_key: str) -> None:
    assert deployment.ask(ci_key).status_code == 200  # remembered for a second
    assert deployment.reload(policy())
    assert error_of(deployment.ask(ci_key)) == (401, "invalid_token")


def test_hot_reload_removes_a_host(deployment: Deployment, ci_key: str) -> None:
    assert deployment.ask(ci_key).status_code == 200
    assert deployment.reload(policy(declaration("ci-runner", ci_key), host=False))
    # Now an ordinary browser host: anonymous visitors go to the portal (303 after a POST).
    response = deployment.ask(ci_key)
    assert response.status_code == 303
    assert response.headers["location"].startswith("https://auth.example.com/?rd=")


def test_a_broken_edit_keeps_the_last_good_declarations(
    deployment: Deployment, ci_key: str
) -> None:
    watcher = deployment.runtime.policy
    new_key = generate_api_key()[1]
    broken = policy(declaration("ci-runner", ci_key), declaration("new-bot", new_key))
    broken = broken.replace("networks: [10.20.0.0/16, partner-a]", "networks: [partner-b]")
    assert not deployment.reload(broken)
    assert watcher.generation == 1
    assert watcher.last_error == (
        f"{deployment.policy_file}:14:16: unknown network 'partner-b': not an IP address, a "
        "CIDR or a defined network name (did you mean 'partner-a'?)"
    )
    assert deployment.ask(ci_key).status_code == 200
    assert error_of(deployment.ask(ci_key, client_ip="203.0.113.10")) == (403, "forbidden")
    assert error_of(deployment.ask(new_key)) == (401, "invalid_token")
