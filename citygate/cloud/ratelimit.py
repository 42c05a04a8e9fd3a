"""Per-key token buckets for the public surfaces (Open311, the progress page, open data).

A bucket holds ``burst`` tokens and refills at ``per_minute / 60`` a second; a request takes
one. The answer carries the counters a client needs to slow down by itself: ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until a token is back, the IETF
httpapi draft's names), and on a refusal ``Retry-After``. Memory is bounded: at most
``max_keys`` buckets, the least recently used dropped first (a dropped key starts full, so a
flood of new keys can only make the limiter more lenient for keys it has forgotten).

One event loop owns a limiter (no lock); the clock is injectable for tests.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # whole seconds until the next token
    retry_after_s: int  # 0 when allowed

    def headers(self) -> dict[str, str]:
        h = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            h["Retry-After"] = str(self.retry_after_s)
        return h


class RateLimiter:
    def __init__(
        self,
        *,
        per_minute: float,
        burst: int,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("per_minute must be > 0, burst and max_keys >= 1")
        self.rate = per_minute / 60.0
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: str) -> Decision:
        """Take a token for ``key`` if there is one."""
        now = self._clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        wait = max(0.0, (1.0 - tokens) / self.rate)
        reset = math.ceil(wait) if tokens < 1.0 else 0
        return Decision(
            allowed=allowed,
            limit=self.burst,
            remaining=int(tokens),
            reset_s=reset,
            retry_after_s=0 if allowed else max(1, math.ceil(wait)),
        )


def client_key(host: str | None, ipv6_prefix: int = 64) -> str:
    """The rate limits' key for a client address: the address, an IPv4-mapped address as its
    IPv4, an IPv6 address as its /``ipv6_prefix`` (one subscriber's network: rotating
    addresses inside it gets no more tokens)."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]  # not an IP (a test transport): itself
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)
