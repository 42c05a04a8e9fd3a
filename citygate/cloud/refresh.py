"""A value computed at most once per refresh interval, whatever the traffic.

The public pages answer from it: a thousand requests in a second cost the database one
query (or none, within the interval). Concurrent requests for a stale value wait for the
one computation in flight instead of starting their own (single flight), and a failed
computation is not cached: the next request tries again, and the error reaches the caller.
``computed`` counts the computations, so a benchmark can put database load beside requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Fresh(Generic[T]):
    value: T
    at: float  # wall-clock time (time.time()) of the computation: "last refreshed"


class RefreshCache(Generic[T]):
    def __init__(
        self,
        compute: Callable[[], Awaitable[T]],
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self._compute = compute
        self.interval_s = interval_s
        self._clock = clock
        self._fresh: Fresh[T] | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()
        self.computed = 0

    async def get(self) -> Fresh[T]:
        fresh = self._fresh
        if fresh is not None and self._clock() - self._at < self.interval_s:
            return fresh
        async with self._lock:
            fresh = self._fresh  # another request may have refreshed it while we waited
            if fresh is not None and self._clock() - self._at < self.interval_s:
                return fresh
            value = await self._compute()
            self.computed += 1
            self._at = self._clock()
            self._fresh = Fresh(value, time.time())
            return self._fresh
