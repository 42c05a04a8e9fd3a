"""The public progress page's settings: ``[cloud.progress]`` in the cloud's configuration file.

Off by default. On, it reads the service layer's store, so ``[cloud.service]`` must be on
too: :data:`ProgressSection` (the type of ``CloudSettings.progress``) refuses the
configuration at load otherwise, naming both sections.
"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from citygate.service.settings import ServiceSettings

# The sources whose cases are public; "system" cases are citygate's own operator cases.
PUBLIC_SOURCES: tuple[str, ...] = ("sensor", "citizen")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as 'Europe/Berlin')") from None


class ProgressSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # Weeks shown, the current (partial) week included; the time figures cover the same window.
    weeks: Annotated[int, Field(ge=1, le=104)] = 12
    # k: any figure computed from fewer than this many cases is published as "< k", never the
    # number (docs/PROGRESS.md, "Privacy").
    min_cases: Annotated[int, Field(ge=1, le=1000)] = 5
    # The store is queried at most once per this many seconds, whatever the traffic.
    refresh_s: Annotated[float, Field(ge=1, le=86_400, allow_inf_nan=False)] = 300.0
    # Per client address (an IPv6 client per /64): every request to /public takes one token.
    rate_per_minute: Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)] = 60.0
    burst: Annotated[int, Field(ge=1, le=100_000)] = 30
    # The services shown, always, in this order; empty: every service with public cases.
    services: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list)
    # Weeks start on Monday 00:00 in this zone; empty: [cloud.service] timezone.
    timezone: str = ""
    # The page's title (the city's name goes here).
    title: Annotated[str, Field(min_length=1, max_length=120)] = "How fast the city acts"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        if v:
            _zone(v)
        return v

    def zone(self, service: ServiceSettings) -> ZoneInfo:
        """The zone weeks are counted in."""
        return _zone(self.timezone or service.timezone)


def _needs_service_layer(value: ProgressSettings, info: ValidationInfo) -> ProgressSettings:
    """``CloudSettings.progress``: on only with the service layer (same store), checked at load."""
    service: Any = info.data.get("service")
    if value.enabled and isinstance(service, ServiceSettings):
        if not service.enabled:
            raise ValueError(
                "[cloud.progress] enabled needs the service layer: the page's figures come from its "
                "store; set [cloud.service] enabled = true (with store_url), or [cloud.progress] "
                "enabled = false"
            )
        value.zone(service)  # [cloud.service] timezone must name a zone too
    return value


# The field's type in CloudSettings (declared after ``service``, whose value it checks).
ProgressSection = Annotated[ProgressSettings, AfterValidator(_needs_service_layer)]
