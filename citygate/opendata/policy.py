"""Who may see which profile's data, and in what form (``[cloud.opendata]``).

Nothing is public by default: a profile's data is served without a token only when it is
listed in ``public_profiles``; every other profile needs a reader token (as the series reads
do), and a profile not served at all is simply absent. Some raw series say too much about a
person: one parking bay's occupancy is one driver's comings and goings. A profile listed
in ``zoned`` is therefore published only aggregated per zone (its devices' ``site``, or the
district when a device has no site) and only ``delay_s`` late, to everyone, token or not.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ZonePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay_s: Annotated[float, Field(ge=0, le=30 * 86400, allow_inf_nan=False)] = 900.0
    # Zones with fewer devices than this are not published (one bay in a zone is one bay).
    min_devices: Annotated[int, Field(ge=1, le=10_000)] = 5


class OpenDataSettings(BaseModel):
    """``[cloud.opendata]``: the SensorThings API and the NGSI-LD export."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    public_profiles: list[str] = Field(default_factory=list)
    zoned: dict[str, ZonePolicy] = Field(default_factory=lambda: {"parking": ZonePolicy()})
    # Per client address, for requests without a reader token.
    public_rate_per_minute: Annotated[float, Field(gt=0, le=1_000_000)] = 120.0
    public_burst: Annotated[int, Field(ge=1, le=100_000)] = 30
    # How long a computed public answer is reused (the database sees at most one query per
    # distinct request per interval).
    cache_s: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = 30.0


Access = Literal["raw", "zoned", "none"]


def access(settings: OpenDataSettings, profile: str, *, reader: bool) -> Access:
    """How ``profile``'s data may be served to this caller (a reader token or anonymous)."""
    if not settings.enabled:
        return "none"
    if profile in settings.zoned:
        return "zoned"
    if reader or profile in settings.public_profiles:
        return "raw"
    return "none"
