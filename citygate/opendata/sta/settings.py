"""``[cloud.sta]``: the SensorThings API's switches and bounds.

Who sees what is ``[cloud.opendata]``'s (:mod:`citygate.opendata.policy`); these keys say how
much one request may ask for. Every bound refuses with a 400 naming it, never a time-out.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

_DAY_S = 86400.0


class StaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # Entities per page when $top is not given, and the most a $top may ask for (a larger one
    # is cut to this, with an @iot.nextLink to the rest, as OData's server-driven paging).
    default_top: Annotated[int, Field(ge=1, le=100_000)] = 100
    max_top: Annotated[int, Field(ge=1, le=100_000)] = 10_000
    # Observations one request may make the database send, over all its queries together
    # (the page, every expanded Datastream, and what $skip passes over).
    max_observations: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    # Entities in one answer (expansions included); past it 400: lower $top.
    max_entities: Annotated[int, Field(ge=1, le=1_000_000)] = 20_000
    # The longest phenomenonTime range a $count of Observations, or a read of the
    # Observations of more than max_unbounded_datastreams Datastreams, may cover.
    max_time_range_s: Annotated[float, Field(gt=0, le=3660 * _DAY_S, allow_inf_nan=False)] = 7 * _DAY_S
    # Up to this many Datastreams (one Thing's) may be read without a time range: the newest
    # or oldest $top of each is cheap. More need a range of at most max_time_range_s.
    max_unbounded_datastreams: Annotated[int, Field(ge=1, le=10_000)] = 16
    # $skip over Observations: the database reads what it skips. Page by time beyond it.
    max_observation_skip: Annotated[int, Field(ge=0, le=10_000_000)] = 100_000
    # Levels of $expand (Things?$expand=Datastreams/Observations is two).
    max_expand_depth: Annotated[int, Field(ge=1, le=4)] = 2
    # The absolute base of every link (@iot.selfLink, @iot.nextLink), e.g.
    # "https://data.example.org/sta/v1.1", when the API is published under another name than
    # the one clients connect to. Unset: taken from the request (its Host header).
    public_url: Annotated[str | None, Field(max_length=300, pattern=r"^https?://[^\s?#]+[^/\s?#]$")] = None
    # Anonymous callers (no reader token): per client address, and how long an answer is
    # reused. Unset: [cloud.opendata] public_rate_per_minute, public_burst, cache_s.
    rate_per_minute: Annotated[float | None, Field(gt=0, le=1_000_000)] = None
    burst: Annotated[int | None, Field(ge=1, le=100_000)] = None
    cache_s: Annotated[float | None, Field(gt=0, le=3600, allow_inf_nan=False)] = None
    # Distinct anonymous requests whose answers are kept, and the largest answer kept (larger
    # ones are served, not kept): at most cache_entries x cache_max_body_bytes of memory.
    cache_entries: Annotated[int, Field(ge=1, le=100_000)] = 128
    cache_max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.default_top > self.max_top:
            raise ValueError("[cloud.sta] default_top must not exceed max_top")
        return self
