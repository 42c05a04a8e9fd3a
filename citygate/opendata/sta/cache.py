"""Anonymous answers reused for a while: one computation per distinct request per interval.

Each distinct request (its absolute URL) gets a :class:`~citygate.cloud.refresh.RefreshCache`:
however many anonymous callers ask for it, the database sees at most one computation of it
per ``interval_s``, and callers arriving during that computation wait for it (single
flight). A failed computation (a 400, the database down) is not kept. Memory is bounded:
at most ``entries`` requests, least recently used dropped first, and an answer larger than
``max_body_bytes`` is served but not kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from citygate.cloud.refresh import RefreshCache


@dataclass(frozen=True, slots=True)
class Cached:
    body: bytes
    media_type: str


class AnswerCache:
    def __init__(self, *, entries: int, max_body_bytes: int, interval_s: float) -> None:
        self.entries = entries
        self.max_body_bytes = max_body_bytes
        self.interval_s = interval_s
        self._caches: OrderedDict[str, RefreshCache[Cached]] = OrderedDict()
        self.computed = 0  # computations, all keys (for tests and the benchmark)

    def __len__(self) -> int:
        return len(self._caches)

    async def get(self, key: str, compute: Callable[[], Awaitable[Cached]]) -> Cached:
        """The answer for ``key``; ``compute`` must not depend on who asks (it is shared)."""
        cache = self._caches.get(key)
        if cache is None:

            async def counted() -> Cached:
                self.computed += 1
                return await compute()

            cache = RefreshCache(counted, interval_s=self.interval_s)
            self._caches[key] = cache
            while len(self._caches) > self.entries:
                self._caches.popitem(last=False)
        else:
            self._caches.move_to_end(key)
        try:
            fresh = await cache.get()
        except BaseException:
            if self._caches.get(key) is cache and cache.computed == 0:
                del self._caches[key]  # nothing to keep: the next caller starts afresh
            raise
        if len(fresh.value.body) > self.max_body_bytes and self._caches.get(key) is cache:
            del self._caches[key]
        return fresh.value
