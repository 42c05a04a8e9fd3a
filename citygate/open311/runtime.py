"""What the Open311 API holds while the cloud runs: its settings as lookups, keys and limiters.

Built once per app, on the first Open311 request (nothing at import or in ``create_app``),
and kept on ``app.state``: one event loop owns it, as :class:`RateLimiter` wants.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import Request

from citygate.cloud.ratelimit import RateLimiter
from citygate.cloud.settings import CloudSettings
from citygate.contract.rfc3339 import format_rfc3339_timestamp
from citygate.open311.access import ApiKeys
from citygate.open311.errors import Open311Error
from citygate.open311.settings import Open311Settings, ServiceDefinition


@dataclass(slots=True)
class Open311Runtime:
    settings: Open311Settings
    services: dict[str, ServiceDefinition]  # by Open311 code, in the configuration's order
    citizen_rules: dict[str, str]  # a citizen case's rule_id -> its Open311 code
    # citygate service -> the Open311 code its sensor cases are listed under (the first
    # service that feeds it)
    sensor_codes: dict[str, str]
    resolve_s: dict[str, float]  # citygate service -> its resolve target (expected_datetime)
    keys: ApiKeys
    reads: RateLimiter
    posts_by_address: RateLimiter
    posts_by_key: RateLimiter
    changeset: str
    retry_after_s: int  # the cloud's, for a store that does not answer

    @classmethod
    def of(cls, cloud: CloudSettings) -> Open311Runtime:
        # Only built with the service layer on: its store (and SQLAlchemy) is there anyway.
        from citygate.service.reports import CITIZEN_RULE_PREFIX

        s = cloud.open311
        sensor_codes: dict[str, str] = {}
        for svc in s.services:
            sensor_codes.setdefault(svc.feeds, svc.code)
        return cls(
            settings=s,
            services={svc.code: svc for svc in s.services},
            citizen_rules={CITIZEN_RULE_PREFIX + svc.code: svc.code for svc in s.services},
            sensor_codes=sensor_codes if s.sensor_cases else {},
            resolve_s={name: t.resolve_s for name, t in cloud.service.targets.items()},
            keys=ApiKeys(s.api_keys),
            reads=RateLimiter(per_minute=s.read_rate_per_minute, burst=s.read_burst),
            posts_by_address=RateLimiter(
                per_minute=s.post_rate_per_minute_per_address, burst=s.post_burst_per_address
            ),
            posts_by_key=RateLimiter(per_minute=s.post_rate_per_minute_per_key, burst=s.post_burst_per_key),
            changeset=s.changeset or format_rfc3339_timestamp(int(time.time())),
            retry_after_s=cloud.retry_after_s,
        )

    def code_of(self, source: str, rule_id: str, service: str) -> str | None:
        """The Open311 service code a case is listed under, or None (not public)."""
        if source == "citizen":
            return self.citizen_rules.get(rule_id)
        if source == "sensor":
            return self.sensor_codes.get(service)
        return None  # the system's own cases (failed deliveries, ...) are the operators'


def open311_runtime(request: Request) -> Open311Runtime:
    """The app's runtime (built on first use); 404 while Open311 or the service layer is off."""
    state = request.app.state
    cloud = state.cloud
    if not cloud.settings.open311.enabled or cloud.service is None:
        raise Open311Error(404, "Open311 is not enabled on this server")
    rt: Open311Runtime | None = getattr(state, "open311", None)
    if rt is None:
        rt = Open311Runtime.of(cloud.settings)
        state.open311 = rt
    return rt
