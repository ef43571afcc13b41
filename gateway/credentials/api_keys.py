"""API keys: ``gw_<id>_<secret>``, verified from an in-memory cache of their records.

* **Format.** ``gw_`` + a 12-character id (lowercase base32, public, the lookup key) + ``_``
  + a secret of at least 32 random bytes in URL-safe base64 (43+ characters). Anything else
  is rejected by one regular expression, before any lookup.
* **Storage.** Only ``keyed_hash(hash_key, secret, purpose="api-key")`` is stored; a
  presented secret is hashed the same way and compared with :func:`~gateway.security.crypto.equal`
  (constant time). After a rotation the previous hash stays valid until
  ``previous_valid_until``.
* **Hot path.** Records are read through :class:`ApiKeyVerifier`, which caches them for
  ``cache_ttl`` seconds (unknown ids too, so a flood of random keys cannot reach the
  database), coalesces concurrent misses, and collects last-use times in memory to write them
  in one batch every ``touch_interval``. A revoked key therefore stops working within
  ``cache_ttl`` on every replica.
* **GitOps.** Keys can also be declared by hash in policy files
  (:func:`load_static_api_keys`); such keys live only in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.config.suggest import did_you_mean
from gateway.config.yaml import YamlPath
from gateway.credentials.hosts import HostMatcher
from gateway.credentials.networks import NetworkError, parse_networks
from gateway.errors import ConfigError, Rejected, Unavailable
from gateway.memo import BoundedMemo
from gateway.net import AddressSet
from gateway.observability.throttle import log_throttled
from gateway.security.crypto import equal, keyed_hash
from gateway.storage.records import ApiKeyRecord

__all__ = [
    "DECLARATION_FIELDS",
    "HASH_PURPOSE",
    "KEY_PREFIX",
    "ApiKey",
    "ApiKeyLookup",
    "ApiKeyRejected",
    "ApiKeyRepository",
    "ApiKeyUnavailable",
    "ApiKeyVerifier",
    "PresentedKey",
    "StaticKeyError",
    "generate_api_key",
    "hash_secret",
    "is_valid_key_name",
    "load_static_api_keys",
    "looks_like_api_key",
    "new_key_for",
    "parse_api_key",
    "parse_timestamp",
    "static_key_index",
]

log = logging.getLogger(__name__)

KEY_PREFIX = "gw_"
HASH_PURPOSE = "api-key"
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_ID_LENGTH = 12
_SECRET_BYTES = 32
_KEY_FORMAT = re.compile(r"gw_([a-z2-7]{12})_([A-Za-z0-9_-]{43,128})")
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


# --------------------------------------------------------------------------------------------
# The key itself
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PresentedKey:
    """A syntactically valid key as a client sent it."""

    key_id: str
    secret: str = field(repr=False)


def is_valid_key_name(name: str) -> bool:
    """Names: 1-128 of letters, digits, ``.``, ``_``, ``@``, ``-``, starting alphanumeric."""
    return _NAME.fullmatch(name) is not None


def looks_like_api_key(value: str) -> bool:
    """Whether a bearer value is meant as an API key (``gw_`` prefix) rather than a JWT."""
    return value.startswith(KEY_PREFIX)


def parse_api_key(value: str) -> PresentedKey | None:
    """Split ``gw_<id>_<secret>``; None for anything malformed (no lookup is made)."""
    match = _KEY_FORMAT.fullmatch(value)
    if match is None:
        return None
    return PresentedKey(match.group(1), match.group(2))


def generate_api_key() -> tuple[str, str]:
    """A new ``(key_id, full key)``; the key is shown once and never stored."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
    return key_id, new_key_for(key_id)


def new_key_for(key_id: str) -> str:
    """A new full key with a fresh secret for an existing id (rotation keeps the id)."""
    return f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"


def hash_secret(hash_key: bytes, secret_or_key: str) -> bytes:
    """The stored form of a secret; accepts the secret alone or the whole ``gw_...`` key."""
    presented = parse_api_key(secret_or_key)
    secret = presented.secret if presented is not None else secret_or_key
    return keyed_hash(hash_key, secret, purpose=HASH_PURPOSE)


# --------------------------------------------------------------------------------------------
# Compiled keys
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key record with its scopes and networks compiled for per-request checks."""

    key_id: str
    name: str
    owner: str
    secret_hash: bytes = field(repr=False)
    previous_secret_hash: bytes | None = field(default=None, repr=False)
    previous_valid_until: float | None = None
    groups: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    expires_at: float | None = None
    disabled: bool = False
    static: bool = False
    """Declared in a policy file (by hash) rather than stored in the database."""
    scope_matcher: HostMatcher | None = field(default=None, repr=False, compare=False)
    network_set: AddressSet | None = field(default=None, repr=False, compare=False)

    @classmethod
    def compile(
        cls,
        key_id: str,
        name: str,
        owner: str,
        secret_hash: bytes,
        *,
        previous_secret_hash: bytes | None = None,
        previous_valid_until: float | None = None,
        groups: Iterable[str] = (),
        scopes: Iterable[str] = (),
        networks: Iterable[str] = (),
        expires_at: float | None = None,
        disabled: bool = False,
        static: bool = False,
    ) -> ApiKey:
        """Build and compile; raises ValueError / NetworkError for a bad scope or network."""
        scope_list = tuple(scopes)
        network_list = tuple(networks)
        return cls(
            key_id=key_id,
            name=name,
            owner=owner,
            secret_hash=bytes(secret_hash),
            previous_secret_hash=(
                bytes(previous_secret_hash) if previous_secret_hash is not None else None
            ),
            previous_valid_until=previous_valid_until,
            groups=tuple(groups),
            scopes=scope_list,
            networks=network_list,
            expires_at=expires_at,
            disabled=disabled,
            static=static,
            scope_matcher=HostMatcher(scope_list) if scope_list else None,
            network_set=(
                AddressSet(parse_networks(network_list, source=f"API key {name} networks"))
                if network_list
                else None
            ),
        )

    @classmethod
    def from_record(cls, record: ApiKeyRecord) -> ApiKey:
        """Compile a stored record; a record with a broken scope or network allows nothing."""
        try:
            return cls.compile(
                record.key_id,
                record.name,
                record.owner,
                record.secret_hash,
                previous_secret_hash=record.previous_secret_hash,
                previous_valid_until=record.previous_valid_until,
                groups=record.groups,
                scopes=record.scopes,
                networks=record.networks,
                expires_at=record.expires_at,
                disabled=record.disabled,
            )
        except ValueError as error:
            log.error("API key %s is unusable and treated as disabled: %s", record.name, error)
            return cls(record.key_id, record.name, record.owner, record.secret_hash, disabled=True)

    def secret_matches(self, presented_hash: bytes, now: float) -> bool:
        """Constant-time comparison with the current hash, or the previous one in its grace."""
        if equal(presented_hash, self.secret_hash):
            return True
        previous = self.previous_secret_hash
        if previous is None or self.previous_valid_until is None:
            return False
        return now < self.previous_valid_until and equal(presented_hash, previous)

    def allows_host(self, host: str | None) -> bool:
        """Scopes: no scopes = every host (the policy still decides); else a glob must match."""
        if self.scope_matcher is None:
            return True
        return host is not None and self.scope_matcher.matches(host)

    def allows_address(self, address: object) -> bool:
        """The key's own network allowlist (none = any address)."""
        return self.network_set is None or address in self.network_set


# --------------------------------------------------------------------------------------------
# Where records come from
# --------------------------------------------------------------------------------------------


class ApiKeyLookup(Protocol):
    """What the verifier needs from storage: one read by id, and batched last-use writes."""

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None: ...

    async def touch_api_keys(self, last_used: Mapping[str, float]) -> None: ...


class ApiKeyRepository(ApiKeyLookup, Protocol):
    """Everything the ``gateway keys`` command needs (``Storage.api_keys`` fits)."""

    async def create_api_key(self, record: ApiKeyRecord) -> None: ...

    async def get_api_key_by_name(self, name: str) -> ApiKeyRecord | None: ...

    async def list_api_keys(self) -> list[ApiKeyRecord]: ...

    async def update_api_key(self, record: ApiKeyRecord) -> bool: ...

    async def delete_api_key(self, key_id: str) -> bool: ...


class ApiKeyRejected(Rejected):
    """The presented key is not valid; the message is for logs only (the client sees 401)."""


class ApiKeyUnavailable(Unavailable):
    """The key's record cannot be read right now (storage down, nothing cached): answer 503."""


# --------------------------------------------------------------------------------------------
# The verifier
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Cached:
    key: ApiKey | None
    fetched_at: float


def static_key_index(keys: Iterable[ApiKey]) -> dict[str, ApiKey]:
    """Declared keys by id; :class:`ValueError` if an id is declared twice."""
    static: dict[str, ApiKey] = {}
    for key in keys:
        if key.key_id in static:
            raise ValueError(f"API key id {key.key_id} is declared twice")
        static[key.key_id] = key
    return static


_CACHE_BYTES = 8 << 20
"""Byte budget of the key-record cache (ids of unknown keys are cached too)."""


class ApiKeyVerifier:
    """Check presented keys; records are cached, last-use times written in batches."""

    def __init__(
        self,
        hash_key: bytes,
        repository: ApiKeyLookup | None = None,
        *,
        static_keys: Iterable[ApiKey] = (),
        cache_ttl: float = 5.0,
        negative_cache_ttl: float = 5.0,
        max_stale: float = 0.0,
        cache_size: int = 10_000,
        touch_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(hash_key) < 32:
            raise ValueError("the API key hash key must be at least 32 bytes")
        self._hash_key = hash_key
        self._repository = repository
        self._static = static_key_index(static_keys)
        self._cache: BoundedMemo[str, _Cached] = BoundedMemo(max(1, cache_size), _CACHE_BYTES)
        self._cache_ttl = cache_ttl
        self._negative_ttl = negative_cache_ttl
        self._max_stale = max_stale
        self._inflight: dict[str, asyncio.Future[ApiKey | None]] = {}
        self._touch_interval = touch_interval
        self._used: dict[str, float] = {}
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        # Compared against when the id is unknown, so that path costs what a real check costs.
        self._decoy = keyed_hash(hash_key, secrets.token_bytes(32), purpose=HASH_PURPOSE)

    def invalidate(self, key_id: str | None = None) -> None:
        """Forget cached records (one, or all), e.g. right after this process changed one."""
        if key_id is None:
            self._cache.clear()
        else:
            self._cache.pop(key_id)

    async def verify(self, value: str, static: Mapping[str, ApiKey] | None = None) -> ApiKey:
        """The key for a presented ``gw_...`` value; ``static``: the declared keys in force
        (by id; default: those given at construction).

        Raises :class:`ApiKeyRejected` (answer 401) or :class:`ApiKeyUnavailable` (503).
        """
        presented = parse_api_key(value)
        if presented is None:
            raise ApiKeyRejected("malformed API key")
        now = self._clock()
        key = (self._static if static is None else static).get(presented.key_id)
        if key is None:
            key = await self._lookup(presented.key_id, now)
        presented_hash = keyed_hash(self._hash_key, presented.secret, purpose=HASH_PURPOSE)
        if key is None:
            equal(presented_hash, self._decoy)
            raise ApiKeyRejected(f"unknown API key id {presented.key_id}")
        if not key.secret_matches(presented_hash, now):
            raise ApiKeyRejected(f"wrong secret for API key {key.name}")
        if key.disabled:
            raise ApiKeyRejected(f"API key {key.name} is revoked")
        if key.expires_at is not None and now >= key.expires_at:
            raise ApiKeyRejected(f"API key {key.name} has expired")
        if not key.static:
            self._used[key.key_id] = now
        return key

    async def _lookup(self, key_id: str, now: float) -> ApiKey | None:
        cached = self._cache.get(key_id)
        if cached is not None:
            ttl = self._cache_ttl if cached.key is not None else self._negative_ttl
            if now - cached.fetched_at < ttl:
                return cached.key
        if self._repository is None:
            return None
        pending = self._inflight.get(key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ApiKey | None] = asyncio.get_running_loop().create_future()
        self._inflight[key_id] = future
        try:
            key = await self._fetch(key_id, cached, now)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        else:
            future.set_result(key)
            return key
        finally:
            del self._inflight[key_id]

    async def _fetch(self, key_id: str, stale: _Cached | None, now: float) -> ApiKey | None:
        assert self._repository is not None
        try:
            record = await self._repository.get_api_key(key_id)
        except Exception as error:
            # Every uncached lookup fails alike during an outage: one line per interval.
            if stale is not None and now - stale.fetched_at < self._max_stale:
                log_throttled(
                    log, "stale", "API key store unavailable, using a cached record: %s", error
                )
                return stale.key
            log_throttled(
                log, "unavailable", "API key store unavailable: %s", error, level=logging.ERROR
            )
            raise ApiKeyUnavailable("API key store unavailable") from error
        key = ApiKey.from_record(record) if record is not None else None
        self._cache.put(key_id, _Cached(key, now), len(key_id))
        return key

    # -- last-used bookkeeping -----------------------------------------------------------

    async def flush_last_used(self) -> int:
        """Write the collected last-use times in one batch; returns how many keys."""
        if not self._used or self._repository is None:
            return 0
        batch, self._used = self._used, {}
        try:
            await self._repository.touch_api_keys(batch)
        except Exception as error:
            log.warning("could not record API key use (will retry): %s", error)
            for key_id, used in batch.items():
                if self._used.get(key_id, 0.0) < used:
                    self._used[key_id] = used
            return 0
        return len(batch)

    async def start(self) -> None:
        """Start writing last-use times every ``touch_interval`` seconds."""
        if self._task is None and self._repository is not None and self._touch_interval > 0:
            self._task = asyncio.create_task(self._touch_loop(), name="api key last-used")

    async def _touch_loop(self) -> None:
        while True:
            await asyncio.sleep(self._touch_interval)
            await self.flush_last_used()

    async def close(self) -> None:
        """Stop the background task and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush_last_used()


# --------------------------------------------------------------------------------------------
# GitOps: keys declared by hash
# --------------------------------------------------------------------------------------------


class StaticKeyError(ConfigError, ValueError):
    """Declared keys cannot be used; ``problems`` pairs each with its path in the document.

    ``unknown`` holds the paths of options that are not declaration fields: a loader shows
    those at the key, like every other unknown option (see ``Document.issue``).
    """

    def __init__(
        self, problems: Sequence[tuple[YamlPath, str]], *, unknown: Iterable[YamlPath] = ()
    ) -> None:
        self.problems = list(problems)
        self.unknown = frozenset(unknown)
        super().__init__(
            "\n".join(
                f"{'.'.join(str(part) for part in path)}: {message}"
                for path, message in self.problems
            )
        )


def parse_timestamp(value: Any) -> float:
    """``2026-06-30``, ``2026-06-30T12:00:00Z``, a YAML date/datetime, or POSIX seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a date such as 2026-06-30")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, datetime.date):
        moment = datetime.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"'{value}' is not a date (write e.g. 2026-06-30)") from None
    else:
        raise ValueError("expected a date such as 2026-06-30")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _text_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ValueError("expected a list of text values")


DECLARATION_FIELDS: tuple[str, ...] = (
    "name",
    "id",
    "hash",
    "owner",
    "groups",
    "scopes",
    "networks",
    "expires",
    "disabled",
    "previous_hash",
    "previous_valid_until",
)
"""The fields of a GitOps key declaration (an entry of a policy file's ``api_keys:``)."""


def load_static_api_keys(entries: Sequence[Any], *, path: YamlPath = ("api_keys",)) -> list[ApiKey]:
    """Compile GitOps declarations ``{name, id, hash, groups, scopes, networks, expires}``.

    ``hash`` is the hex of ``keyed_hash(hash_key, secret, purpose="api-key")`` as printed by
    ``gateway keys create NAME --static``. Raises :class:`StaticKeyError` listing every
    problem with its path (for ``file:line`` messages).
    """
    problems: list[tuple[YamlPath, str]] = []
    unknown: list[YamlPath] = []
    keys: list[ApiKey] = []
    names: set[str] = set()
    ids: set[str] = set()
    if not isinstance(entries, list | tuple):
        raise StaticKeyError([(path, "expected a list of API key declarations")])
    for index, entry in enumerate(entries):
        here = (*path, index)
        if not isinstance(entry, Mapping):
            problems.append((here, "expected a mapping with name, id and hash"))
            continue
        for name in sorted(set(entry) - set(DECLARATION_FIELDS)):
            hint = did_you_mean(str(name), DECLARATION_FIELDS)
            unknown.append((*here, name))
            problems.append(((*here, name), f"unknown option '{name}'{hint}"))
        before = len(problems)
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            problems.append(((*here, "name"), "a name is required (letters, digits, . _ @ -)"))
        key_id = entry.get("id")
        if not isinstance(key_id, str) or not re.fullmatch(r"[a-z2-7]{12}", key_id):
            problems.append(((*here, "id"), "id must be 12 characters of a-z and 2-7"))
        hashes: dict[str, bytes | None] = {}
        for field_name in ("hash", "previous_hash"):
            raw = entry.get(field_name)
            if raw is None and field_name == "previous_hash":
                hashes[field_name] = None
                continue
            if not isinstance(raw, str) or not _HEX_HASH.fullmatch(raw.strip().lower()):
                problems.append(
                    ((*here, field_name), f"{field_name} must be 64 hex digits (a keyed hash)")
                )
                continue
            hashes[field_name] = bytes.fromhex(raw.strip().lower())
        values: dict[str, Any] = {}
        for field_name, convert in (
            ("groups", _text_list),
            ("scopes", _text_list),
            ("networks", _text_list),
            ("expires", parse_timestamp),
            ("previous_valid_until", parse_timestamp),
        ):
            raw = entry.get(field_name)
            if raw is None:
                continue
            try:
                values[field_name] = convert(raw)
            except ValueError as error:
                problems.append(((*here, field_name), str(error)))
        disabled = entry.get("disabled", False)
        if not isinstance(disabled, bool):
            problems.append(((*here, "disabled"), "disabled must be true or false"))
        owner = entry.get("owner", "")
        if not isinstance(owner, str):
            problems.append(((*here, "owner"), "owner must be text"))
        if len(problems) > before:
            continue
        assert isinstance(name, str) and isinstance(key_id, str) and isinstance(owner, str)
        if name in names:
            problems.append(((*here, "name"), f"API key name '{name}' is declared twice"))
            continue
        if key_id in ids:
            problems.append(((*here, "id"), f"API key id '{key_id}' is declared twice"))
            continue
        names.add(name)
        ids.add(key_id)
        secret_hash = hashes["hash"]
        assert secret_hash is not None
        try:
            keys.append(
                ApiKey.compile(
                    key_id,
                    name,
                    owner,
                    secret_hash,
                    previous_secret_hash=hashes.get("previous_hash"),
                    previous_valid_until=values.get("previous_valid_until"),
                    groups=values.get("groups", ()),
                    scopes=values.get("scopes", ()),
                    networks=values.get("networks", ()),
                    expires_at=values.get("expires"),
                    disabled=disabled,
                    static=True,
                )
            )
        except NetworkError as error:
            problems.append(((*here, "networks"), str(error)))
        except ValueError as error:
            problems.append(((*here, "scopes"), str(error)))
    if problems:
        raise StaticKeyError(problems, unknown=unknown)
    return keys
