"""Citizen reports as the case store takes them: who reported (kept apart from the case and
deleted when it expires), what was reported, and what the report did. The store's side
(opening a case or joining a nearby one, in one transaction with its history and event) is
:meth:`citygate.service.cases.CaseStore.report`; the Open311 API is :mod:`citygate.open311`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from citygate.service.case_model import Transition

CITIZEN_RULE_PREFIX = "citizen."  # a citizen case's rule_id: "citizen.<Open311 service code>"
EARTH_RADIUS_M = 6_371_008.8  # the mean radius (IUGG)


@dataclass(frozen=True, slots=True)
class Reporter:
    """Who made a citizen report: personal data, kept apart from the case and deleted when it
    expires. ``repr`` shows none of it (a traceback or a debug line never carries it)."""

    first_name: str | None = field(default=None, repr=False)
    last_name: str | None = field(default=None, repr=False)
    email: str | None = field(default=None, repr=False)
    phone: str | None = field(default=None, repr=False)
    device_id: str | None = field(default=None, repr=False)
    account_id: str | None = field(default=None, repr=False)

    def given(self) -> bool:
        return any((self.first_name, self.last_name, self.email, self.phone, self.device_id, self.account_id))


@dataclass(frozen=True, slots=True)
class CitizenReport:
    """One report to record (Open311 POST requests, already validated)."""

    service_code: str  # the Open311 service: the case's rule is "citizen.<service_code>"
    service: str  # the citygate service its case belongs to
    severity: str
    title: str
    client: str  # the name of the API key it came with
    description: str = ""
    latitude: float | None = None
    longitude: float | None = None
    address: str | None = None
    address_id: str | None = None
    media_url: str | None = None
    attributes: Mapping[str, str | list[str]] = field(default_factory=dict)
    reporter: Reporter = field(default_factory=Reporter)
    reporter_retention_ms: int = 30 * 86_400_000

    @property
    def rule_id(self) -> str:
        return CITIZEN_RULE_PREFIX + self.service_code


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """What a report did: the case it opened, or joined (``attached``), and its own ids."""

    report_id: int
    case_id: int
    token: str
    attached: bool
    transition: Transition


def citizen_case(r: CitizenReport, token: str, now: int) -> dict[str, Any]:
    return {
        "rule_id": r.rule_id,
        "subject": f"open311:{token}",  # one case per report that opens one
        "source": "citizen",
        "service": r.service,
        "severity": r.severity,
        "title": r.title,
        "status": "new",
        "is_open": True,
        "opened_ms": now,
        "updated_ms": now,
        "detail": r.description,
        "latitude": r.latitude,
        "longitude": r.longitude,
    }


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine; within a city, off by well under a metre)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
