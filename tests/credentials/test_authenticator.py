"""MachineAuthenticator: the one entry point, from headers and client address to an answer."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from gateway.credentials.api_key_declarations import load_static_api_keys
from gateway.credentials.api_keys import generate_api_key, hash_secret
from gateway.credentials.authenticator import (
    MachineAuthenticator,
    MachineFailure,
    MachineIdentity,
)
from gateway.credentials.settings import CredentialsSettings
from gateway.net import normalize_host
from gateway.storage.records import ApiKeyRecord
from tests.credentials.certs import headers_for, issue, make_ca, write_bundle
from tests.credentials.conftest import JwksServer
from tests.credentials.memory_repository import MemoryRepository
from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio

HASH_KEY = "s" * 40
API = "api.reports.example.com"
INTERNAL = "10.1.2.3"
PUBLIC = "203.0.113.50"


def settings(**sections: Any) -> CredentialsSettings:
    return CredentialsSettings.model_validate(sections)


async def stored_key(
    repository: MemoryRepository, name: str = "ci-runner", **changes: Any
) -> tuple[ApiKeyRecord, str]:
    key_id, key = generate_api_key()
    record = ApiKeyRecord(
        key_id=key_id,
        name=name,
        owner="platform",
        secret_hash=hash_secret(HASH_KEY.encode(), key),
        groups=("ci",),
    )
    record = replace(record, **changes)
    await repository.create_api_key(record)
    return record, key


def authenticator(
    repository: MemoryRepository | None = None, config: CredentialsSettings | None = None, **kw: Any
) -> MachineAuthenticator:
    return MachineAuthenticator(
        config or settings(),
        hash_key=HASH_KEY,
        repository=repository,
        secrets=repository,
        **kw,
    )


def failure(result: object) -> MachineFailure:
    assert isinstance(result, MachineFailure), result
    return result


def identity(result: object) -> MachineIdentity:
    assert isinstance(result, MachineIdentity), result
    return result


# -- API keys -----------------------------------------------------------------------------


async def test_api_key_in_either_header() -> None:
    repository = MemoryRepository()
    _, key = await stored_key(repository)
    machine = authenticator(repository)
    for headers in ({"x-api-key": key}, {"authorization": f"Bearer {key}"}):
        found = identity(await machine.authenticate(headers, INTERNAL, True, host=API))
        assert found.username == "ci-runner"
        assert found.credentials == frozenset({"key:ci-runner"})
        assert found.kind == "api_key"
        assert found.groups == ("ci",)
        assert found.owner == "platform"
        assert found.email == ""


async def test_no_credentials_is_401_with_a_challenge() -> None:
    result = failure(await authenticator().authenticate({}, INTERNAL, True, host=API))
    assert result.status == 401
    assert result.error == "unauthorized"
    assert result.headers()["WWW-Authenticate"] == 'Bearer realm="gateway"'
    assert json.loads(result.body()) == {"error": "unauthorized"}


@pytest.mark.parametrize("value", ["gw_garbage", "gw_abcdefghijkl_" + "A" * 43, "not-even-close"])
async def test_invalid_key_is_401_invalid_token_without_details(value: str) -> None:
    repository = MemoryRepository()
    result = failure(
        await authenticator(repository).authenticate({"x-api-key": value}, INTERNAL, True, host=API)
    )
    assert result.status == 401
    assert result.error == "invalid_token"
    assert result.www_authenticate == 'Bearer realm="gateway", error="invalid_token"'
    assert result.body() == b'{"error": "invalid_token"}'
    assert result.reason  # for the log


# Space and tab, and what Python's str.strip() also takes for whitespace: NBSP and NEL are
# obs-text bytes (0xA0, 0x85) that HTTP parsers pass through as they are.
@pytest.mark.parametrize("pad", [" ", "\t", "  ", "\xa0", "\x85", "\r\n"])
async def test_api_key_is_taken_byte_for_byte(pad: str) -> None:
    repository = MemoryRepository()
    _, key = await stored_key(repository)
    machine = authenticator(repository)
    for headers in (
        {"x-api-key": pad + key},
        {"x-api-key": key + pad},
        {"authorization": f"Bearer {pad}{key}"},
        {"authorization": f"Bearer {key}{pad}"},
        {"authorization": f"Bearer {key}", "x-api-key": pad},
    ):
        result = failure(await machine.authenticate(headers, INTERNAL, True, host=API))
        assert (result.status, result.error) == (401, "invalid_token"), headers
        # Still seen as a credential (which then fails), not as "no credential".
        assert machine.presented(headers, True), headers
    # Padding before the scheme: not a Bearer credential at all, so none was presented.
    headers = {"authorization": f"{pad}Bearer {key}"}
    result = failure(await machine.authenticate(headers, INTERNAL, True, host=API))
    assert (result.status, result.error) == (401, "unauthorized")
    # The exact key, with the scheme in any case, is accepted.
    for scheme in ("Bearer", "bearer", "BEARER"):
        headers = {"authorization": f"{scheme} {key}"}
        assert identity(await machine.authenticate(headers, INTERNAL, True, host=API))


async def test_api_host_allows_private_networks_only_by_default() -> None:
    repository = MemoryRepository()
    _, key = await stored_key(repository)
    machine = authenticator(repository)
    headers = {"x-api-key": key}
    denied = failure(await machine.authenticate(headers, PUBLIC, True, host=API))
    assert (denied.status, denied.error) == (403, "forbidden")
    assert repository.reads == 0  # refused before the credential is even looked at
    assert isinstance(await machine.authenticate(headers, "::1", True, host=API), MachineIdentity)
    # Hosts that are not API hosts have no network allowlist of their own.
    assert isinstance(
        await machine.authenticate(headers, PUBLIC, True, host="app.example.com"), MachineIdentity
    )
    assert machine.is_api_host(normalize_host("API.reports.example.com:443"))
    assert not machine.is_api_host("app.example.com")


async def test_api_host_allowlist_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNER_NETS", "203.0.113.0/24")
    repository = MemoryRepository()
    _, key = await stored_key(repository)
    config = settings(
        api_hosts=[{"domain": "api.partner.example.com", "networks_env": "PARTNER_NETS"}]
    )
    machine = authenticator(repository, config)
    headers = {"x-api-key": key}
    host = "api.partner.example.com"
    assert isinstance(await machine.authenticate(headers, PUBLIC, True, host=host), MachineIdentity)
    assert failure(await machine.authenticate(headers, INTERNAL, True, host=host)).status == 403


async def test_key_networks_and_scopes_are_403() -> None:
    repository = MemoryRepository()
    _, key = await stored_key(
        repository, scopes=("api.reports.example.com",), networks=("10.1.0.0/16",)
    )
    machine = authenticator(repository)
    headers = {"x-api-key": key}
    assert isinstance(
        await machine.authenticate(headers, INTERNAL, True, host=API), MachineIdentity
    )
    network = failure(await machine.authenticate(headers, "10.2.0.1", True, host=API))
    assert (network.status, network.error) == (403, "forbidden")
    scope = failure(
        await machine.authenticate(headers, INTERNAL, True, host="api.billing.example.com")
    )
    assert (scope.status, scope.error) == (403, "insufficient_scope")
    assert scope.www_authenticate == 'Bearer realm="gateway", error="insufficient_scope"'
    found = identity(await machine.authenticate(headers, INTERNAL, True, host=API))
    assert found.scopes == ("api.reports.example.com",)
    assert found.networks == ("10.1.0.0/16",)


async def test_host_comes_from_forwarded_host_only_from_a_trusted_proxy() -> None:
    repository = MemoryRepository()
    _, key = await stored_key(repository, scopes=(API,))
    machine = authenticator(repository)
    headers = {"x-api-key": key, "x-forwarded-host": API, "host": "gateway.internal"}
    assert isinstance(await machine.authenticate(headers, INTERNAL, True), MachineIdentity)
    assert failure(await machine.authenticate(headers, INTERNAL, False)).status == 403


async def test_static_keys() -> None:
    key_id, key = generate_api_key()
    static = load_static_api_keys(
        [{"name": "gitops-bot", "id": key_id, "hash": hash_secret(HASH_KEY.encode(), key).hex()}]
    )
    machine = authenticator(None, static_keys=static)
    found = identity(await machine.authenticate({"x-api-key": key}, INTERNAL, True, host=API))
    assert found.credentials == frozenset({"key:gitops-bot"})


async def test_storage_outage_is_503() -> None:
    repository = MemoryRepository()
    _, key = await stored_key(repository)
    repository.down = True
    result = failure(
        await authenticator(repository).authenticate({"x-api-key": key}, INTERNAL, True, host=API)
    )
    assert (result.status, result.error) == (503, "temporarily_unavailable")
    assert result.headers()["Retry-After"] == "5"


# -- client certificates ------------------------------------------------------------------


async def test_client_certificate_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    ca = make_ca("Clients")
    bundle = write_bundle(tmp_path / "ca.pem", make_ca("Unrelated"), ca)
    machine = authenticator(config=settings(client_certificates={"ca_bundle": str(bundle)}))
    headers = headers_for(issue(ca, "build-agent"))
    found = identity(await machine.authenticate(headers, INTERNAL, True, host=API))
    assert found.credentials == frozenset({"cert:CN=build-agent"})
    assert found.kind == "cert"
    assert machine.presented(headers, True)
    assert not machine.presented(headers, False)
    untrusted = failure(await machine.authenticate(headers, INTERNAL, False, host=API))
    assert (untrusted.status, untrusted.error) == (401, "unauthorized")
    bad = failure(
        await machine.authenticate(headers_for(issue(make_ca("Rogue"))), INTERNAL, True, host=API)
    )
    assert (bad.status, bad.error) == (401, "invalid_token")


async def test_api_key_takes_precedence_over_a_certificate(tmp_path: Path) -> None:
    ca = make_ca("Clients")
    repository = MemoryRepository()
    _, key = await stored_key(repository)
    machine = authenticator(
        repository,
        settings(client_certificates={"ca_bundle": str(write_bundle(tmp_path / "ca.pem", ca))}),
    )
    headers = {**headers_for(issue(ca)), "x-api-key": key}
    assert identity(await machine.authenticate(headers, INTERNAL, True, host=API)).kind == "api_key"


# -- bearer JWT ---------------------------------------------------------------------------


async def test_bearer_jwt(jwks_server: JwksServer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwks_server.set_keys({**jwk, "kid": "k1", "use": "sig"})
    issuer = "https://login.example.com/realms/machines"
    config = settings(
        issuers=[
            {
                "name": "machines",
                "issuer": issuer,
                "jwks_url": jwks_server.url,
                "audiences": ["reports"],
                "algorithms": ["ES256"],
                "username_claim": "client_id",
                "groups_claim": "scope",
            }
        ]
    )
    machine = authenticator(config=config)
    await machine.start()
    try:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": "reports",
            "client_id": "reporting-service",
            "scope": "reports:read",
            "exp": now + 60,
        }
        token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})
        headers = {"authorization": f"Bearer {token}"}
        assert machine.presented(headers, False)
        found = identity(await machine.authenticate(headers, INTERNAL, False, host=API))
        assert found.credentials == frozenset({"client:machines/reporting-service"})
        assert found.groups == ("reports:read",)
        assert found.kind == "jwt"
        wrong = jwt.encode(
            {**claims, "aud": "billing"}, key, algorithm="ES256", headers={"kid": "k1"}
        )
        rejected = failure(
            await machine.authenticate(
                {"authorization": f"Bearer {wrong}"}, INTERNAL, False, host=API
            )
        )
        assert (rejected.status, rejected.error) == (401, "invalid_token")
        assert rejected.body() == b'{"error": "invalid_token"}'
    finally:
        await machine.close()


async def test_bearer_without_issuers_is_invalid() -> None:
    result = failure(
        await authenticator().authenticate({"authorization": "Bearer abc.def.ghi"}, INTERNAL, True)
    )
    assert (result.status, result.error) == (401, "invalid_token")
    assert not authenticator().presented({"authorization": "Basic dTpw"}, True)


# -- rate limits --------------------------------------------------------------------------


async def test_per_key_rate_limit_is_429_with_retry_after() -> None:
    repository = MemoryRepository()
    _, key = await stored_key(repository)
    clock = FakeClock()
    from gateway.credentials.rate_limit import MemoryRateLimiter

    machine = authenticator(
        repository,
        settings(rate_limits={"per_key": {"rate": "60/m", "burst": 2}}),
        rate_limiter=MemoryRateLimiter(clock=clock),
    )
    headers = {"x-api-key": key}
    results = [await machine.authenticate(headers, INTERNAL, True, host=API) for _ in range(3)]
    assert [isinstance(r, MachineIdentity) for r in results] == [True, True, False]
    limited = failure(results[-1])
    assert (limited.status, limited.error, limited.retry_after) == (429, "rate_limited", 1)
    assert limited.headers()["Retry-After"] == "1"
    clock.advance(1)
    assert isinstance(
        await machine.authenticate(headers, INTERNAL, True, host=API), MachineIdentity
    )


async def test_per_ip_rate_limit_applies_before_credentials() -> None:
    repository = MemoryRepository()
    machine = authenticator(
        repository, settings(rate_limits={"per_ip": {"rate": "1/h", "burst": 3}})
    )
    guesses = [
        await machine.authenticate({"x-api-key": generate_api_key()[1]}, INTERNAL, True, host=API)
        for _ in range(5)
    ]
    assert [failure(g).status for g in guesses] == [401, 401, 401, 429, 429]
    assert repository.reads == 3
    other = failure(await machine.authenticate({}, "10.9.9.9", True, host=API))
    assert other.status == 401


async def test_per_ip_rate_limit_counts_ipv6_per_64() -> None:
    # Rotating through the addresses of one IPv6 allocation must not reset the limit.
    machine = authenticator(
        MemoryRepository(), settings(rate_limits={"per_ip": {"rate": "1/h", "burst": 2}})
    )
    statuses = [
        failure(await machine.authenticate({}, f"fd00:1:2:3::{n}", True, host=API)).status
        for n in range(1, 5)
    ]
    assert statuses == [401, 401, 429, 429]
    other = failure(await machine.authenticate({}, "fd00:1:2:4::1", True, host=API))
    assert other.status == 401


async def test_rate_limits_in_redis_are_shared_by_replicas(redis_url: str) -> None:
    repository = MemoryRepository()
    _, key = await stored_key(repository)
    config = settings(
        rate_limits={
            "per_key": {"rate": "1/h", "burst": 3},
            "store": "redis",
            "key_prefix": f"test:{uuid.uuid4().hex}:",
        }
    )
    replicas = [authenticator(repository, config, redis_url=redis_url) for _ in range(2)]
    try:
        statuses = []
        for index in range(5):
            result = await replicas[index % 2].authenticate(
                {"x-api-key": key}, INTERNAL, True, host=API
            )
            statuses.append(200 if isinstance(result, MachineIdentity) else failure(result).status)
        assert statuses == [200, 200, 200, 429, 429]
    finally:
        for replica in replicas:
            await replica.close()


# -- credential exchange ------------------------------------------------------------------


async def test_upstream_credential_is_attached_and_cached() -> None:
    repository = MemoryRepository()
    repository.secrets["reports-master"] = "upstream-master-key"
    _, key = await stored_key(repository)
    config = settings(api_hosts=[{"domain": API, "upstream": [{"secret": "reports-master"}]}])
    machine = authenticator(repository, config)
    await machine.start()
    try:
        for _ in range(3):
            found = identity(
                await machine.authenticate({"x-api-key": key}, INTERNAL, True, host=API)
            )
            assert found.upstream_headers == {"Authorization": "Bearer upstream-master-key"}
        assert repository.secret_reads == 1
        # Other hosts get nothing.
        other = identity(
            await machine.authenticate({"x-api-key": key}, INTERNAL, True, host="api.x.example.com")
        )
        assert other.upstream_headers == {}
    finally:
        await machine.close()


async def test_missing_upstream_secret_is_503_and_not_asked_every_time() -> None:
    repository = MemoryRepository()
    _, key = await stored_key(repository)
    config = settings(
        api_hosts=[
            {
                "domain": API,
                "upstream": [{"header": "X-Service-Token", "secret": "nope", "format": "{secret}"}],
            }
        ]
    )
    machine = authenticator(repository, config)
    await machine.start()  # logs the problem, does not fail start-up
    for _ in range(3):
        result = failure(await machine.authenticate({"x-api-key": key}, INTERNAL, True, host=API))
        assert (result.status, result.error) == (503, "temporarily_unavailable")
        assert "nope" in result.reason and "gateway keys upstream-secret" in result.reason
    assert repository.secret_reads == 1
    await machine.close()


async def test_last_used_is_flushed_on_close() -> None:
    repository = MemoryRepository()
    record, key = await stored_key(repository)
    machine = authenticator(repository)
    await machine.start()
    await machine.authenticate({"x-api-key": key}, INTERNAL, True, host=API)
    await machine.close()
    assert repository.records[record.key_id].last_used_at is not None
