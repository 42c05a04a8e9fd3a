"""What the SensorThings router keeps between requests: the entity model, the anonymous rate
limiter and answer cache. Made on the first request (nothing at import or app build), one per
app, on its event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from fastapi import Request

from citygate.cloud.ratelimit import RateLimiter
from citygate.cloud.state import CloudState
from citygate.opendata.sta import ids
from citygate.opendata.sta.cache import AnswerCache
from citygate.opendata.sta.entities import Model, build_model
from citygate.opendata.sta.errors import ModelUnavailableError

log = structlog.get_logger("citygate.opendata.sta")


class ModelHolder:
    """The entities of the current inventory, rebuilt when its contract_version changes."""

    def __init__(self) -> None:
        self._version: str | None = None
        self._model: Model | None = None
        self.builds = 0

    def get(self, state: CloudState) -> Model:
        validator, version = state.inventory.current()
        if self._model is None or version != self._version:
            try:
                model = build_model(
                    validator.inventory, state.registry, left_out=frozenset(state.settings.opendata.zoned)
                )
            except ids.IdSpaceFull as e:
                raise ModelUnavailableError(f"the inventory cannot be served: {e}") from e
            for kind, holder, moved in model.collisions:
                # Rare (docs/SENSORTHINGS.md): the moved key's id may change if the holder goes.
                log.warning("sta_id_collision", kind=kind, holder=holder, moved=moved)
            self._model, self._version = model, version
            self.builds += 1
        return self._model


@dataclass(slots=True)
class Runtime:
    """What the router keeps between requests (made on the first one: nothing at import)."""

    models: ModelHolder
    limiter: RateLimiter
    cache: AnswerCache


def runtime(request: Request, state: CloudState) -> Runtime:
    """The app's runtime, made now if this is the first request."""
    rt: Runtime | None = getattr(request.app.state, "sta_runtime", None)
    if rt is None:
        sta, od = state.settings.sta, state.settings.opendata
        rt = Runtime(
            ModelHolder(),
            RateLimiter(
                per_minute=sta.rate_per_minute or od.public_rate_per_minute,
                burst=sta.burst or od.public_burst,
            ),
            AnswerCache(
                entries=sta.cache_entries,
                max_body_bytes=sta.cache_max_body_bytes,
                interval_s=sta.cache_s or od.cache_s,
            ),
        )
        request.app.state.sta_runtime = rt
    return rt
