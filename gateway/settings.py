"""The typed configuration model, loaded from one YAML file (``gateway.yml``).

* ``${VAR}`` / ``${VAR:-default}`` anywhere in a value is replaced from the environment
  (``$$`` writes a literal ``$``).
* Any key ``NAME_file: /path`` reads the value of ``NAME`` from that file (trailing newline
  stripped), for secrets mounted by systemd, Docker or Kubernetes. A list-valued ``NAME``
  takes one entry per non-empty line. A secret file readable by group or others is a warning.
* Relative paths are resolved against the directory of the configuration file.
* Every error names ``file:line:column`` and says what is expected.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.security.crypto import InvalidKeyError, parse_key
from gateway.yaml_source import (
    ConfigError,
    Document,
    Issue,
    Position,
    YamlPath,
    default_environ,
    load_file,
)

__all__ = [
    "AuthenticationSettings",
    "CookieDomain",
    "CredentialsSettings",
    "LdapSettings",
    "Settings",
    "load_settings",
    "load_settings_with_warnings",
    "parse_duration",
    "validation_issues",
]

# --------------------------------------------------------------------------------------------
# Field types
# --------------------------------------------------------------------------------------------

_DURATION_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 7 * 86400,
    "week": 7 * 86400,
    "weeks": 7 * 86400,
    "M": 30 * 86400,
    "month": 30 * 86400,
    "months": 30 * 86400,
    "y": 365 * 86400,
    "year": 365 * 86400,
    "years": 365 * 86400,
}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*")


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"5m"``, ``"1h30m"``, ``"1 month"`` (Authelia's units)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h or 1M")
    if isinstance(value, int | float):
        seconds = float(value) if isinstance(value, float) or abs(value) < 2**63 else math.inf
        if not math.isfinite(seconds):  # .inf / .nan would overflow cookie ages and timers
            raise ValueError("a duration must be a finite number of seconds")
        if seconds < 0:
            raise ValueError("a duration cannot be negative")
        return seconds
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a duration such as 30s, 5m, 1h or 1M")
    text = value.strip()
    if text.isascii() and text.isdigit():
        total = float(text)
        if not math.isfinite(total):
            raise ValueError(f"'{text[:40]}' is too large for a duration")
        return total
    total = 0.0
    position = 0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        unit = match.group(2) if match else ""
        if not match or (unit not in _DURATION_UNITS and unit.lower() not in _DURATION_UNITS):
            raise ValueError(
                f"'{value}' is not a duration (use a number with a unit: s, m, h, d, w, M, y)"
            )
        factor = _DURATION_UNITS.get(unit, _DURATION_UNITS.get(unit.lower(), 1))
        total += float(match.group(1)) * factor
        position = match.end()
    if not math.isfinite(total):
        raise ValueError(f"'{text[:40]}' is too large for a duration")
    return total


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _config_path(path: Path) -> Path:
    # open() and stat() raise ValueError, not OSError, for a NUL byte: refuse it here, where
    # the error can still name the line.
    if "\0" in str(path):
        raise ValueError("a path cannot contain a NUL byte")
    return path.expanduser()


ConfigPath = Annotated[Path, AfterValidator(_config_path)]
"""A path; relative ones are resolved against the configuration file's directory on load."""


def _resolve_paths(model: BaseModel, base_dir: Path) -> Any:
    """Copy of ``model`` with every relative :class:`Path` (defaults too) made absolute."""

    def resolve(value: Any) -> Any:
        if isinstance(value, Path):
            return value if value.is_absolute() else base_dir / value
        if isinstance(value, BaseModel):
            return _resolve_paths(value, base_dir)
        if isinstance(value, tuple):
            return tuple(resolve(item) for item in value)
        return value

    updates = {name: resolve(getattr(model, name)) for name in type(model).model_fields}
    return model.model_copy(update=updates)


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        raise ValueError(f"'{value}' is not an IP address or CIDR network") from None


Network = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_network)]


def _https_url(value: Any) -> str:
    text = str(value).strip()
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"'{text}' must be an absolute https:// URL")
    return text.rstrip("/")


HttpsUrl = Annotated[str, BeforeValidator(_https_url)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


class ServerSettings(_Section):
    paths: Literal["reject", "normalize"] = "reject"
    """Raw paths servers could read differently: refuse with 400, or judge them cleaned."""
    address: str = "127.0.0.1"
    port: int = Field(9091, ge=1, le=65535)
    trusted_proxies: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    """Peers allowed to set X-Forwarded-* / X-Original-* and client-certificate headers."""
    max_header_size: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Bytes of request line and headers accepted; a larger request is answered 431."""
    request_timeout: Duration = Field(10.0, gt=0)
    """A request must arrive whole (line, headers, body) within this of its first byte."""
    idle_timeout: Duration = Field(5.0, gt=0)
    """A connection with no request under way is closed after this (keep-alive)."""
    limit_concurrency: int | None = Field(None, ge=1)
    """Client connections at once; default: what the open-files limit allows, at most 10,000."""


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class SecretsSettings(_Section):
    encryption_keys: tuple[str, ...] = Field(min_length=1)
    """AES-256-GCM keys for secrets at rest; the first encrypts, all decrypt (rotation)."""
    hash_key: str = Field(min_length=32)
    """Server secret for keyed hashes (API keys, CSRF tokens); at least 32 characters."""

    @field_validator("encryption_keys")
    @classmethod
    def _keys_parse(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            try:
                parse_key(key)
            except InvalidKeyError as error:
                raise ValueError(str(error)) from None
        return keys


class PolicySettings(_Section):
    files: tuple[ConfigPath, ...] = Field(min_length=1)
    reload_interval: Duration = 2.0


class CookieDomain(_Section):
    """One root domain with its own session cookie, portal and default landing page."""

    domain: str
    portal_url: HttpsUrl
    default_redirect_url: HttpsUrl | None = None
    name: str | None = None
    expiration: Annotated[float, BeforeValidator(parse_duration), Field(gt=0)] | None = None
    inactivity: Duration | None = None
    remember_me: Duration | None = None

    @field_validator("domain")
    @classmethod
    def _domain_shape(cls, value: str) -> str:
        domain = value.strip().lower().lstrip(".")
        if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)*", domain):
            raise ValueError(f"'{value}' is not a domain name (write e.g. example.com)")
        if "." not in domain and domain != "localhost":
            raise ValueError(
                f"'{value}' is a top-level name; browsers refuse cookies for it "
                "(use a registrable domain such as example.com)"
            )
        return domain

    @model_validator(mode="after")
    def _portal_inside_domain(self) -> CookieDomain:
        for label, url in (
            ("portal_url", self.portal_url),
            ("default_redirect_url", self.default_redirect_url),
        ):
            if url is None:
                continue
            host = (urlsplit(url).hostname or "").lower()
            if host != self.domain and not host.endswith("." + self.domain):
                raise ValueError(f"{label} {url} is not inside the cookie domain {self.domain}")
        return self


class SqliteSettings(_Section):
    path: ConfigPath


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"
    password: str | None = None
    key_prefix: str = "gateway:"
    timeout: Duration = Field(2.0, gt=0)
    """The longest one Redis operation may take, connecting and waiting for the pool included."""
    pool_size: int = Field(32, ge=1, le=1024)
    """Connections per process (per client: sessions, rate limits)."""


class SessionSettings(_Section):
    cookie_name: str = "gateway_session"
    same_site: Literal["lax", "strict"] = "lax"
    expiration: Duration = Field(3600.0, gt=0)
    """Absolute lifetime of a session."""
    inactivity: Duration = 300.0
    """Idle time after which a session ends; 0 disables the check."""
    remember_me: Duration = 30 * 86400.0
    """Lifetime of a "keep me signed in" session; 0 disables remember-me."""
    cookies: tuple[CookieDomain, ...] = Field(min_length=1)
    store: Literal["memory", "sqlite", "redis"] = "sqlite"
    sqlite: SqliteSettings = SqliteSettings(path=Path("data/sessions.sqlite3"))
    redis: RedisSettings = RedisSettings()
    cache_ttl: Duration = 1.0
    """How long a process may reuse a session it read while it cannot hear of changes made
    elsewhere (the store's change feed is down); while it can, until the session expires.
    0 reads the store on every request."""
    cache_size: int = Field(100_000, ge=1)
    """Sessions each process keeps in memory (and as many identities built from them)."""
    cache_max_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    """About how much memory they may take; the oldest are dropped first."""

    @model_validator(mode="after")
    def _unique_domains(self) -> SessionSettings:
        seen: set[str] = set()
        for cookie in self.cookies:
            if cookie.domain in seen:
                raise ValueError(f"cookie domain {cookie.domain} is configured twice")
            seen.add(cookie.domain)
        return self


class RegulationSettings(_Section):
    max_retries: int = Field(3, ge=0)
    """Failures within find_time that ban the user / IP; 0 disables regulation."""
    find_time: Duration = 120.0
    ban_time: Duration = 300.0


class UsersFileSettings(_Section):
    path: ConfigPath
    watch: bool = True


class LdapAttributes(_Section):
    username: str = "uid"
    display_name: str = "displayName"
    mail: str = "mail"
    group_name: str = "cn"
    member_of: str = "memberOf"
    distinguished_name: str = "distinguishedName"


class LdapSettings(_Section):
    implementation: Literal["custom", "openldap", "activedirectory"] = "custom"
    urls: tuple[str, ...] = Field(min_length=1)
    start_tls: bool = False
    ca_certificate: ConfigPath | None = None
    tls_skip_verify: bool = False
    base_dn: str
    additional_users_dn: str = ""
    users_filter: str = "(&({username_attribute}={input})(objectClass=person))"
    additional_groups_dn: str = ""
    groups_filter: str = "(&(member={dn})(objectClass=groupOfNames))"
    group_search_mode: Literal["filter", "memberof"] = "filter"
    user: str = ""
    password: str = ""
    attributes: LdapAttributes = LdapAttributes()
    connect_timeout: Duration = 5.0
    read_timeout: Duration = 5.0
    pool_size: int = Field(8, ge=1, le=128)
    retries: int = Field(2, ge=0, le=10)
    circuit_breaker_failures: int = Field(5, ge=1)
    circuit_breaker_reset: Duration = 30.0
    refresh_interval: Duration = 300.0

    @field_validator("urls")
    @classmethod
    def _url_schemes(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if urlsplit(url).scheme not in ("ldap", "ldaps") or not urlsplit(url).hostname:
                raise ValueError(f"'{url}' must be an ldap:// or ldaps:// URL")
        return urls


class AuthenticationSettings(_Section):
    backend: Literal["file", "ldap"] = "file"
    file: UsersFileSettings | None = None
    ldap: LdapSettings | None = None

    @model_validator(mode="after")
    def _backend_configured(self) -> AuthenticationSettings:
        if self.backend == "file" and self.file is None:
            raise ValueError("backend 'file' needs a 'file:' section with 'path'")
        if self.backend == "ldap" and self.ldap is None:
            raise ValueError("backend 'ldap' needs an 'ldap:' section")
        return self


class TotpSettings(_Section):
    issuer: str = "gateway"
    period: int = Field(30, ge=15, le=120)
    digits: Literal[6, 8] = 6
    skew: int = Field(1, ge=0, le=3)


class PostgresSettings(_Section):
    dsn: str
    password: str | None = None
    pool_size: int = Field(4, ge=1, le=64)
    connect_timeout: Duration = Field(5.0, gt=0)
    """How long opening a connection may take."""
    statement_timeout: Duration = Field(2.0, gt=0)
    """The longest one storage operation may take (pooled connection, statements, commit);
    PostgreSQL also cancels a statement running longer."""


class StorageSettings(_Section):
    type: Literal["sqlite", "postgres"] = "sqlite"
    sqlite: SqliteSettings = SqliteSettings(path=Path("data/gateway.sqlite3"))
    postgres: PostgresSettings | None = None

    @model_validator(mode="after")
    def _postgres_configured(self) -> StorageSettings:
        if self.type == "postgres" and self.postgres is None:
            raise ValueError("type 'postgres' needs a 'postgres:' section with 'dsn'")
        return self


# --------------------------------------------------------------------------------------------
# Machine credentials (gateway/credentials)
# --------------------------------------------------------------------------------------------


def _network_list(value: Any) -> Any:
    """Networks as a YAML list, or as one space- or comma-separated string."""
    if isinstance(value, str):
        return value.replace(",", " ").split()
    return value


NetworkList = Annotated[tuple[Network, ...], BeforeValidator(_network_list)]

_RATE_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}


def _rate(value: Any) -> float:
    """Requests per second from ``10/s``, ``600/m``, ``5000/h``, ``10000/d`` or a number."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    text = str(value).strip().lower()
    count, _, unit = text.partition("/")
    try:
        amount = float(count)
    except ValueError:
        amount = -1.0
    factor = _RATE_UNITS.get(unit.strip() or "s")
    if amount <= 0 or factor is None:
        raise ValueError(f"'{value}' is not a rate (write e.g. 10/s, 600/m or 5000/h)")
    return amount / factor


Rate = Annotated[float, BeforeValidator(_rate)]

_JWT_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


def _jwt_algorithm(value: Any) -> str:
    text = str(value).strip()
    if text.lower() == "none":
        raise ValueError("'none' means an unsigned token and is never accepted")
    if text.upper().startswith("HS"):
        raise ValueError(
            f"'{text}' is an HMAC algorithm (a shared secret); issuers must sign with a "
            f"private key: use one of {', '.join(_JWT_ALGORITHMS)}"
        )
    if text not in _JWT_ALGORITHMS:
        raise ValueError(f"'{text}' is not supported (use one of {', '.join(_JWT_ALGORITHMS)})")
    return text


JwtAlgorithm = Annotated[str, BeforeValidator(_jwt_algorithm)]


def _jwks_url(value: Any) -> str:
    text = str(value).strip()
    parts = urlsplit(text)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise ValueError(
            f"'{text}' must be an https:// URL (plain http only for localhost / 127.0.0.1)"
        )
    return text


JwksUrl = Annotated[str, BeforeValidator(_jwks_url)]


class JwtIssuerSettings(_Section):
    """A trusted issuer of bearer JWTs (an OIDC provider's client-credentials tokens, say)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    issuer: str = Field(min_length=1)
    """The exact ``iss`` value its tokens carry."""
    jwks_url: JwksUrl | None = None
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
        from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        has_static = bool(self.public_keys or self.public_key_files)
        if (self.jwks_url is None) == (not has_static):
            raise ValueError(
                f"issuer {self.name}: set either jwks_url or public_keys / public_key_files"
            )
        families: dict[str, tuple[type, ...]] = {
            "RS": (rsa.RSAPublicKey,),
            "PS": (rsa.RSAPublicKey,),
            "ES": (ec.EllipticCurvePublicKey,),
            "Ed": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
        }
        usable = tuple({kind for alg in self.algorithms for kind in families[alg[:2]]})
        # Inline keys are checked here; key files when the gateway starts (paths are resolved
        # against the configuration's directory only after validation).
        for index, pem in enumerate(self.public_keys):
            label = f"public_keys[{index}]"
            try:
                key = load_pem_public_key(pem.encode())
            except (ValueError, TypeError):
                raise ValueError(
                    f"{label} is not a PEM public key (-----BEGIN PUBLIC KEY-----)"
                ) from None
            if not isinstance(key, usable):
                from gateway.credentials.jwt import key_kind

                raise ValueError(
                    f"{label} is an {key_kind(key)} key, which none of the "
                    f"algorithms {', '.join(self.algorithms)} can use"
                )
        return self


class ClientCertificateSettings(_Section):
    """Client certificates Caddy verified (``client_auth``) and forwarded in headers."""

    ca_bundle: ConfigPath
    """PEM file of every CA that may issue client certificates (all are trusted); read when
    the gateway starts (``gateway check`` too)."""
    subjects: tuple[str, ...] = ()
    """Subject patterns such as ``CN=build-*,O=Example``; one must match when set."""
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
        from gateway.credentials.client_cert import normalize_fingerprint

        return tuple(normalize_fingerprint(value) for value in values)

    @model_validator(mode="after")
    def _patterns_compile(self) -> ClientCertificateSettings:
        from gateway.credentials.client_cert import CertificateConfigError, check_patterns

        try:
            check_patterns(self.subjects, self.sans)
        except CertificateConfigError as error:
            raise ValueError(str(error)) from None
        return self


class ApiKeySettings(_Section):
    cache_ttl: Duration = Field(5.0, le=300)
    """How long a replica reuses a key record (a revocation takes effect within this)."""
    negative_cache_ttl: Duration = Field(5.0, le=300)
    max_stale: Duration = 0.0
    """While storage is down, cached records are used up to this age (then 503). The default,
    0, fails closed as soon as a record's cache_ttl ends; raise it to favour availability."""
    cache_size: int = Field(10_000, ge=1)
    touch_interval: Duration = 60.0
    """Last-use times are written in one batch this often."""


class RateSettings(_Section):
    rate: Rate
    """``10/s``, ``600/m``, ``5000/h``, or requests per second."""
    burst: int | None = Field(None, ge=1)
    """Requests allowed at once (default: one second's worth, at least 1)."""

    @property
    def burst_size(self) -> int:
        return self.burst if self.burst is not None else max(1, int(self.rate + 0.999999))


class RateLimitSettings(_Section):
    per_key: RateSettings | None = None
    """Per credential (API key, client certificate, token subject)."""
    per_ip: RateSettings | None = None
    """Per client address, for every request to an API host."""
    store: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None
    """Default: ``session.redis.url``."""
    key_prefix: str = "gateway:ratelimit:"


class UpstreamHeaderSettings(_Section):
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


class ApiHostSettings(_Section):
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
        from gateway.credentials.networks import NetworkError, networks_from_env

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


def _private_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    from gateway.credentials.networks import PRIVATE_NETWORKS

    return tuple(ipaddress.ip_network(cidr) for cidr in PRIVATE_NETWORKS)


class CredentialsSettings(_Section):
    """Machine credentials: API keys, client certificates, bearer JWTs, API hosts."""

    api_host_patterns: tuple[str, ...] = ("api.*",)
    """Hosts treated as API hosts even when not listed in ``api_hosts``."""
    default_networks: NetworkList = Field(default_factory=_private_networks)
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


class Settings(_Section):
    """The whole gateway configuration."""

    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()
    secrets: SecretsSettings
    policy: PolicySettings
    session: SessionSettings
    authentication: AuthenticationSettings = AuthenticationSettings(
        backend="file", file=UsersFileSettings(path=Path("users.yml"))
    )
    regulation: RegulationSettings = RegulationSettings()
    totp: TotpSettings = TotpSettings()
    storage: StorageSettings = StorageSettings()
    credentials: CredentialsSettings = CredentialsSettings()
    source: Path | None = Field(default=None, exclude=True)
    """The file this configuration was read from (set by the loader)."""
    _document: Document | None = PrivateAttr(default=None)

    def position(self, option: YamlPath) -> Position | None:
        """Where ``option`` (``("policy", "files", 0)``) is written in the file, or its
        nearest written ancestor (the file's start for a default); None when these settings
        were not loaded from a file. Lets checks that run after loading (does the users
        file exist? does the LDAP filter parse?) point at the line to fix.
        """
        return self._document.position(option) if self._document is not None else None


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _read_secret_files(
    document: Document, node: Any, path: YamlPath, warnings: list[Issue], issues: list[Issue]
) -> Any:
    """Replace every ``NAME_file: /path`` with ``NAME: <file contents>``."""
    if isinstance(node, list):
        return [
            _read_secret_files(document, item, (*path, index), warnings, issues)
            for index, item in enumerate(node)
        ]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        child = (*path, key)
        if not key.endswith("_file"):
            result[key] = _read_secret_files(document, value, child, warnings, issues)
            continue
        name = key[: -len("_file")]
        if name in node:
            issues.append(document.issue(child, f"set either '{name}' or '{key}', not both"))
            continue
        if not isinstance(value, str) or not value:
            issues.append(document.issue(child, f"'{key}' must be the path of a file"))
            continue
        if "\0" in value:
            issues.append(document.issue(child, f"'{key}': a path cannot contain a NUL byte"))
            continue
        secret_path = Path(value)
        if not secret_path.is_absolute() and document.file:
            secret_path = Path(document.file).resolve().parent / secret_path
        try:
            mode = secret_path.stat().st_mode
            content = secret_path.read_text(encoding="utf-8")
        except OSError as error:
            reason = error.strerror or str(error)
            issues.append(document.issue(child, f"cannot read secret file {value}: {reason}"))
            continue
        except UnicodeDecodeError:
            issues.append(document.issue(child, f"secret file {value} is not UTF-8 text"))
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(
                document.issue(
                    child,
                    f"secret file {value} is readable by other users "
                    f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {value}",
                )
            )
        lines = [line.strip() for line in content.splitlines() if line.strip()]
        result[name] = lines if _is_list_option((*path, name)) else content.rstrip("\r\n")
        # Problems with the value read point at the NAME_file line that supplied it.
        document.positions[(*path, name)] = document.position(child)
        document.key_positions[(*path, name)] = document.key_position(child)
    return result


def _option_annotation(location: YamlPath) -> Any:
    """The type annotation of the option at ``location`` (list indexes skipped), or None."""
    model: Any = Settings
    annotation: Any = None
    for part in location:
        if isinstance(part, int):
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return None
        annotation = info.annotation
        model = next(
            (
                candidate
                for candidate in (annotation, *getattr(annotation, "__args__", ()))
                if isinstance(candidate, type) and issubclass(candidate, BaseModel)
            ),
            None,
        )
    return annotation


def _is_list_option(location: YamlPath) -> bool:
    """Whether a ``NAME_file`` fills a list (one entry per line) rather than one value."""
    annotation = _option_annotation(location)
    origins = {getattr(annotation, "__origin__", None)}
    origins.update(getattr(arg, "__origin__", None) for arg in getattr(annotation, "__args__", ()))
    return bool(origins & {tuple, list})


def _known_options(root: type[BaseModel], location: YamlPath) -> list[str]:
    model: Any = root
    for part in location[:-1]:
        if isinstance(part, int):
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        annotation = info.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            return []
    return list(getattr(model, "model_fields", {}))


def _issue_from_error(
    document: Document, error: Mapping[str, Any], model: type[BaseModel], prefix: YamlPath
) -> Issue:
    relative: YamlPath = tuple(part for part in error["loc"] if isinstance(part, str | int))
    location: YamlPath = (*prefix, *relative)
    message = str(error["msg"]).removeprefix("Value error, ")
    kind = error["type"]
    field = ".".join(str(part) for part in location) or "configuration"
    if kind == "extra_forbidden":
        name = str(location[-1])
        close = difflib.get_close_matches(name, _known_options(model, relative), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return document.issue(location, f"unknown option '{name}'{hint}", at_key=True)
    elif kind == "missing":
        message = f"missing required option '{field}'"
    elif kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        message = f"'{error.get('input')}' is not allowed for {field} (expected {expected})"
    else:
        message = f"{field}: {message}"
    return document.issue(location, message)


def validation_issues(
    document: Document,
    error: ValidationError,
    *,
    model: type[BaseModel] = Settings,
    prefix: YamlPath = (),
) -> list[Issue]:
    """Every problem of a failed ``model.model_validate`` as ``file:line:column`` issues.

    ``prefix`` is where in ``document`` the validated data sits (``("api_hosts", 0)``), so
    that a policy file can validate one entry with a settings model and still point at it.
    """
    details = error.errors()
    # A list whose items failed also reports "too short"; the item errors say more.
    failed_items = {
        tuple(detail["loc"][:index])
        for detail in details
        for index, part in enumerate(detail["loc"])
        if isinstance(part, int)
    }
    return [
        _issue_from_error(document, detail, model, prefix)
        for detail in details
        if not (detail["type"] == "too_short" and tuple(detail["loc"]) in failed_items)
    ]


def load_settings_with_warnings(
    path: str | Path, *, environ: Mapping[str, str] | None = None
) -> tuple[Settings, list[Issue]]:
    """Load and validate ``gateway.yml``; raises :class:`ConfigError` listing every problem."""
    env = environ if environ is not None else default_environ()
    document = load_file(path, environ=env)
    if not isinstance(document.data, dict):
        raise ConfigError([document.issue((), "the configuration must be a YAML mapping")])
    warnings: list[Issue] = []
    issues: list[Issue] = []
    data = _read_secret_files(document, document.data, (), warnings, issues)
    if issues:
        raise ConfigError(issues, warnings=warnings)
    base_dir = Path(path).resolve().parent
    try:
        settings = Settings.model_validate(data, context={"environ": env})
    except ValidationError as error:
        raise ConfigError(validation_issues(document, error), warnings=warnings) from None
    settings = _resolve_paths(settings, base_dir).model_copy(
        update={"source": Path(path).resolve()}
    )
    settings._document = document
    return settings, warnings


def load_settings(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Like :func:`load_settings_with_warnings`, dropping the warnings."""
    return load_settings_with_warnings(path, environ=environ)[0]
