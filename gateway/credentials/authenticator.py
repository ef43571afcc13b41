"""One entry point for machine credentials: :class:`MachineAuthenticator`.

Per request, in this order:

1. the API host's network allowlist (a host matching ``credentials.api_hosts``, an
   ``api_hosts:`` entry of a policy file, or ``api_host_patterns``; default: private and
   loopback ranges) → 403;
2. the per-IP rate limit → 429;
3. one credential, the first present of: API key (``X-API-Key``, or ``Authorization: Bearer
   gw_...``), client certificate (headers from a trusted proxy only), bearer JWT → 401;
4. the API key's own networks and scopes → 403;
5. the per-credential rate limit → 429;
6. the upstream credential of the API host, if it has one (credential exchange) → 503.

Machine clients are never redirected: every failure is a small JSON body with HTTP status
and headers (:class:`MachineFailure`), and never says more than the error code.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from gateway.credentials.api_key_verifier import ApiKeyVerifier, static_key_index
from gateway.credentials.api_keys import (
    ApiKey,
    ApiKeyLookup,
    ApiKeyRejected,
    ApiKeyUnavailable,
    looks_like_api_key,
)
from gateway.credentials.client_cert import (
    CertificateConfigError,
    CertificateRejected,
    ClientCertificateVerifier,
)
from gateway.credentials.hosts import HostMatcher
from gateway.credentials.jwt import JwtIssuer, JwtVerifier, TokenRejected
from gateway.credentials.rate_limit import (
    Limit,
    MemoryRateLimiter,
    RateDecision,
    RateLimiter,
    RedisRateLimiter,
)
from gateway.credentials.upstream import (
    SecretSource,
    UpstreamCredentials,
    UpstreamHeader,
    UpstreamUnavailable,
)
from gateway.errors import ConfigError
from gateway.memo import BoundedMemo
from gateway.net import AddressSet, IPAddress, address_or_none, normalize_host
from gateway.security.regulation import ip_subject

if TYPE_CHECKING:
    from gateway.config.settings import Settings
    from gateway.credentials.settings import ApiHostSettings, CredentialsSettings, RateSettings
    from gateway.session.settings import RedisSettings
    from gateway.storage import Storage

__all__ = [
    "ApiHost",
    "ApiHostIndex",
    "CredentialsConfigError",
    "MachineAuthenticator",
    "MachineDeclarations",
    "MachineFailure",
    "MachineIdentity",
    "MachineResult",
]

log = logging.getLogger(__name__)

Kind = Literal["api_key", "cert", "jwt"]
_REALM = 'Bearer realm="gateway"'


class CredentialsConfigError(ConfigError, ValueError):
    """A file the credentials settings point at cannot be used; the message names the option.

    ``option`` is that option's path in ``gateway.yml`` (``("credentials", "issuers", 0)``),
    so that ``gateway check`` and start-up can point at its line.
    """

    def __init__(self, message: str, *, option: tuple[str | int, ...] = ("credentials",)) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True, slots=True)
class MachineIdentity:
    """A machine client that passed every check."""

    username: str
    groups: tuple[str, ...]
    name: str
    credentials: frozenset[str]
    """``{"key:ci-runner"}``, ``{"cert:CN=build-agent"}`` or ``{"client:reporting"}``."""
    kind: Kind
    email: str = ""
    scopes: tuple[str, ...] = ()
    """An API key's host globs (empty: not restricted by the key)."""
    networks: tuple[str, ...] = ()
    """An API key's own client networks (empty: not restricted by the key)."""
    owner: str = ""
    upstream_headers: Mapping[str, str] = field(default_factory=dict)
    """Headers for Caddy to copy onto the proxied request (credential exchange)."""


@dataclass(frozen=True, slots=True)
class MachineFailure:
    """A refusal with HTTP semantics; ``reason`` is for logs, never for the client."""

    status: Literal[401, 403, 429, 503]
    error: str
    www_authenticate: str | None = None
    retry_after: int | None = None
    reason: str = field(default="", compare=False)

    def body(self) -> bytes:
        """``{"error": "<code>"}``: nothing about why, beyond the code."""
        return json.dumps({"error": self.error}).encode()

    def headers(self) -> dict[str, str]:
        """Response headers: ``WWW-Authenticate`` / ``Retry-After`` when they apply."""
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        if self.www_authenticate is not None:
            headers["WWW-Authenticate"] = self.www_authenticate
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def because(self, reason: str) -> MachineFailure:
        """The same answer, with a log reason."""
        return MachineFailure(
            self.status, self.error, self.www_authenticate, self.retry_after, reason
        )


MachineResult = MachineIdentity | MachineFailure

NO_CREDENTIALS = MachineFailure(401, "unauthorized", _REALM)
INVALID_CREDENTIALS = MachineFailure(401, "invalid_token", f'{_REALM}, error="invalid_token"')
NETWORK_DENIED = MachineFailure(403, "forbidden")
SCOPE_DENIED = MachineFailure(403, "insufficient_scope", f'{_REALM}, error="insufficient_scope"')
UNAVAILABLE = MachineFailure(503, "temporarily_unavailable", retry_after=5)


def _rate_limited(decision: RateDecision, reason: str) -> MachineFailure:
    return MachineFailure(
        429, "rate_limited", retry_after=int(decision.retry_after_header), reason=reason
    )


# --------------------------------------------------------------------------------------------
# API hosts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiHost:
    """An API host's client allowlist and upstream credential headers."""

    domain: str
    networks: AddressSet
    upstream: tuple[UpstreamHeader, ...] = ()
    declared: bool = True
    """False for a host that is an API host only by name (``api_host_patterns``): such a host
    must also lie under a cookie domain, so ``api.evil.com`` is refused like any stranger."""

    @classmethod
    def from_settings(cls, host: ApiHostSettings, default_networks: AddressSet) -> ApiHost:
        """Compile one ``api_hosts`` entry (of ``gateway.yml`` or a policy file)."""
        return cls(
            host.domain,
            AddressSet(host.networks) if host.networks is not None else default_networks,
            tuple(UpstreamHeader(u.header, u.secret, u.format) for u in host.upstream),
        )


@dataclass(frozen=True, slots=True, eq=False)
class MachineDeclarations:
    """The API hosts and policy-declared API keys of one policy snapshot."""

    hosts: ApiHostIndex
    static_keys: Mapping[str, ApiKey]
    """Declared keys by key id."""


class ApiHostIndex:
    """Which hosts are API hosts: exact names in a dict, globs in order, then the fallback."""

    _MEMO_LIMIT = 4096

    def __init__(
        self,
        hosts: Iterable[ApiHost],
        *,
        fallback_patterns: Iterable[str] = ("api.*",),
        default_networks: AddressSet,
    ) -> None:
        self._exact: dict[str, ApiHost] = {}
        self._globs: list[tuple[HostMatcher, ApiHost]] = []
        for host in hosts:
            if "*" in host.domain:
                self._globs.append((HostMatcher([host.domain]), host))
            else:
                self._exact[host.domain] = host
        self._fallback = HostMatcher(fallback_patterns)
        self._default = default_networks
        # Host names come from clients: bounded in entries and bytes (gateway/memo.py).
        self._memo: BoundedMemo[str, ApiHost | None] = BoundedMemo(self._MEMO_LIMIT, 1 << 20)

    def lookup(self, host: str) -> ApiHost | None:
        """The API host for a canonical host (:func:`gateway.net.normalize_host`), or None."""
        found = self._exact.get(host)
        if found is not None:
            return found
        if host in self._memo:
            return self._memo.get(host)
        result: ApiHost | None = None
        for matcher, candidate in self._globs:
            if matcher.matches(host):
                result = candidate
                break
        else:
            if self._fallback.matches(host):
                result = ApiHost(host, self._default, declared=False)
        return self._memo.put(host, result, len(host))

    @property
    def secret_names(self) -> list[str]:
        """Every secret an API host's upstream headers need."""
        hosts = [*self._exact.values(), *(host for _, host in self._globs)]
        return [item.secret for host in hosts for item in host.upstream]


def _header_host(headers: Mapping[str, str], from_trusted_proxy: bool) -> str | None:
    """The canonical host a request's headers name, or None when they name none that is valid."""
    raw = headers.get("x-forwarded-host" if from_trusted_proxy else "host")
    try:
        return normalize_host(raw) if raw else None
    except ValueError:
        return None


def _limit(settings: RateSettings | None) -> Limit | None:
    return None if settings is None else Limit(settings.rate, settings.burst_size)


# --------------------------------------------------------------------------------------------
# The authenticator
# --------------------------------------------------------------------------------------------


class MachineAuthenticator:
    """Authenticate machine clients from headers and client address; see the module docs."""

    def __init__(
        self,
        settings: CredentialsSettings,
        *,
        hash_key: bytes | str,
        repository: ApiKeyLookup | None = None,
        secrets: SecretSource | None = None,
        redis_url: str | None = None,
        redis_password: str | None = None,
        redis: RedisSettings | None = None,
        static_keys: Iterable[ApiKey] = (),
        rate_limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.time,
        jwks_transport: Any = None,
    ) -> None:
        """Read the CA bundle and key files, compile everything; no network I/O yet.

        Raises :class:`CredentialsConfigError` naming the option whose file is unusable.
        """
        key = hash_key.encode() if isinstance(hash_key, str) else hash_key
        static_keys = tuple(static_keys)
        api_keys = settings.api_keys
        self.api_keys = ApiKeyVerifier(
            key,
            repository,
            static_keys=static_keys,
            cache_ttl=api_keys.cache_ttl,
            negative_cache_ttl=api_keys.negative_cache_ttl,
            max_stale=api_keys.max_stale,
            cache_size=api_keys.cache_size,
            touch_interval=api_keys.touch_interval,
            clock=clock,
        )
        self.certificates: ClientCertificateVerifier | None = None
        if settings.client_certificates is not None:
            try:
                self.certificates = ClientCertificateVerifier.from_settings(
                    settings.client_certificates, clock=clock
                )
            except CertificateConfigError as error:
                raise CredentialsConfigError(
                    f"credentials.client_certificates.ca_bundle: {error}",
                    option=("credentials", "client_certificates", "ca_bundle"),
                ) from None
        issuers: list[JwtIssuer] = []
        for index, issuer in enumerate(settings.issuers):
            try:
                issuers.append(JwtIssuer.from_settings(issuer, transport=jwks_transport))
            except ValueError as error:
                raise CredentialsConfigError(
                    f"credentials.issuers.{index} ({issuer.name}): {error}",
                    option=("credentials", "issuers", index),
                ) from None
        self.tokens = JwtVerifier(issuers, clock=clock)
        self._default_networks = AddressSet(settings.default_networks)
        self._host_patterns = settings.api_host_patterns
        self._configured_hosts = tuple(
            ApiHost.from_settings(host, self._default_networks) for host in settings.api_hosts
        )
        self.declared = MachineDeclarations(self._host_index(()), static_key_index(static_keys))
        """What holds without a policy's declarations (``gateway.yml`` only)."""
        self.upstream = UpstreamCredentials(secrets)
        limits = settings.rate_limits
        self._per_key = _limit(limits.per_key)
        self._per_ip = _limit(limits.per_ip)
        if rate_limiter is None and limits.store == "redis" and (self._per_key or self._per_ip):
            if redis_url is None and limits.redis_url is None:
                raise ValueError("credentials.rate_limits.store 'redis' needs a redis_url")
            from gateway.session.settings import RedisSettings  # the defaults, when none are given

            client = redis or RedisSettings()  # its timeout and pool size
            rate_limiter = RedisRateLimiter.from_url(
                limits.redis_url or redis_url or "",
                password=redis_password,
                key_prefix=limits.key_prefix,
                timeout=client.timeout,
                pool_size=client.pool_size,
            )
        self.rate_limiter: RateLimiter = rate_limiter or MemoryRateLimiter()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        storage: Storage | None = None,
        static_keys: Iterable[ApiKey] = (),
        clock: Callable[[], float] = time.time,
    ) -> MachineAuthenticator:
        """Build from the whole configuration; ``storage`` serves key records and secrets."""
        return cls(
            settings.credentials,
            hash_key=settings.secrets.hash_key,
            repository=storage.api_keys if storage is not None else None,
            secrets=storage.secrets if storage is not None else None,
            redis_url=settings.session.redis.url,
            redis_password=settings.session.redis.password,
            redis=settings.session.redis,
            static_keys=static_keys,
            clock=clock,
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch JWKS, read upstream secrets, start the last-used writer."""
        await self.tokens.start()
        await self.api_keys.start()
        await self.load_upstream_secrets()

    async def load_upstream_secrets(self, declarations: MachineDeclarations | None = None) -> None:
        """(Re)read the secret of every API host's upstream headers, so that no request waits
        for storage; a secret that cannot be read is logged (its host answers 503)."""
        hosts = (declarations or self.declared).hosts
        for name in dict.fromkeys(hosts.secret_names):
            try:
                await self.upstream.load([name])
            except Exception as error:
                log.error("credential exchange: %s (its API host answers 503 until fixed)", error)

    async def close(self) -> None:
        """Stop background work; write pending last-use times."""
        await self.api_keys.close()
        await self.tokens.close()
        await self.rate_limiter.close()

    def declare(
        self, hosts: Iterable[ApiHostSettings], keys: Iterable[ApiKey]
    ) -> MachineDeclarations:
        """The API hosts and keys a policy declares, compiled (pure: nothing is installed).

        Policy hosts come first, then those of ``credentials.api_hosts`` (a policy entry
        replaces a configured one with the same domain), then ``api_host_patterns``. Raises
        :class:`ValueError` if a key id is declared twice.
        """
        declared = tuple(ApiHost.from_settings(host, self._default_networks) for host in hosts)
        return MachineDeclarations(self._host_index(declared), static_key_index(keys))

    def _host_index(self, declared: tuple[ApiHost, ...]) -> ApiHostIndex:
        replaced = {host.domain for host in declared}
        return ApiHostIndex(
            (*declared, *(host for host in self._configured_hosts if host.domain not in replaced)),
            fallback_patterns=self._host_patterns,
            default_networks=self._default_networks,
        )

    # -- per request ---------------------------------------------------------------------

    @property
    def rate_limited(self) -> bool:
        """Whether requests are counted (then every request must reach :meth:`authenticate`)."""
        return self._per_key is not None or self._per_ip is not None

    def is_api_host(self, host: str, declarations: MachineDeclarations | None = None) -> bool:
        """Whether the canonical ``host`` (:func:`gateway.net.normalize_host`) is an API host
        (machine clients only, never redirected)."""
        return (declarations or self.declared).hosts.lookup(host) is not None

    def presented(self, headers: Mapping[str, str], from_trusted_proxy: bool) -> bool:
        """Whether the request carries any machine credential (cheap, no verification)."""
        if headers.get("x-api-key"):
            return True
        if (
            from_trusted_proxy
            and self.certificates is not None
            and ClientCertificateVerifier.presented(headers)
        ):
            return True
        bearer = _bearer(headers)
        return bearer is not None and (_meant_as_api_key(bearer) or bool(self.tokens))

    async def authenticate(
        self,
        headers: Mapping[str, str],
        client_ip: str | IPAddress,
        from_trusted_proxy: bool,
        *,
        host: str | None = None,
        declarations: MachineDeclarations | None = None,
    ) -> MachineResult:
        """Identify the machine client, or say how to refuse it (see the module docs).

        ``headers`` have lower-case names. ``host`` is the canonical target host (as in
        :class:`~gateway.decision.request.AccessRequest`); by default it is
        ``X-Forwarded-Host`` from a trusted proxy, else ``Host``, normalised here.
        ``declarations`` are those of the policy snapshot the request is decided under
        (default: ``gateway.yml`` only).
        """
        declared = declarations or self.declared
        address = address_or_none(client_ip)
        if host is None:
            host = _header_host(headers, from_trusted_proxy)
        host_name = host or None
        api_host = declared.hosts.lookup(host_name) if host_name else None
        if api_host is not None and (address is None or address not in api_host.networks):
            return NETWORK_DENIED.because(f"{client_ip} is not allowed on {host_name}")
        if self._per_ip is not None and address is not None:
            # Counted like regulation counts: IPv6 per /64, so rotating addresses within one
            # allocation does not get around the limit.
            decision = await self.rate_limiter.hit(ip_subject(str(address)), self._per_ip)
            if not decision.allowed:
                return _rate_limited(decision, f"rate limit for {address}")

        outcome = await self._identify(
            headers, from_trusted_proxy, address, host_name, declared.static_keys
        )
        if isinstance(outcome, MachineFailure):
            return outcome

        if self._per_key is not None:
            credential = next(iter(outcome.credentials))
            decision = await self.rate_limiter.hit(f"cred:{credential}", self._per_key)
            if not decision.allowed:
                return _rate_limited(decision, f"rate limit for {credential}")
        if api_host is not None and api_host.upstream:
            try:
                upstream = await self.upstream.headers(api_host.upstream)
            except UpstreamUnavailable as error:
                return UNAVAILABLE.because(str(error))
            return _with_upstream(outcome, upstream)
        return outcome

    async def _identify(
        self,
        headers: Mapping[str, str],
        from_trusted_proxy: bool,
        address: IPAddress | None,
        host: str | None,
        static_keys: Mapping[str, ApiKey],
    ) -> MachineResult:
        bearer = _bearer(headers)
        # Byte for byte: a key with padding is a wrong key (401), never trimmed into a right
        # one; only an absent or empty header counts as "no key".
        api_key = headers.get("x-api-key", "")
        if not api_key and bearer is not None and _meant_as_api_key(bearer):
            api_key = bearer
        if api_key:
            return await self._api_key(api_key, address, host, static_keys)
        if (
            from_trusted_proxy
            and self.certificates is not None
            and ClientCertificateVerifier.presented(headers)
        ):
            return self._certificate(headers)
        if bearer is not None and self.tokens:
            return await self._token(bearer)
        if bearer is not None:
            return INVALID_CREDENTIALS.because("bearer token, but no JWT issuer is configured")
        return NO_CREDENTIALS.because("no credentials")

    async def _api_key(
        self,
        value: str,
        address: IPAddress | None,
        host: str | None,
        static_keys: Mapping[str, ApiKey],
    ) -> MachineResult:
        try:
            key = await self.api_keys.verify(value, static_keys)
        except ApiKeyRejected as error:
            return INVALID_CREDENTIALS.because(str(error))
        except ApiKeyUnavailable as error:
            return UNAVAILABLE.because(str(error))
        if not key.allows_address(address):
            return NETWORK_DENIED.because(f"API key {key.name} is not allowed from {address}")
        if not key.allows_host(host):
            return SCOPE_DENIED.because(f"API key {key.name} is not scoped for {host}")
        return MachineIdentity(
            username=key.name,
            groups=key.groups,
            name=key.name,
            credentials=frozenset({f"key:{key.name}"}),
            kind="api_key",
            scopes=key.scopes,
            networks=key.networks,
            owner=key.owner,
        )

    def _certificate(self, headers: Mapping[str, str]) -> MachineResult:
        assert self.certificates is not None
        try:
            identity = self.certificates.verify(headers)
        except CertificateRejected as error:
            return INVALID_CREDENTIALS.because(str(error))
        if identity is None:  # pragma: no cover - presented() said there was one
            return NO_CREDENTIALS.because("no certificate")
        return MachineIdentity(
            username=identity.username,
            groups=self.certificates.groups,
            name=identity.username,
            credentials=frozenset({identity.credential}),
            kind="cert",
        )

    async def _token(self, token: str) -> MachineResult:
        try:
            identity = await self.tokens.verify(token)
        except TokenRejected as error:
            return INVALID_CREDENTIALS.because(str(error))
        return MachineIdentity(
            username=identity.username,
            groups=identity.groups,
            name=identity.name,
            credentials=frozenset({identity.credential}),
            kind="jwt",
            email=identity.email,
        )


def _bearer(headers: Mapping[str, str]) -> str | None:
    """What follows ``Bearer`` and one space in ``Authorization``, byte for byte.

    Nothing is trimmed: a credential with padding must fail verification rather than be
    turned into a valid one (the scheme alone is case-insensitive, RFC 9110 section 11.1).
    None when the header is absent or not a Bearer credential.
    """
    authorization = headers.get("authorization")
    if not authorization:
        return None
    scheme, separator, value = authorization.partition(" ")
    if not separator or scheme.lower() != "bearer":
        return None
    return value or None


def _meant_as_api_key(bearer: str) -> bool:
    """Whether a Bearer value is an attempt at an API key (padding looked through).

    Only for choosing the verifier: a padded key is then verified as it is, and refused.
    """
    return looks_like_api_key(bearer.lstrip())


def _with_upstream(identity: MachineIdentity, upstream: Mapping[str, str]) -> MachineIdentity:
    return MachineIdentity(
        username=identity.username,
        groups=identity.groups,
        name=identity.name,
        credentials=identity.credentials,
        kind=identity.kind,
        email=identity.email,
        scopes=identity.scopes,
        networks=identity.networks,
        owner=identity.owner,
        upstream_headers=upstream,
    )
