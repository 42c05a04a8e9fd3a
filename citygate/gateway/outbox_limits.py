"""The outbox's bounds. Their defaults are the gateway settings' (the one place they are set)."""

from __future__ import annotations

from dataclasses import dataclass

from citygate.gateway.overflow import OverflowPolicy
from citygate.gateway.settings import setting_default


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    max_bytes: int = setting_default("outbox_max_bytes")
    max_age_s: float = setting_default("outbox_max_age_s")
    min_free_disk_bytes: int = setting_default("outbox_min_free_disk_bytes")
    policy: OverflowPolicy = setting_default("overflow_policy")  # noqa: RUF009 - an enum member: immutable
    max_deadletters: int = setting_default("max_deadletters")
    # Not a setting: what an operator needs to see of a refused payload.
    max_deadletter_payload: int = 4096
