"""API hosts and keys declared in policy files, installed into the MachineAuthenticator."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from gateway.config.yaml import load_text
from gateway.credentials.api_keys import generate_api_key, hash_secret
from gateway.credentials.authenticator import (
    MachineAuthenticator,
    MachineDeclarations,
    MachineFailure,
    MachineIdentity,
)
from gateway.credentials.settings import CredentialsSettings
from gateway.net import normalize_host
from gateway.policy import PolicyEngine, compile_documents
from tests.credentials.memory_repository import MemoryRepository

pytestmark = pytest.mark.anyio

HASH_KEY = "s" * 40
PARTNER = "198.51.100.7"
INTERNAL = "10.1.2.3"


def policy(text: str) -> PolicyEngine:
    head = "access_control: {default_policy: one_factor}\n"
    return compile_documents([load_text(head + textwrap.dedent(text), "policy.yml")])


def authenticator(
    repository: MemoryRepository | None = None, **sections: Any
) -> MachineAuthenticator:
    return MachineAuthenticator(
        CredentialsSettings.model_validate(sections),
        hash_key=HASH_KEY,
        repository=repository,
        secrets=repository,
    )


def declare(machine: MachineAuthenticator, engine: PolicyEngine) -> MachineDeclarations:
    """What a policy snapshot holds for the machine authenticator."""
    return machine.declare(engine.api_hosts, engine.static_api_keys)


def allowlist(declared: MachineDeclarations, host: str) -> list[str] | None:
    found = declared.hosts.lookup(host)
    return None if found is None else [str(network) for network in found.networks.networks]


def test_declared_hosts_come_first_and_replace_configured_ones() -> None:
    machine = authenticator(
        api_host_patterns=["api.*"],
        api_hosts=[
            {"domain": "api.billing.example.com", "networks": ["10.0.0.0/8"]},
            {"domain": "*.internal.example.com", "networks": ["10.5.0.0/16"]},
        ],
    )
    engine = policy(
        """
        definitions:
          network:
            partner: 198.51.100.0/24
        api_hosts:
          - domain: api.billing.example.com
            networks: [partner]
          - domain: "models.*.internal.example.com"
            networks: [10.6.0.0/16]
          - domain: llm.example.com
        """
    )
    declared = machine.declare(engine.api_hosts, ())
    # A policy entry replaces the gateway.yml one with the same domain ...
    assert allowlist(declared, "api.billing.example.com") == ["198.51.100.0/24"]
    # ... and policy globs are tried before gateway.yml globs.
    assert allowlist(declared, "models.eu.internal.example.com") == ["10.6.0.0/16"]
    assert allowlist(declared, "db.internal.example.com") == ["10.5.0.0/16"]
    # Without networks: credentials.default_networks (private ranges).
    assert allowlist(declared, "llm.example.com") == [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::1/128",
        "fc00::/7",
    ]
    assert machine.is_api_host(normalize_host("LLM.example.com:443"), declared)
    assert machine.is_api_host("api.other.example.com", declared)  # api_host_patterns still apply

    # A reload without the declarations gives the configured hosts back.
    declared = machine.declare((), ())
    assert allowlist(declared, "api.billing.example.com") == ["10.0.0.0/8"]
    assert allowlist(declared, "models.eu.internal.example.com") == ["10.5.0.0/16"]
    assert not machine.is_api_host("llm.example.com", declared)


async def test_declared_host_allowlist_and_key() -> None:
    key_id, key = generate_api_key()
    engine = policy(
        f"""
        api_hosts:
          - domain: llm.example.com
            networks: [198.51.100.0/24]
        api_keys:
          - name: ci-runner
            id: {key_id}
            hash: {hash_secret(HASH_KEY.encode(), key).hex()}
            groups: [ci]
            scopes: [llm.example.com]
        """
    )
    machine = authenticator()
    headers = {"x-api-key": key}
    refused = await machine.authenticate(headers, PARTNER, True, host="llm.example.com")
    assert isinstance(refused, MachineFailure) and refused.error == "invalid_token"

    declared = declare(machine, engine)
    found = await machine.authenticate(
        headers, PARTNER, True, host="llm.example.com", declarations=declared
    )
    assert isinstance(found, MachineIdentity)
    assert (found.username, found.groups, found.credentials) == (
        "ci-runner",
        ("ci",),
        frozenset({"key:ci-runner"}),
    )
    denied = await machine.authenticate(
        headers, INTERNAL, True, host="llm.example.com", declarations=declared
    )
    assert isinstance(denied, MachineFailure) and (denied.status, denied.error) == (
        403,
        "forbidden",
    )
    scoped = await machine.authenticate(
        headers, INTERNAL, True, host="app.example.com", declarations=declared
    )
    assert isinstance(scoped, MachineFailure) and scoped.error == "insufficient_scope"

    declared = declare(machine, policy(""))
    gone = await machine.authenticate(
        headers, PARTNER, True, host="llm.example.com", declarations=declared
    )
    assert isinstance(gone, MachineFailure) and gone.error == "invalid_token"


async def test_upstream_secrets_of_declared_hosts_are_read_ahead(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository = MemoryRepository()
    repository.secrets["llm-master-key"] = "sk-master"
    key_id, key = generate_api_key()
    engine = policy(
        f"""
        api_hosts:
          - domain: llm.example.com
            upstream:
              - {{secret: llm-master-key}}
              - {{secret: search-key, header: X-Search-Key, format: "{{secret}}"}}
        api_keys:
          - {{name: bot, id: {key_id}, hash: {hash_secret(HASH_KEY.encode(), key).hex()}}}
        """
    )
    machine = authenticator(repository)
    declared = declare(machine, engine)
    await machine.load_upstream_secrets(declared)  # a missing secret is logged, not raised
    assert "secret 'search-key' is not stored" in caplog.text
    assert repository.secret_reads == 2

    repository.secrets["search-key"] = "sk-search"
    await machine.load_upstream_secrets(declared)  # what a policy reload does
    repository.down = True  # from now on everything comes from memory
    result = await machine.authenticate(
        {"x-api-key": key}, INTERNAL, True, host="llm.example.com", declarations=declared
    )
    assert isinstance(result, MachineIdentity)
    assert result.upstream_headers == {
        "Authorization": "Bearer sk-master",
        "X-Search-Key": "sk-search",
    }
