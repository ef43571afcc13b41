"""credentials: in gateway.yml: shape, defaults, and errors that name the field."""

from __future__ import annotations

import dataclasses
import ipaddress
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.config.settings import Settings, load_settings
from gateway.config.yaml import ConfigError
from gateway.credentials.settings import CredentialsSettings
from tests.credentials.certs import make_ca, write_bundle
from tests.support.config import Cookie, GatewayConfig

MINIMAL = GatewayConfig(
    hash_key="h" * 40, cookies=(Cookie(portal_url="https://auth.example.com/"),)
)


def load(tmp_path: Path, credentials: str) -> Settings:
    section = "credentials:\n" + textwrap.indent(textwrap.dedent(credentials), "  ")
    return load_settings(dataclasses.replace(MINIMAL, extra=section).write(tmp_path))


def error_of(tmp_path: Path, credentials: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, credentials)
    return str(caught.value)


def test_defaults(tmp_path: Path) -> None:
    credentials = load_settings(MINIMAL.write(tmp_path)).credentials
    assert credentials == CredentialsSettings()
    assert [str(n) for n in credentials.default_networks] == [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::1/128",
        "fc00::/7",
    ]
    assert credentials.api_host_patterns == ("api.*",)
    assert credentials.api_keys.cache_ttl == 5
    assert credentials.api_keys.touch_interval == 60
    assert credentials.rate_limits.store == "memory"
    assert credentials.client_certificates is None
    assert credentials.issuers == ()


def test_full_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNER_NETS", "203.0.113.0/24 198.51.100.0/24")
    bundle = write_bundle(tmp_path / "clients.pem", make_ca("A"), make_ca("B"))
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "issuer.pem").write_bytes(pem)
    settings = load(
        tmp_path,
        f"""\
        default_networks: 10.0.0.0/8 192.168.0.0/16
        api_hosts:
          - domain: api.billing.example.com
            networks_env: PARTNER_NETS
            upstream:
              - secret: billing-master-key
          - domain: "api.*.internal.example.com"
            networks: [10.20.0.0/16]
        api_keys:
          cache_ttl: 2s
          touch_interval: 30s
        client_certificates:
          ca_bundle: {bundle.name}
          identity: san_uri
          sans: ["URI:spiffe://example.org/*"]
          pinned_fingerprints: ["{"AB:" * 31}AB"]
        issuers:
          - name: machines
            issuer: https://login.example.com/realms/machines
            jwks_url: https://login.example.com/realms/machines/certs
            audiences: [reports]
            algorithms: [RS256, PS256]
            username_claim: client_id
            groups_claim: scope
          - name: ci
            issuer: https://ci.example.com
            public_key_files: [issuer.pem]
            audiences: [deploy]
            algorithms: [ES256]
        rate_limits:
          per_key: {{rate: 600/m, burst: 20}}
          per_ip: {{rate: 50}}
          store: redis
        """,
    )
    credentials = settings.credentials
    billing, internal = credentials.api_hosts
    assert billing.networks == (
        ipaddress.ip_network("203.0.113.0/24"),
        ipaddress.ip_network("198.51.100.0/24"),
    )
    assert billing.upstream[0].header == "Authorization"
    assert billing.upstream[0].format == "Bearer {secret}"
    assert internal.domain == "api.*.internal.example.com"
    assert [str(n) for n in credentials.default_networks] == ["10.0.0.0/8", "192.168.0.0/16"]
    assert credentials.api_keys.cache_ttl == 2
    assert credentials.client_certificates is not None
    assert credentials.client_certificates.ca_bundle == tmp_path / "clients.pem"
    assert credentials.client_certificates.pinned_fingerprints == ("ab" * 32,)
    assert credentials.issuers[0].leeway == 30
    assert credentials.issuers[1].public_key_files == (tmp_path / "issuer.pem",)
    assert credentials.rate_limits.per_key is not None
    assert credentials.rate_limits.per_key.rate == 10
    assert credentials.rate_limits.per_ip is not None
    assert credentials.rate_limits.per_ip.burst_size == 50


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        (
            "api_hosts:\n  - domain: api.x.example.com\n    networks_env: NOT_SET_ANYWHERE\n",
            "credentials.api_hosts.0: networks_env: environment variable NOT_SET_ANYWHERE "
            "is not set",
        ),
        (
            "api_hosts:\n  - domain: api.x.example.com\n    networks: [10.0.0.0/33]\n",
            "credentials.api_hosts.0.networks.0: '10.0.0.0/33' is not an IP address",
        ),
        (
            "issuers:\n  - {name: a, issuer: https://a, jwks_url: https://a/k, audiences: [x],"
            " algorithms: [HS256]}\n",
            "credentials.issuers.0.algorithms.0: 'HS256' is an HMAC algorithm",
        ),
        (
            "issuers:\n  - {name: a, issuer: https://a, jwks_url: https://a/k, audiences: [x],"
            " algorithms: [none]}\n",
            "'none' means an unsigned token and is never accepted",
        ),
        (
            "issuers:\n  - {name: a, issuer: https://a, jwks_url: http://a.example/k,"
            " audiences: [x]}\n",
            "credentials.issuers.0.jwks_url: 'http://a.example/k' must be an https:// URL",
        ),
        (
            "issuers:\n  - {name: a, issuer: https://a, audiences: [x]}\n",
            "set either jwks_url or public_keys / public_key_files",
        ),
        (
            "issuers:\n  - {name: a, issuer: https://a, jwks_url: https://a/k}\n",
            "missing required option 'credentials.issuers.0.audiences'",
        ),
        (
            "issuers:\n  - {name: a, issuer: https://a, public_keys: [nope], audiences: [x]}\n",
            "public_keys[0] is not a PEM public key",
        ),
        (
            "rate_limits:\n  per_key: {rate: lots}\n",
            "credentials.rate_limits.per_key.rate: 'lots' is not a rate",
        ),
        (
            "rate_limits:\n  per_ip: {rate: 5/fortnight}\n",
            "'5/fortnight' is not a rate",
        ),
        (
            "api_hosts:\n  - domain: api.x.example.com\n"
            "    upstream: [{secret: s, format: Bearer}]\n",
            "format must contain {secret} exactly once",
        ),
        (
            "api_keys:\n  cache_tll: 5s\n",
            "unknown option 'cache_tll' (did you mean 'cache_ttl'?)",
        ),
        (
            "api_hosts:\n  - domain: api.x.example.com\n  - domain: API.x.example.com\n",
            "api_hosts[].domain 'api.x.example.com' is configured twice",
        ),
    ],
)
def test_errors_name_the_field(tmp_path: Path, credentials: str, message: str) -> None:
    text = error_of(tmp_path, credentials)
    assert message in text
    assert "gateway.yml:" in text  # with file:line


def test_bad_cidr_in_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTNER_NETS", "203.0.113.0/24 300.1.1.1/8")
    text = error_of(
        tmp_path, "api_hosts:\n  - domain: api.x.example.com\n    networks_env: PARTNER_NETS\n"
    )
    assert "environment variable PARTNER_NETS: '300.1.1.1/8' is not an IP address" in text


def test_files_are_checked_when_the_authenticator_is_built(tmp_path: Path) -> None:
    from gateway.credentials.authenticator import CredentialsConfigError, MachineAuthenticator

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "ec.pem").write_bytes(pem)
    cases = [
        (
            "issuers:\n  - {name: a, issuer: https://a, public_key_files: [ec.pem],"
            " audiences: [x], algorithms: [RS256]}\n",
            "credentials.issuers.0 (a): public key 0 is an EC key, which "
            "none of the algorithms RS256 can use",
        ),
        (
            "issuers:\n  - {name: a, issuer: https://a, public_key_files: [gone.pem],"
            " audiences: [x]}\n",
            "credentials.issuers.0 (a): public_key_files[0]: cannot read",
        ),
        (
            "client_certificates:\n  ca_bundle: missing.pem\n",
            "credentials.client_certificates.ca_bundle: cannot read CA bundle",
        ),
    ]
    for credentials, message in cases:
        settings = load(tmp_path, credentials)
        with pytest.raises(CredentialsConfigError) as caught:
            MachineAuthenticator.from_settings(settings)
        assert message in str(caught.value)


def test_loopback_jwks_over_http_is_allowed(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "issuers:\n  - {name: a, issuer: https://a, jwks_url: 'http://127.0.0.1:8080/k',"
        " audiences: [x]}\n",
    )
    assert settings.credentials.issuers[0].jwks_url == "http://127.0.0.1:8080/k"
