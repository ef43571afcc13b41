"""Token buckets per API key / client and per client IP.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request
takes one token or is refused with the time until one is available (HTTP 429 with
``Retry-After``). :class:`MemoryRateLimiter` keeps buckets in this process;
:class:`RedisRateLimiter` keeps them in Redis, updated by one atomic Lua script, so a limit
holds across replicas. If Redis fails, the Redis limiter falls back to a local bucket rather
than refusing or waving through everything.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "Limit",
    "MemoryRateLimiter",
    "RateDecision",
    "RateLimiter",
    "RedisRateLimiter",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` tokens per second, at most ``burst`` at once."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not self.rate > 0 or self.burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether the request may pass, and if not, after how many seconds to retry."""

    allowed: bool
    retry_after: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """Whole seconds for the ``Retry-After`` header (at least 1)."""
        return str(max(1, math.ceil(self.retry_after)))


ALLOWED = RateDecision(True)


class RateLimiter(Protocol):
    """Takes one token from the bucket named ``key``."""

    async def hit(self, key: str, limit: Limit) -> RateDecision: ...

    async def close(self) -> None: ...


class MemoryRateLimiter:
    """Buckets in this process; bounded (least recently used buckets are dropped first)."""

    def __init__(
        self, *, max_buckets: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._max = max_buckets
        self._clock = clock

    def take(self, key: str, limit: Limit) -> RateDecision:
        """The synchronous form of :meth:`hit`."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._buckets.popitem(last=False)
            bucket = [float(limit.burst), now]
            self._buckets[key] = bucket
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket[1])
            bucket[0] = min(float(limit.burst), bucket[0] + elapsed * limit.rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return ALLOWED
        return RateDecision(False, (1.0 - bucket[0]) / limit.rate)

    async def hit(self, key: str, limit: Limit) -> RateDecision:
        return self.take(key, limit)

    async def close(self) -> None:
        self._buckets.clear()


# KEYS[1] bucket; ARGV rate (tokens/s), burst, cost. Time comes from the Redis server so that
# replicas with skewed clocks share one notion of "now". Returns {allowed, retry_after}.
_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(retry)}
"""


class RedisRateLimiter:
    """Buckets in Redis shared by every replica; one round trip (EVALSHA) per check."""

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str = "gateway:ratelimit:",
        fallback: MemoryRateLimiter | None = None,
        owns_client: bool = True,
        timeout: float = 2.0,
    ) -> None:
        self._redis = redis
        self._timeout = timeout
        self._prefix = key_prefix
        self._script = redis.register_script(_BUCKET_SCRIPT)
        self._fallback = fallback or MemoryRateLimiter()
        self._owns_client = owns_client
        self._failing = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        password: str | None = None,
        key_prefix: str = "gateway:ratelimit:",
        timeout: float = 2.0,
        pool_size: int = 32,
    ) -> RedisRateLimiter:
        """Connect lazily to ``url`` (``redis://``, ``rediss://`` or ``unix://``)."""
        from gateway.session.stores.redis import create_redis_client

        client = create_redis_client(url, password=password, timeout=timeout, pool_size=pool_size)
        return cls(client, key_prefix=key_prefix, timeout=timeout)

    async def hit(self, key: str, limit: Limit) -> RateDecision:
        from redis.exceptions import RedisError

        try:
            # One deadline for pool wait, connecting and the reply together (TimeoutError is
            # an OSError): a hung Redis costs a request the timeout once, then the fallback.
            async with asyncio.timeout(self._timeout):
                allowed, retry = await self._script(
                    keys=[self._prefix + key], args=[limit.rate, limit.burst, 1]
                )
        except (RedisError, OSError) as error:
            if not self._failing:
                log.warning("rate limit store unavailable, limiting per replica: %s", error)
                self._failing = True
            return self._fallback.take(key, limit)
        if self._failing:
            log.info("rate limit store reachable again")
            self._failing = False
        if int(allowed) == 1:
            return ALLOWED
        return RateDecision(False, float(retry))

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()
