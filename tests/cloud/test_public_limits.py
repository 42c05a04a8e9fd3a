"""The public surfaces' rate limiter and refresh cache (pure logic, no servers)."""

from __future__ import annotations

import asyncio

import pytest

from citygate.cloud.ratelimit import RateLimiter
from citygate.cloud.refresh import RefreshCache


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_burst_then_refused_with_retry_after() -> None:
    clock = Clock()
    rl = RateLimiter(per_minute=60, burst=3, clock=clock)
    got = [rl.check("a") for _ in range(4)]
    assert [d.allowed for d in got] == [True, True, True, False]
    assert [d.remaining for d in got] == [2, 1, 0, 0]
    refused = got[-1]
    assert refused.retry_after_s == 1
    assert refused.headers()["Retry-After"] == "1"
    assert refused.headers()["RateLimit-Limit"] == "3"
    assert "Retry-After" not in got[0].headers()


def test_refills_at_its_rate_and_keys_are_apart() -> None:
    clock = Clock()
    rl = RateLimiter(per_minute=30, burst=1, clock=clock)
    assert rl.check("a").allowed
    assert not rl.check("a").allowed
    assert rl.check("b").allowed  # another key has its own bucket
    clock.t += 1.0  # half a token
    assert not rl.check("a").allowed
    clock.t += 1.0
    assert rl.check("a").allowed


def test_memory_is_bounded() -> None:
    rl = RateLimiter(per_minute=1, burst=1, max_keys=10, clock=Clock())
    for i in range(1000):
        rl.check(f"k{i}")
    assert len(rl) == 10


def test_refused_requests_do_not_pay_for_tokens() -> None:
    clock = Clock()
    rl = RateLimiter(per_minute=60, burst=1, clock=clock)
    rl.check("a")
    for _ in range(100):
        assert not rl.check("a").allowed
    clock.t += 1.0
    assert rl.check("a").allowed  # hammering while refused does not push the refill back


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_minute=0, burst=1)


def test_refresh_cache_computes_once_per_interval_under_concurrency() -> None:
    clock = Clock()
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)  # let the other requests pile up on the lock
        return calls

    async def main() -> None:
        cache = RefreshCache(compute, interval_s=10, clock=clock)
        got = await asyncio.gather(*(cache.get() for _ in range(200)))
        assert {g.value for g in got} == {1}
        assert cache.computed == 1
        clock.t += 9.9
        assert (await cache.get()).value == 1
        clock.t += 0.2
        assert (await cache.get()).value == 2
        assert cache.computed == 2

    asyncio.run(main())


def test_refresh_cache_does_not_keep_a_failure() -> None:
    n = 0

    async def compute() -> int:
        nonlocal n
        n += 1
        if n == 1:
            raise RuntimeError("database down")
        return n

    async def main() -> None:
        cache = RefreshCache(compute, interval_s=10, clock=Clock())
        with pytest.raises(RuntimeError):
            await cache.get()
        assert (await cache.get()).value == 2

    asyncio.run(main())
