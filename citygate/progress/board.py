"""What one cloud replica holds for the public page: its own small engine on the service
store, the figures (computed at most once per ``refresh_s``) and the per-address rate limit.

The figures are rendered once per refresh (JSON bytes and their ETag), so a request costs a
dictionary lookup and a send, never a query. A refresh that fails (the store down, or a bug)
is logged and not retried before the next interval either: the page then serves the last
figures it had, marked ``stale``, or, before the first success, 503. Either way the store sees
at most one refresh per interval, whatever the traffic and whatever goes wrong.

The engine is the board's own (one connection on PostgreSQL), not the service layer's: a
slow statistics query never holds a connection the evaluator or the dispatcher waits for,
and the page's load on the store is counted apart.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
import orjson
import structlog
from sqlalchemy import Engine

from citygate.cloud.ratelimit import Decision, RateLimiter, client_key
from citygate.cloud.refresh import RefreshCache
from citygate.progress import model
from citygate.progress.publish import publish
from citygate.progress.settings import ProgressSettings
from citygate.progress.stats import collect
from citygate.progress.weeks import window
from citygate.service.db import make_engine
from citygate.service.settings import ServiceSettings

log = structlog.get_logger("citygate.progress")


@dataclass(frozen=True, slots=True)
class Rendered:
    progress: model.Progress
    body: bytes
    etag: str


def render(progress: model.Progress) -> Rendered:
    body = orjson.dumps(progress.model_dump(mode="json"))
    return Rendered(progress, body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


class ProgressBoard:
    def __init__(
        self,
        settings: ProgressSettings,
        service: ServiceSettings,
        *,
        engine: Engine | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if service.store_url is None:
            raise ValueError("the progress page needs the service layer's store_url")
        self.settings = settings
        self.service = service
        self.zone = settings.zone(service)
        self.engine = engine if engine is not None else make_engine(service.store_url, pool_size=1)
        self._clock = clock
        self.cache: RefreshCache[Rendered | None] = RefreshCache(
            self.refresh, interval_s=settings.refresh_s, clock=monotonic
        )
        self.limiter = RateLimiter(per_minute=settings.rate_per_minute, burst=settings.burst)
        self._last: Rendered | None = None
        self.failures = 0

    def compute(self) -> model.Progress:
        """One refresh: the figures from the store, published (blocking; six queries)."""
        w = window(int(self._clock() * 1000), self.zone, self.settings.weeks)
        with self.engine.connect() as conn:
            figures = collect(conn, w, services=self.settings.services, targets=self.service.targets)
        return publish(
            figures,
            k=self.settings.min_cases,
            targets=self.service.targets,
            refresh_s=self.settings.refresh_s,
            timezone=self.zone.key,
            services=self.settings.services,
            title=self.settings.title,
        )

    def _compute_rendered(self) -> Rendered:
        return render(self.compute())

    async def refresh(self) -> Rendered | None:
        """One refresh now, off the event loop (the cache calls this at most once per interval;
        bench/bench_progress.py's baseline calls it for every request)."""
        try:
            fresh = await anyio.to_thread.run_sync(self._compute_rendered)
        # Any failure, a bug included, waits for the next interval like a success does: a
        # retry per request would put the page's traffic on the store.
        except Exception as e:  # noqa: BLE001
            self.failures += 1
            log.error("progress_refresh_failed", error=type(e).__name__, detail=str(e).splitlines()[0][:300])
            last = self._last
            return None if last is None else render(last.progress.model_copy(update={"stale": True}))
        self._last = fresh
        return fresh

    async def current(self) -> tuple[Rendered | None, int]:
        """The figures to serve (None: no refresh has succeeded yet) and the seconds until
        they may be computed again (the answer's max-age)."""
        fresh = await self.cache.get()
        left = self.settings.refresh_s - (time.time() - fresh.at)
        return fresh.value, max(0, int(left))

    def admit(self, host: str | None) -> Decision:
        return self.limiter.check(client_key(host))

    def close(self) -> None:
        self.engine.dispose()
