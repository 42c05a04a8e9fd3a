"""The demo's public surfaces: citizen reports (Open311), the progress page, open data.

:meth:`DemoPublic.settings` gives the cloud's ``[cloud.open311]``, ``[cloud.progress]``,
``[cloud.opendata]`` and ``[cloud.sta]`` tables; :meth:`DemoPublic.exercise`, once the fleet
has run, files two citizen reports (one at a simulated bin, so that it may join the bin's
sensor case) and reads every public surface back as an anonymous caller would, for the
demo's summary line.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# Everything but parking is public in the demo; parking is published per zone, late
# ([cloud.opendata] zoned, its default).
PUBLIC_PROFILES = [
    "air_quality",
    "noise",
    "traffic_counter",
    "waste_bin",
    "street_light",
    "weather",
    "water_level",
]
SERVICES = [
    {
        "code": "bin-overflow",
        "name": "Overflowing bin",
        "description": "A public bin is full or overflowing",
        "group": "Waste",
        "feeds": "waste",
    },
    {
        "code": "streetlight-out",
        "name": "Street light out",
        "description": "A street light is dark or flickering",
        "group": "Lighting",
        "feeds": "lighting",
    },
]


@dataclass
class DemoPublic:
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def settings(self) -> dict[str, Any]:
        return {
            "open311": {"enabled": True, "api_keys": {"demo-app": self.api_key}, "services": SERVICES},
            # A short refresh so that the demo's cases show within its run; k = 2 for its few cases.
            "progress": {
                "enabled": True,
                "refresh_s": 5.0,
                "min_cases": 2,
                "title": "Demo city: how fast we act",
            },
            "opendata": {"enabled": True, "public_profiles": PUBLIC_PROFILES},
            "sta": {"enabled": True},
        }

    def exercise(self, base_url: str, ca: Path, inventory: Path) -> dict[str, Any]:
        """File the reports, read the surfaces back; every figure for the summary (or an error)."""
        out: dict[str, Any] = {}
        with httpx.Client(base_url=base_url, verify=str(ca), timeout=30.0) as c:
            bin_at = _a_device(inventory, "waste_bin")
            reports = [
                {"service_code": "bin-overflow", "description": "Bin overflowing, bags on the pavement"}
                | (
                    {"lat": str(bin_at[0]), "long": str(bin_at[1])}
                    if bin_at
                    else {"address_string": "Main St 1"}
                ),
                {
                    "service_code": "streetlight-out",
                    "description": "Dark since Monday",
                    "address_string": "Bridge Rd / Park Ave",
                    "email": "resident@example.org",  # stored apart, never shown
                },
            ]
            ids = []
            for r in reports:
                resp = c.post("/open311/v2/requests.json", data={"api_key": self.api_key, **r})
                resp.raise_for_status()
                ids.append(str(resp.json()[0]["service_request_id"]))
            out["reports"] = len(ids)
            out["attached"] = len(ids) - len(set(ids))
            listed = c.get("/open311/v2/requests.json")
            listed.raise_for_status()
            requests = listed.json()
            out["requests_listed"] = len(requests)
            out["sensor_requests"] = sum(
                1 for q in requests if (q.get("extended_attributes") or {}).get("source") == "sensor"
            )
            progress = c.get("/public/v1/progress")
            progress.raise_for_status()
            out["progress_services"] = len(progress.json().get("services", []))
            entities = c.get("/ngsi-ld/v1/entities", params={"type": "AirQualityObserved", "limit": 1000})
            entities.raise_for_status()
            out["ngsi_air_quality"] = len(entities.json())
            things = c.get("/sta/v1.1/Things", params={"$count": "true", "$top": 1})
            things.raise_for_status()
            out["sta_things"] = int(things.json().get("@iot.count", 0))
        return out


def _a_device(inventory: Path, profile: str) -> tuple[float, float] | None:
    """Where one device of ``profile`` is (a bin that may have a case open)."""
    from citygate.contract.inventory import Inventory

    for rec in Inventory.load(inventory).values():
        if rec.profile == profile and rec.lat is not None and rec.lon is not None:
            return rec.lat, rec.lon
    return None
