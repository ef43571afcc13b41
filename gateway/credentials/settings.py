"""``credentials:`` in ``gateway.yml``: API hosts, API keys, client certificates, bearer JWT
issuers and rate limits.

The schema only: built from :mod:`gateway.config` value types and never importing the
credential code itself. What needs that code (reading the CA bundle and key files, compiling
certificate patterns) is checked by :func:`gateway.credentials.validation.validate_credentials`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.config.keys import JwtAlgorithm, check_key_fits, parse_public_key
from gateway.config.values import (
    ConfigPath,
    Duration,
    HttpsOrLoopbackUrl,
    NetworkError,
    NetworkList,
    Rate,
    Section,
    networks_from_env,
    normalize_fingerprint,
    private_networks,
)

__all__ = [
    "ApiHostSettings",
    "ApiKeySettings",
    "ClientCertificateSettings",
    "CredentialsSettings",
    "JwtIssuerSettings",
    "RateLimitSettings",
    "RateSettings",
    "UpstreamHeaderSettings",
]


class JwtIssuerSettings(Section):
    """A trusted issuer of bearer JWTs (an OIDC provider's client-credentials tokens, say)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    issuer: str = Field(min_length=1)
    """The exact ``iss`` value its tokens carry."""
    jwks_url: HttpsOrLoopbackUrl | None = None
    public_keys: tuple[str, ...] = ()
    """PEM public keys (``-----BEGIN PUBLIC KEY-----``), instead of a JWKS URL."""
    public_key_files: tuple[ConfigPath, ...] = ()
    audiences: tuple[str, ...] = Field(min_length=1)
    algorithms: tuple[JwtAlgorithm, ...] = Field(("RS256", "ES256"), min_length=1)
    username_claim: str = Field("sub", min_length=1)
    """``sub``, or e.g. ``client_id`` / ``azp`` for client-credentials tokens."""
    groups_claim: str | None = None
    """A list claim (``groups``, ``roles``) or a space-separated one (``scope``)."""
    groups: tuple[str, ...] = ()
    """Groups every identity from this issuer gets."""
    required_claims: tuple[str, ...] = ("exp",)
    leeway: Duration = Field(30.0, le=300)
    jwks_refresh_interval: Duration = Field(300.0, ge=10)
    jwks_min_refetch_interval: Duration = Field(60.0, ge=1)
    jwks_max_stale: Duration = 86400.0
    jwks_timeout: Duration = Field(5.0, gt=0, le=60)
    jwks_max_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024)

    @model_validator(mode="after")
    def _keys_usable(self) -> JwtIssuerSettings:
        has_static = bool(self.public_keys or self.public_key_files)
        if (self.jwks_url is None) == (not has_static):
            raise ValueError(
                f"issuer {self.name}: set either jwks_url or public_keys / public_key_files"
            )
        # Inline keys are checked here; key files when the gateway starts (paths are resolved
        # against the configuration's directory only after validation).
        for index, pem in enumerate(self.public_keys):
            label = f"public_keys[{index}]"
            check_key_fits(parse_public_key(pem, label), self.algorithms, label)
        return self


class ClientCertificateSettings(Section):
    """Client certificates Caddy verified (``client_auth``) and forwarded in headers."""

    ca_bundle: ConfigPath
    """PEM file of every CA that may issue client certificates (all are trusted); read when
    the gateway starts (``gateway check`` too)."""
    subjects: tuple[str, ...] = ()
    """Subject patterns such as ``CN=build-*,O=Example``; one must match when set. Compiled
    when the gateway starts (``gateway check`` too)."""
    sans: tuple[str, ...] = ()
    """SAN patterns ``URI:spiffe://example.org/*``, ``DNS:*.example.org``, ``EMAIL:*@x``."""
    pinned_fingerprints: tuple[str, ...] = ()
    """When set, only certificates with one of these SHA-256 fingerprints are accepted."""
    identity: Literal["cn", "san_uri"] = "cn"
    groups: tuple[str, ...] = ()
    cache_size: int = Field(1024, ge=1, le=1_000_000)

    @field_validator("pinned_fingerprints")
    @classmethod
    def _fingerprints(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalize_fingerprint(value) for value in values)


class ApiKeySettings(Section):
    cache_ttl: Duration = Field(5.0, le=300)
    """How long a replica reuses a key record (a revocation takes effect within this)."""
    negative_cache_ttl: Duration = Field(5.0, le=300)
    max_stale: Duration = 0.0
    """While storage is down, cached records are used up to this age (then 503). The default,
    0, fails closed as soon as a record's cache_ttl ends; raise it to favour availability."""
    cache_size: int = Field(10_000, ge=1)
    touch_interval: Duration = 60.0
    """Last-use times are written in one batch this often."""


class RateSettings(Section):
    rate: Rate
    """``10/s``, ``600/m``, ``5000/h``, or requests per second."""
    burst: int | None = Field(None, ge=1)
    """Requests allowed at once (default: one second's worth, at least 1)."""

    @property
    def burst_size(self) -> int:
        return self.burst if self.burst is not None else max(1, int(self.rate + 0.999999))


class RateLimitSettings(Section):
    per_key: RateSettings | None = None
    """Per credential (API key, client certificate, token subject)."""
    per_ip: RateSettings | None = None
    """Per client address, for every request to an API host."""
    store: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None
    """Default: ``session.redis.url``."""
    key_prefix: str = "gateway:ratelimit:"


class UpstreamHeaderSettings(Section):
    header: str = Field("Authorization", pattern=r"^[A-Za-z0-9-]{1,64}$")
    secret: str = Field(min_length=1)
    """Name of a secret in storage."""
    format: str = "Bearer {secret}"

    @field_validator("format")
    @classmethod
    def _one_placeholder(cls, value: str) -> str:
        if value.count("{secret}") != 1:
            raise ValueError("format must contain {secret} exactly once")
        return value


class ApiHostSettings(Section):
    """An API host: machine clients only, never redirected."""

    domain: str
    """A host name or glob (``api.billing.example.com``, ``api.*.example.com``)."""
    networks: NetworkList | None = None
    """Client networks allowed (default: ``credentials.default_networks``)."""
    networks_env: str | None = None
    """Read the networks from this environment variable (space-separated CIDRs) at load; the
    validation context's ``environ`` when given, else the process environment."""
    upstream: tuple[UpstreamHeaderSettings, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _networks_from_env(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or data.get("networks_env") is None:
            return data
        name = str(data["networks_env"])
        if data.get("networks") is not None:
            raise ValueError("set either networks or networks_env, not both")
        environ = info.context.get("environ") if isinstance(info.context, dict) else None
        try:
            networks = networks_from_env(name, environ)
        except NetworkError as error:
            raise ValueError(f"networks_env: {error}") from None
        return {**data, "networks": tuple(str(network) for network in networks)}

    @field_validator("domain")
    @classmethod
    def _domain_glob(cls, value: str) -> str:
        text = value.strip().lower().rstrip(".")
        if not re.fullmatch(r"[a-z0-9*-]+(\.[a-z0-9*-]+)+", text):
            raise ValueError(f"'{value}' is not a host name or glob (e.g. api.*.example.com)")
        return text


class CredentialsSettings(Section):
    """Machine credentials: API keys, client certificates, bearer JWTs, API hosts."""

    api_host_patterns: tuple[str, ...] = ("api.*",)
    """Hosts treated as API hosts even when not listed in ``api_hosts``."""
    default_networks: NetworkList = Field(default_factory=private_networks)
    """Allowlist of API hosts that declare none: loopback and private ranges."""
    api_hosts: tuple[ApiHostSettings, ...] = ()
    api_keys: ApiKeySettings = ApiKeySettings()
    client_certificates: ClientCertificateSettings | None = None
    issuers: tuple[JwtIssuerSettings, ...] = ()
    rate_limits: RateLimitSettings = RateLimitSettings()

    @field_validator("api_host_patterns")
    @classmethod
    def _patterns(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if not re.fullmatch(r"[a-z0-9*.-]+", value.strip().lower()):
                raise ValueError(f"'{value}' is not a host glob (e.g. api.*)")
        return tuple(value.strip().lower() for value in values)

    @model_validator(mode="after")
    def _unique(self) -> CredentialsSettings:
        for label, values in (
            ("issuers[].name", [issuer.name for issuer in self.issuers]),
            ("issuers[].issuer", [issuer.issuer for issuer in self.issuers]),
            ("api_hosts[].domain", [host.domain for host in self.api_hosts]),
        ):
            seen: set[str] = set()
            for value in values:
                if value in seen:
                    raise ValueError(f"{label} '{value}' is configured twice")
                seen.add(value)
        return self
