"""Token buckets in memory and in a real Redis (shared by two "replicas")."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from gateway.credentials.rate_limit import (
    Limit,
    MemoryRateLimiter,
    RateDecision,
    RedisRateLimiter,
)
from tests.services import free_port
from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio


def test_limit_validation() -> None:
    with pytest.raises(ValueError):
        Limit(0, 1)
    with pytest.raises(ValueError):
        Limit(1, 0)


def test_retry_after_header_rounds_up_to_whole_seconds() -> None:
    assert RateDecision(False, 0.2).retry_after_header == "1"
    assert RateDecision(False, 2.01).retry_after_header == "3"


async def test_memory_bucket_allows_burst_then_refills(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock=clock)
    limit = Limit(rate=2.0, burst=3)
    results = [await limiter.hit("key:a", limit) for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert results[-1].retry_after == pytest.approx(0.5)
    clock.advance(0.5)
    assert (await limiter.hit("key:a", limit)).allowed
    assert not (await limiter.hit("key:a", limit)).allowed
    clock.advance(100)  # refill caps at the burst
    assert [(await limiter.hit("key:a", limit)).allowed for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


async def test_memory_buckets_are_independent_and_bounded(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(max_buckets=2, clock=clock)
    limit = Limit(rate=1.0, burst=1)
    assert (await limiter.hit("a", limit)).allowed
    assert (await limiter.hit("b", limit)).allowed
    assert not (await limiter.hit("a", limit)).allowed
    assert (await limiter.hit("c", limit)).allowed  # evicts the least recently used ("b")
    assert len(limiter._buckets) == 2
    assert (await limiter.hit("b", limit)).allowed  # a fresh bucket again


async def test_redis_limit_holds_across_replicas(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    first = RedisRateLimiter.from_url(redis_url, key_prefix=prefix)
    second = RedisRateLimiter.from_url(redis_url, key_prefix=prefix)
    limit = Limit(rate=0.5, burst=4)
    try:
        outcomes = []
        for index in range(6):
            replica = first if index % 2 == 0 else second
            outcomes.append(await replica.hit("key:ci-runner", limit))
        assert [o.allowed for o in outcomes] == [True, True, True, True, False, False]
        assert 0 < outcomes[-1].retry_after <= 2.0
        # Another bucket is untouched.
        assert (await second.hit("ip:10.0.0.1", limit)).allowed
    finally:
        await first.close()
        await second.close()


async def test_redis_bucket_refills_by_server_time(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    limiter = RedisRateLimiter.from_url(redis_url, key_prefix=prefix)
    limit = Limit(rate=20.0, burst=1)
    try:
        assert (await limiter.hit("k", limit)).allowed
        denied = await limiter.hit("k", limit)
        assert not denied.allowed
        await asyncio.sleep(denied.retry_after + 0.02)
        assert (await limiter.hit("k", limit)).allowed
        client = Redis.from_url(redis_url)
        ttl = await client.pttl(prefix + "k")
        await client.aclose()
        assert 0 < ttl <= 1100  # buckets expire once they would be full again
    finally:
        await limiter.close()


async def test_redis_is_atomic_under_concurrency(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    limiters = [RedisRateLimiter.from_url(redis_url, key_prefix=prefix) for _ in range(4)]
    limit = Limit(rate=0.001, burst=10)
    try:
        outcomes = await asyncio.gather(*(limiters[i % 4].hit("shared", limit) for i in range(40)))
        assert sum(o.allowed for o in outcomes) == 10
    finally:
        for limiter in limiters:
            await limiter.close()


async def test_redis_down_falls_back_to_a_local_bucket() -> None:
    limiter = RedisRateLimiter.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    limit = Limit(rate=0.001, burst=2)
    try:
        outcomes = [await limiter.hit("k", limit) for _ in range(3)]
        assert [o.allowed for o in outcomes] == [True, True, False]
    finally:
        await limiter.close()
