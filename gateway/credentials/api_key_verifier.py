"""The API-key verifier: presented ``gw_...`` keys checked against cached records.

Records are read through :class:`ApiKeyVerifier`, which caches them for ``cache_ttl``
seconds (unknown ids too, so a flood of random keys cannot reach the database), coalesces
concurrent misses, and collects last-use times in memory to write them in one batch every
``touch_interval``. A revoked key therefore stops working within ``cache_ttl`` on every
replica. Keys declared in policy files (by id, :func:`static_key_index`) are checked first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from gateway.credentials.api_keys import (
    HASH_PURPOSE,
    ApiKey,
    ApiKeyLookup,
    ApiKeyRejected,
    ApiKeyUnavailable,
    parse_api_key,
)
from gateway.memo import BoundedMemo
from gateway.observability.throttle import log_throttled
from gateway.security.crypto import equal, keyed_hash

__all__ = ["ApiKeyVerifier", "static_key_index"]

# The logger keeps the name it had before the verifier got its own module: operators filter
# on it, and the outage throttle keys on it.
log = logging.getLogger("gateway.credentials.api_keys")


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
