"""``[cloud.open311]``: the GeoReport v2 API's services, keys, limits and personal-data retention.

Off by default. On, it needs the service layer (``[cloud.service] enabled``): a citizen report
is a case in the same store, with the same lifecycle and events. :data:`Open311Field` is the
type of ``CloudSettings.open311`` and refuses, when the configuration loads, Open311 without
the service layer.

Each Open311 service names the citygate service its cases belong to (``feeds``) and the
attributes a report of it carries. API keys are compared in constant time; they must be long
and distinct, like the cloud's tokens. Every size and rate has a bound here.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from citygate.cloud.cases import CaseStatus

# The case statuses (citygate.service.cases.STATUSES, without importing SQLAlchemy here).
STATUSES: tuple[str, ...] = get_args(CaseStatus)

MIN_KEY_LENGTH = 24
# Codes go into URLs (services/{code}.json) and rule ids ("citizen.<code>").
_CODE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # citygate service names, API key names

Datatype = Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
LIST_TYPES: frozenset[str] = frozenset({"singlevaluelist", "multivaluelist"})
OpenClosed = Literal["open", "closed"]
_Text = Annotated[str, Field(max_length=2000)]


class AttributeValue(BaseModel):
    """One choice of a singlevaluelist or multivaluelist attribute."""

    model_config = ConfigDict(extra="forbid")

    key: Annotated[str, Field(min_length=1, max_length=100)]
    name: Annotated[str, Field(min_length=1, max_length=200)]


class AttributeDefinition(BaseModel):
    """A question a report of the service answers (``attribute[code]=...``)."""

    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, Field(pattern=_CODE)]
    description: Annotated[str, Field(min_length=1, max_length=500)]
    datatype: Datatype = "string"
    required: bool = False
    # False: shown to the person reporting only, never answered.
    variable: bool = True
    datatype_description: _Text = ""
    order: Annotated[int, Field(ge=1, le=10_000)]
    values: list[AttributeValue] = Field(default_factory=list, max_length=500)

    @model_validator(mode="after")
    def _values_for_lists(self) -> Self:
        keys = [v.key for v in self.values]
        if self.datatype in LIST_TYPES and not keys:
            raise ValueError(f"attribute {self.code!r}: a {self.datatype} needs values")
        if self.datatype not in LIST_TYPES and keys:
            raise ValueError(f"attribute {self.code!r}: only list datatypes take values")
        if len(set(keys)) != len(keys):
            raise ValueError(f"attribute {self.code!r}: value keys must be unique")
        if self.required and not self.variable:
            raise ValueError(f"attribute {self.code!r}: required needs variable = true")
        return self


class ServiceDefinition(BaseModel):
    """One Open311 service (``[[cloud.open311.services]]``)."""

    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, Field(pattern=_CODE)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: _Text = ""
    group: Annotated[str, Field(max_length=200)] = ""
    keywords: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=50
    )
    # The citygate service its cases belong to (targets, subscriptions, the operators'
    # filters). Sensor cases of that service are listed under the first Open311 service
    # that feeds it.
    feeds: Annotated[str, Field(pattern=_NAME)]
    severity: Literal["info", "warning", "critical"] = "warning"
    # realtime: POST answers the service_request_id; batch: a token (GET tokens/{token}).
    type: Literal["realtime", "batch"] = "realtime"
    notice: _Text = ""  # service_notice: what the city will do
    agency: Annotated[str, Field(max_length=200)] = ""  # agency_responsible
    attributes: list[AttributeDefinition] = Field(default_factory=list, max_length=100)

    @field_validator("attributes")
    @classmethod
    def _unique(cls, v: list[AttributeDefinition]) -> list[AttributeDefinition]:
        for what in ("code", "order"):
            seen = [getattr(a, what) for a in v]
            if len(set(seen)) != len(seen):
                raise ValueError(f"attribute {what}s must be unique within a service")
        return v


def _default_status_map() -> dict[str, OpenClosed]:
    return {s: "closed" if s in ("resolved", "closed") else "open" for s in STATUSES}


class Open311Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    enabled: bool = False
    # Set: a request naming another jurisdiction_id is 404 (one endpoint serves one city).
    jurisdiction_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    # name -> key; the name is recorded with every report (which app sent it), never the key.
    api_keys: dict[str, SecretStr] = Field(default_factory=dict)
    services: list[ServiceDefinition] = Field(default_factory=list, max_length=500)
    # Sensor cases of the services' `feeds` listed as service requests too (source "sensor").
    sensor_cases: bool = True
    # Case statuses as Open311's open/closed (every status must be mapped).
    status_map: dict[str, OpenClosed] = Field(default_factory=_default_status_map)
    # The text of operators' notes in the public `notes` and updates (off: only what happened,
    # "Acknowledged", "Resolved": operators write notes for each other, not for the public).
    public_notes: bool = False

    # -- duplicates: a report within this distance of an open case of the same service that
    # changed within this time joins that case (a recurrence) instead of opening another.
    attach_within_m: Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)] = 30.0
    attach_within_s: Annotated[float, Field(ge=0, le=365 * 86400, allow_inf_nan=False)] = 7 * 86400.0
    # Where reports may be: [south, west, north, east] in degrees (WGS84); unset: anywhere.
    bounds: tuple[float, float, float, float] | None = None

    # -- personal data: name, e-mail, phone, device and account ids, deleted this long after
    # the report (every row carries its expiry; the service layer's escalation pass deletes).
    personal_data_retention_s: Annotated[float, Field(gt=0, le=10 * 365 * 86400, allow_inf_nan=False)] = (
        30 * 86400.0
    )

    # -- sizes
    max_body_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 64 * 1024
    max_fields: Annotated[int, Field(ge=16, le=1000)] = 64
    max_description_chars: Annotated[int, Field(ge=1, le=100_000)] = 4000  # the spec's limit
    max_attribute_chars: Annotated[int, Field(ge=1, le=100_000)] = 1000

    # -- reads (public): pages, date ranges, history per request
    default_page_size: Annotated[int, Field(ge=1, le=10_000)] = 1000  # the spec's default
    max_page_size: Annotated[int, Field(ge=1, le=10_000)] = 1000
    max_range_s: Annotated[float, Field(gt=0, le=10 * 365 * 86400, allow_inf_nan=False)] = 90 * 86400.0
    updates_default_range_s: Annotated[float, Field(gt=0, le=10 * 365 * 86400, allow_inf_nan=False)] = 86400.0
    max_notes: Annotated[int, Field(ge=1, le=10_000)] = 50  # the latest ones, per request
    max_ids: Annotated[int, Field(ge=1, le=10_000)] = 100  # service_request_id=1,2,... per read

    # -- rates (token buckets, citygate.cloud.ratelimit): per client address for every
    # request, per address and per key for reports
    read_rate_per_minute: Annotated[float, Field(gt=0, le=1_000_000)] = 120.0
    read_burst: Annotated[int, Field(ge=1, le=100_000)] = 60
    post_rate_per_minute_per_address: Annotated[float, Field(gt=0, le=1_000_000)] = 6.0
    post_burst_per_address: Annotated[int, Field(ge=1, le=100_000)] = 10
    post_rate_per_minute_per_key: Annotated[float, Field(gt=0, le=1_000_000)] = 600.0
    post_burst_per_key: Annotated[int, Field(ge=1, le=100_000)] = 100
    # IPv6 clients share one bucket per prefix of this length (one host often holds a /64).
    ipv6_prefix: Annotated[int, Field(ge=32, le=128)] = 64

    # -- discovery (discovery.json)
    contact: Annotated[str, Field(max_length=500)] = ""
    key_service: Annotated[str, Field(max_length=500)] = ""  # where app developers ask for a key
    # The endpoint's public URL (discovery's `url`); unset: the URL the request came to.
    public_url: Annotated[str, Field(pattern=r"^https://[^\s]{1,500}$")] | None = None
    endpoint_type: Literal["production", "test"] = "production"
    # When this configuration last changed (discovery's changeset, RFC 3339); unset: when the
    # cloud started. Set it when several replicas answer.
    changeset: Annotated[str, Field(max_length=40)] | None = None

    @field_validator("api_keys")
    @classmethod
    def _strong_keys(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        generate = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        for name, key in v.items():
            if re.fullmatch(_NAME, name) is None:
                raise ValueError(f"API key name {name!r} must be 1-64 letters, digits, '.', '_', '-'")
            secret = key.get_secret_value()
            if len(secret) < MIN_KEY_LENGTH or len(secret) > 200:
                raise ValueError(f"API key {name!r} must be {MIN_KEY_LENGTH}-200 characters; {generate}")
            if any(c.isspace() or not c.isprintable() for c in secret) or len(set(secret)) == 1:
                raise ValueError(f"API key {name!r} contains whitespace or repeats one character; {generate}")
        secrets = [k.get_secret_value() for k in v.values()]
        if len(set(secrets)) != len(secrets):
            raise ValueError("every API key must be distinct")
        return v

    @field_validator("changeset")
    @classmethod
    def _changeset_rfc3339(cls, v: str | None) -> str | None:
        from citygate.contract.rfc3339 import parse_rfc3339_ns

        if v is not None and parse_rfc3339_ns(v) is None:
            raise ValueError("changeset must be an RFC 3339 date-time with offset, e.g. 2026-01-01T00:00:00Z")
        return v

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, v: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if v is not None:
            south, west, north, east = v
            if not (-90 <= south < north <= 90 and -180 <= west < east <= 180):
                raise ValueError("bounds must be [south, west, north, east] with south < north, west < east")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        codes = [s.code for s in self.services]
        if len(set(codes)) != len(codes):
            raise ValueError("[cloud.open311] services: codes must be unique")
        missing = set(STATUSES) - set(self.status_map)
        unknown = set(self.status_map) - set(STATUSES)
        if missing or unknown:
            raise ValueError(
                f"[cloud.open311] status_map must map exactly the case statuses {', '.join(STATUSES)}"
                + (f"; missing {', '.join(sorted(missing))}" if missing else "")
                + (f"; unknown {', '.join(sorted(unknown))}" if unknown else "")
            )
        if self.default_page_size > self.max_page_size:
            raise ValueError("[cloud.open311] default_page_size must be at most max_page_size")
        if self.enabled and not self.services:
            raise ValueError("[cloud.open311] enabled needs a service ([[cloud.open311.services]])")
        return self


def _needs_service_layer(v: Open311Settings, info: ValidationInfo) -> Open311Settings:
    """Open311 on needs the service layer on: the reports are its cases."""
    service = info.data.get("service")
    # Absent: [cloud.service] failed validation itself, and that error is the one to read.
    if v.enabled and service is not None and not service.enabled:
        raise ValueError(
            "[cloud.open311] enabled needs the service layer: set [cloud.service] enabled = true "
            "with a store_url (citizen reports are cases in its store)"
        )
    return v


# The type of CloudSettings.open311; declared after `service` there, so that its value is known.
Open311Field = Annotated[Open311Settings, AfterValidator(_needs_service_layer)]
