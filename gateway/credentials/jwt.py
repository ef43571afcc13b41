"""Bearer JSON Web Tokens (RFC 7519) from configured issuers, verified with PyJWT.

Per issuer: the exact ``iss``, accepted audiences, an allow-list of asymmetric algorithms
(:data:`gateway.config.keys.JWT_ALGORITHMS`: ``none`` and HMAC are refused when the settings
load, and a key's type must fit the token's algorithm, so an RSA public key can never serve
as an HMAC secret), keys from a JWKS URL
(:mod:`gateway.credentials.jwks`) or static PEM public keys, ``exp`` / ``nbf`` / ``iat``
with a small leeway, and required claims.

Tokens are taken byte for byte (compact serialization only, nothing trimmed or skipped), and
``exp`` / ``nbf`` / ``iat`` must be JSON numbers (RFC 7519 NumericDate): PyJWT would accept
``"exp": "1700000000"`` (it calls ``int()``), and Python counts ``true`` as the number 1.

Signature checks are CPU work and run inline; the only I/O (fetching a key set) is async.
A verified token is remembered (bounded, at most a minute and never past its ``exp``; the
leeway is for checking a token, not extra life for a remembered one) so a client repeating
its token does not cost a signature check per request.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import jwt

from gateway.config.keys import (
    JWT_ALGORITHMS,
    PublicKey,
    check_key_fits,
    parse_public_key,
)
from gateway.credentials.jwks import JwksClient
from gateway.errors import Rejected
from gateway.memo import BoundedMemo

if TYPE_CHECKING:
    from gateway.credentials.settings import JwtIssuerSettings

__all__ = [
    "JwtIdentity",
    "JwtIssuer",
    "JwtVerifier",
    "PublicKey",
    "TokenRejected",
    "is_numeric_date",
    "load_public_keys",
]

log = logging.getLogger(__name__)

_MAX_TOKEN_CHARS = 16 * 1024
# JWS compact serialization: three base64url parts (RFC 7515 section 7.1). Checked before any
# decoding, so a token with a stray space or newline is refused, whatever the base64 decoder
# would have skipped. The signature may be empty only so that "alg: none" is refused by name.
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_NUMERIC_DATES = ("exp", "nbf", "iat")
# Far beyond any real expiry, small enough for float arithmetic; NaN fails the comparison.
_MAX_NUMERIC_DATE = 2**53
_CACHE_SIZE = 4096
_CACHE_BYTES = 16 << 20
_CACHE_SECONDS = 60.0


class TokenRejected(Rejected):
    """A bearer token is not acceptable; the message is for logs, never for the client."""


@dataclass(frozen=True, slots=True)
class JwtIdentity:
    """The caller a verified token names."""

    username: str
    groups: tuple[str, ...]
    issuer: str
    """The configured issuer's name."""
    email: str = ""
    name: str = ""

    @property
    def credential(self) -> str:
        """``client:<issuer name>/<username>``, for policy ``subject`` rules.

        Qualified by the issuer, so a second configured issuer that mints the same ``sub``
        can never satisfy a rule written for the first one's client.
        """
        return f"client:{self.issuer}/{self.username}"


def load_public_keys(pems: Iterable[str | bytes], *, source: str) -> list[PublicKey]:
    """Parse PEM public keys; raises ValueError naming ``source`` and the index."""
    keys: list[PublicKey] = []
    for index, pem in enumerate(pems):
        key = parse_public_key(pem, f"{source}[{index}]")
        if not isinstance(key, PublicKey):
            raise ValueError(f"{source}[{index}]: unsupported key type {type(key).__name__}")
        keys.append(key)
    return keys


def is_numeric_date(value: object) -> TypeGuard[int | float]:
    """Whether a claim value is an RFC 7519 NumericDate: a finite JSON number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return -_MAX_NUMERIC_DATE <= value <= _MAX_NUMERIC_DATE


def _groups_from(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list | tuple):
        return tuple(str(item) for item in value if isinstance(item, str | int))
    return ()


class JwtIssuer:
    """One trusted token issuer: its keys and the rules its tokens must meet."""

    def __init__(
        self,
        name: str,
        issuer: str,
        *,
        audiences: Sequence[str],
        algorithms: Sequence[str],
        jwks: JwksClient | None = None,
        public_keys: Sequence[PublicKey] = (),
        username_claim: str = "sub",
        groups_claim: str | None = None,
        required_claims: Sequence[str] = ("exp",),
        leeway: float = 30.0,
        groups: Sequence[str] = (),
    ) -> None:
        unknown = [alg for alg in algorithms if alg not in JWT_ALGORITHMS]
        if unknown or not algorithms:
            raise ValueError(
                f"issuer {name}: algorithms must be chosen from "
                f"{', '.join(JWT_ALGORITHMS)} (got {', '.join(algorithms) or 'none'})"
            )
        if (jwks is None) == (not public_keys):
            raise ValueError(f"issuer {name}: needs either a JWKS URL or public keys")
        if not audiences:
            raise ValueError(f"issuer {name}: needs at least one audience")
        for index, key in enumerate(public_keys):
            check_key_fits(key, algorithms, f"public key {index}")
        self.name = name
        self.issuer = issuer
        self.audiences = list(audiences)
        self.algorithms = frozenset(algorithms)
        self.jwks = jwks
        self.public_keys = tuple(public_keys)
        self.username_claim = username_claim
        self.groups_claim = groups_claim
        self.leeway = leeway
        self.groups = tuple(groups)
        required = {"exp", *required_claims, username_claim} - {""}
        self._options: dict[str, Any] = {
            "require": sorted(required | {"iss", "aud"}),
            "verify_signature": True,
            "verify_exp": True,
            "verify_nbf": True,
            "verify_iat": True,
            "verify_iss": True,
            "verify_aud": True,
        }

    @classmethod
    def from_settings(cls, settings: JwtIssuerSettings, *, transport: Any = None) -> JwtIssuer:
        """Build from ``credentials.issuers[]``: parse PEM keys, prepare the JWKS client."""
        jwks = None
        if settings.jwks_url is not None:
            jwks = JwksClient(
                settings.jwks_url,
                timeout=settings.jwks_timeout,
                max_bytes=settings.jwks_max_bytes,
                refresh_interval=settings.jwks_refresh_interval,
                min_refetch_interval=settings.jwks_min_refetch_interval,
                max_stale=settings.jwks_max_stale,
                transport=transport,
            )
        pems: list[str | bytes] = list(settings.public_keys)
        for index, path in enumerate(settings.public_key_files):
            try:
                pems.append(path.read_bytes())
            except OSError as error:
                raise ValueError(
                    f"public_key_files[{index}]: cannot read {path}: {error.strerror}"
                ) from None
        return cls(
            settings.name,
            settings.issuer,
            audiences=settings.audiences,
            algorithms=settings.algorithms,
            jwks=jwks,
            public_keys=load_public_keys(pems, source="public keys"),
            username_claim=settings.username_claim,
            groups_claim=settings.groups_claim,
            required_claims=settings.required_claims,
            leeway=settings.leeway,
            groups=settings.groups,
        )

    async def candidate_keys(self, kid: str | None, algorithm: str) -> list[Any]:
        """The keys that may have signed a token with this ``kid`` and ``alg``."""
        key_types = JWT_ALGORITHMS[algorithm]
        if self.jwks is not None:
            jwk = await self.jwks.key(kid)
            if jwk is None:
                return []
            if jwk.algorithm is not None and jwk.algorithm != algorithm:
                return []
            return [jwk.key] if isinstance(jwk.key, key_types) else []
        return [key for key in self.public_keys if isinstance(key, key_types)]

    def decode(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        """Verify signature and claims with one key; raises :class:`jwt.InvalidTokenError`."""
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=self.audiences,
            issuer=self.issuer,
            leeway=self.leeway,
            options=self._options,  # type: ignore[arg-type]
        )

    def identity(self, claims: Mapping[str, Any]) -> JwtIdentity:
        """The identity a verified token's claims describe."""
        username = claims.get(self.username_claim)
        if not isinstance(username, str) or not username:
            raise TokenRejected(f"claim '{self.username_claim}' is not a non-empty string")
        groups = self.groups
        if self.groups_claim is not None:
            groups = groups + _groups_from(claims.get(self.groups_claim))
        email = claims.get("email")
        name = claims.get("name")
        return JwtIdentity(
            username=username,
            groups=tuple(dict.fromkeys(groups)),
            issuer=self.name,
            email=email if isinstance(email, str) else "",
            name=name if isinstance(name, str) else username,
        )

    async def start(self) -> None:
        if self.jwks is not None:
            await self.jwks.start()

    async def close(self) -> None:
        if self.jwks is not None:
            await self.jwks.close()


@dataclass(frozen=True, slots=True)
class _Verified:
    identity: JwtIdentity
    valid_from: float
    valid_until: float


class JwtVerifier:
    """Verify a bearer token against whichever configured issuer its ``iss`` names."""

    def __init__(
        self, issuers: Iterable[JwtIssuer], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._issuers: dict[str, JwtIssuer] = {}
        for issuer in issuers:
            if issuer.issuer in self._issuers:
                raise ValueError(f"issuer {issuer.issuer} is configured twice")
            self._issuers[issuer.issuer] = issuer
        # Keyed by tokens clients send: bounded in bytes too (gateway/memo.py).
        self._cache: BoundedMemo[str, _Verified] = BoundedMemo(_CACHE_SIZE, _CACHE_BYTES)
        self._clock = clock

    def __bool__(self) -> bool:
        return bool(self._issuers)

    @property
    def issuers(self) -> tuple[JwtIssuer, ...]:
        return tuple(self._issuers.values())

    async def verify(self, token: str) -> JwtIdentity:
        """The identity in a valid token; raises :class:`TokenRejected` otherwise."""
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.valid_from <= now < cached.valid_until:
                return cached.identity
            self._cache.pop(token)
        if len(token) > _MAX_TOKEN_CHARS:
            raise TokenRejected("token is too long")
        if _COMPACT.fullmatch(token) is None:
            raise TokenRejected("malformed token: not three base64url parts")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError as error:
            raise TokenRejected(f"malformed token: {error}") from None
        for claim in _NUMERIC_DATES:
            # Before PyJWT's own checks, which would int() a string or a bool into a date.
            if claim in unverified and not is_numeric_date(unverified[claim]):
                raise TokenRejected(f"claim '{claim}' is not a NumericDate (a JSON number)")
        algorithm = header.get("alg")
        claimed_issuer = unverified.get("iss")
        issuer = self._issuers.get(claimed_issuer) if isinstance(claimed_issuer, str) else None
        if issuer is None:
            raise TokenRejected(f"unknown issuer {claimed_issuer!r}")
        if not isinstance(algorithm, str) or algorithm not in issuer.algorithms:
            raise TokenRejected(f"algorithm {algorithm!r} is not allowed for {issuer.name}")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected("kid is not a string")
        keys = await issuer.candidate_keys(kid, algorithm)
        if not keys:
            raise TokenRejected(f"no key of {issuer.name} matches kid {kid!r} / {algorithm}")
        claims: dict[str, Any] | None = None
        for key in keys:
            try:
                claims = issuer.decode(token, key, algorithm)
                break
            except jwt.InvalidSignatureError:
                continue  # another static key may fit
            except (jwt.InvalidTokenError, TypeError, ValueError) as failure:
                # TypeError: PyJWT's answer to a key object that does not fit the algorithm.
                raise TokenRejected(f"{issuer.name}: {type(failure).__name__}: {failure}") from None
        if claims is None:
            raise TokenRejected(f"{issuer.name}: signature verification failed")
        identity = issuer.identity(claims)
        self._remember(token, identity, claims, issuer.leeway, now)
        return identity

    def _remember(
        self,
        token: str,
        identity: JwtIdentity,
        claims: Mapping[str, Any],
        leeway: float,
        now: float,
    ) -> None:
        until = now + _CACHE_SECONDS
        expires = claims.get("exp")
        if is_numeric_date(expires):
            # Never past exp itself: within the leeway each request is checked again.
            until = min(until, float(expires))
        if until <= now:
            return
        start = float("-inf")
        not_before = claims.get("nbf")
        if is_numeric_date(not_before):
            start = float(not_before) - leeway
        self._cache.put(token, _Verified(identity, start, until), len(token))

    async def start(self) -> None:
        for issuer in self._issuers.values():
            await issuer.start()

    async def close(self) -> None:
        for issuer in self._issuers.values():
            await issuer.close()
