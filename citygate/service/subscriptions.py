"""A subscription: which case events go to which of the city's systems, and how.

Configured (``[[service.subscriptions]]`` in the cloud's TOML); the store keeps only each
subscription's name, URL and state (enabled, failing since), never its secrets.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class Subscription(BaseModel):
    """One receiver of case events."""

    # A bad secret must not be echoed into an error message or a log.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$")
    url: str
    mode: Literal["structured", "binary"] = "structured"
    # Event types without the prefix ("case.opened"); empty: every type.
    types: tuple[str, ...] = ()
    services: tuple[str, ...] = ()  # empty: every service
    districts: tuple[str, ...] = ()  # empty: every district (and cases without one)
    min_severity: Severity = "info"
    # Standard Webhooks secrets ("whsec_..."): the first signs; during a rotation two do.
    secrets: tuple[SecretStr, ...] = Field(min_length=1, max_length=2)
    max_concurrency: int = Field(default=4, ge=1, le=64)  # deliveries in flight to this receiver
    # Throttling coalesces, it never drops: with batch_max > 1 (structured mode), once the
    # receiver throttles (429, or any Retry-After) the events waiting for it go together, up
    # to batch_max in one request (CloudEvents batched mode), until the backlog is gone.
    batch_max: int = Field(default=1, ge=1, le=1000)
    # Our own throttle for a receiver that asks for one: at most one request per interval;
    # what comes due meanwhile waits for the next (in one batch when batch_max > 1).
    min_interval_s: float = Field(default=0.0, ge=0, le=3600)
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    # A receiver that has failed without a single success for this long is disabled, and an
    # operator case says so.
    disable_after_s: float = Field(default=3 * 86_400.0, gt=0)

    @field_validator("types")
    @classmethod
    def _types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for t in v:
            if not t.startswith("case."):
                raise ValueError(f"event type {t!r}: expected 'case.<action>', e.g. 'case.opened'")
        return v

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, v: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        from citygate.service.signing import WebhookSecret

        for s in v:
            WebhookSecret(s.get_secret_value())  # raises, naming the problem, never the value
        return v

    @model_validator(mode="after")
    def _batch_needs_structured(self) -> Subscription:
        if self.batch_max > 1 and self.mode != "structured":
            raise ValueError("batch_max > 1 needs mode = 'structured' (binary mode has no batches)")
        return self

    def wants(self, event_type: str, service: str, district: str | None, severity: str) -> bool:
        """Whether an event of this type, service, district and severity goes here."""
        if self.types and event_type not in self.types:
            return False
        if self.services and service not in self.services:
            return False
        if self.districts and district not in self.districts:
            return False
        return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[self.min_severity]
