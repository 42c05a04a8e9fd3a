"""Cases and subscriptions as the operators' API answers them (``/v1/cases``, ``/v1/subscriptions``).

The service store keeps times as integers: wall-clock milliseconds (``*_ms``) and device
time in nanoseconds (``*_ns``). The API answers RFC 3339 strings (``*_at``) instead, from
:mod:`citygate.contract.rfc3339`. Request bodies refuse unknown keys; the actor of every
change is the operator token's name, never anything in a body.

Nothing here imports SQLAlchemy at module level: the cloud imports it only when the service
layer runs (:mod:`citygate.cloud.state`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from citygate.contract.rfc3339 import format_rfc3339_ms, format_rfc3339_ns, parse_rfc3339_ns

if TYPE_CHECKING:
    from sqlalchemy import Engine

_MS_NS = 1_000_000
MAX_NOTE = 2000
MAX_LIMIT = 1000

# citygate.service.cases.STATUSES and OPERATOR_ACTIONS (a test checks they agree).
CaseStatus = Literal["new", "acknowledged", "assigned", "in_progress", "resolved", "closed"]
Action = Literal["acknowledge", "assign", "start", "resolve", "close", "reopen", "note"]
DeliveryStatus = Literal["pending", "delivered", "expired", "gone"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "delivered", "expired", "gone")


class ServiceLayerOff(Exception):  # noqa: N818 - reads better at the call sites than ...Error
    """The cloud runs without ``[cloud.service]``: there are no cases (404 service_layer_off)."""


class NotFound(Exception):  # noqa: N818 - as ServiceLayerOff
    """404 no_such_case / no_such_subscription."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


def case_error_answer(exc: Exception) -> tuple[int, str]:
    """The status and error name for a :class:`citygate.service.case_model.CaseError`.

    Another operator acting first (CaseConflictError) and an action the case's status does
    not allow are 409; an unknown case 404; a request that can never apply 422.
    """
    from citygate.service.case_model import ActionNotAllowedError, CaseConflictError, CaseNotFoundError

    if isinstance(exc, CaseConflictError):
        return 409, "case_conflict"
    if isinstance(exc, CaseNotFoundError):
        return 404, "no_such_case"
    if isinstance(exc, ActionNotAllowedError):
        return 409, "action_not_allowed"
    return 422, "bad_action"


def ms_time(ms: int | None) -> str | None:
    return None if ms is None else format_rfc3339_ms(int(ms) * _MS_NS)


def ns_time(ns: int | None) -> str | None:
    return None if ns is None else format_rfc3339_ns(int(ns))


# -- answers ---------------------------------------------------------------------------------


class Case(BaseModel):
    id: int
    rule: str
    subject: str
    source: str
    service: str
    severity: str
    title: str
    status: str
    open: bool
    site: str | None
    district: str | None
    assignee: str | None
    occurrences: int
    escalation: int
    late: bool
    merged_into: int | None
    detail: str
    latitude: float | None
    longitude: float | None
    opened_at: str
    updated_at: str
    acknowledged_at: str | None
    resolved_at: str | None
    closed_at: str | None
    # Device time: when the condition took effect and cleared; a forecast's predicted crossing.
    condition_at: str | None
    cleared_at: str | None
    forecast_at: str | None
    forecast_outcome: str | None

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> Case:
        return cls(
            id=row["id"],
            rule=row["rule_id"],
            subject=row["subject"],
            source=row["source"],
            service=row["service"],
            severity=row["severity"],
            title=row["title"],
            status=row["status"],
            open=bool(row["is_open"]),
            site=row["site"],
            district=row["district"],
            assignee=row["assignee"],
            occurrences=row["occurrences"],
            escalation=row["escalation"],
            late=bool(row["late"]),
            merged_into=row["merged_into"],
            detail=row["detail"],
            latitude=row["latitude"],
            longitude=row["longitude"],
            opened_at=format_rfc3339_ms(int(row["opened_ms"]) * _MS_NS),
            updated_at=format_rfc3339_ms(int(row["updated_ms"]) * _MS_NS),
            acknowledged_at=ms_time(row["acknowledged_ms"]),
            resolved_at=ms_time(row["resolved_ms"]),
            closed_at=ms_time(row["closed_ms"]),
            condition_at=ns_time(row["condition_ns"]),
            cleared_at=ns_time(row["cleared_ns"]),
            forecast_at=ns_time(row["forecast_ns"]),
            forecast_outcome=row["forecast_outcome"],
        )


class HistoryEntry(BaseModel):
    id: int
    at: str
    actor: str  # "rules", "system", or the operator token's name
    action: str
    from_status: str | None
    to_status: str
    note: str
    data: dict[str, Any]

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> HistoryEntry:
        return cls(
            id=row["id"],
            at=format_rfc3339_ms(int(row["at_ms"]) * _MS_NS),
            actor=row["actor"],
            action=row["action"],
            from_status=row["from_status"],
            to_status=row["to_status"],
            note=row["note"],
            data=dict(row["data"] or {}),
        )


class CaseList(BaseModel):
    cases: list[Case]
    counts: dict[str, int]  # open cases per status (all of them, not only this page)
    limit: int
    offset: int


class CaseDetail(BaseModel):
    case: Case
    history: list[HistoryEntry]


class TransitionOut(BaseModel):
    case_id: int
    action: str
    from_status: str | None
    to_status: str
    event_id: str
    history_id: int

    @classmethod
    def of(cls, t: Any) -> TransitionOut:
        """From a :class:`citygate.service.case_model.Transition` (the same fields)."""
        return cls.model_validate(t, from_attributes=True)


class ActionAnswer(BaseModel):
    transition: TransitionOut
    case: Case


class SubscriptionInfo(BaseModel):
    name: str
    url: str
    enabled: bool
    configured: bool  # in this cloud's [cloud.service] subscriptions (replay needs it)
    disabled_reason: str | None
    failing_since: str | None
    deliveries: dict[str, int]  # pending / delivered / expired / gone


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionInfo]


class DeliveryAttempt(BaseModel):
    id: int
    event_seq: int
    at: str
    outcome: str
    http_status: int | None
    elapsed_ms: int
    detail: str

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> DeliveryAttempt:
        return cls(
            id=row["id"],
            event_seq=row["event_seq"],
            at=format_rfc3339_ms(int(row["at_ms"]) * _MS_NS),
            outcome=row["outcome"],
            http_status=row["http_status"],
            elapsed_ms=row["elapsed_ms"],
            detail=row["detail"],
        )


class DeliveryLog(BaseModel):
    subscription: str
    attempts: list[DeliveryAttempt]  # newest first


class ReplayAnswer(BaseModel):
    subscription: str
    since: str
    replayed: int  # deliveries made due again


# -- requests --------------------------------------------------------------------------------


class ActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    note: str = Field(default="", max_length=MAX_NOTE)
    assignee: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _assignee_with_assign(self) -> ActionRequest:
        if self.action == "assign" and not self.assignee:
            raise ValueError("assign needs an assignee")
        if self.action != "assign" and self.assignee is not None:
            raise ValueError("only assign takes an assignee")
        return self


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    into: int = Field(ge=1)
    note: str = Field(default="", max_length=MAX_NOTE)


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: str = Field(max_length=40, description="RFC 3339 date-time with offset")

    @field_validator("since")
    @classmethod
    def _rfc3339(cls, v: str) -> str:
        if parse_rfc3339_ns(v) is None:
            raise ValueError("since must be an RFC 3339 date-time with offset, e.g. 2026-01-01T00:00:00Z")
        return v

    @property
    def since_ms(self) -> int:
        ns = parse_rfc3339_ns(self.since)
        assert ns is not None  # checked by the validator
        return ns // _MS_NS


# -- the store's subscriptions -----------------------------------------------------------------


def subscription_rows(engine: Engine, configured: set[str]) -> list[SubscriptionInfo]:
    """Every subscription the store knows, with its deliveries counted by status."""
    from sqlalchemy import func, select

    from citygate.service.schema import deliveries, subscriptions

    with engine.connect() as conn:
        subs = list(conn.execute(select(subscriptions).order_by(subscriptions.c.name)).mappings())
        counted = conn.execute(
            select(deliveries.c.subscription, deliveries.c.status, func.count()).group_by(
                deliveries.c.subscription, deliveries.c.status
            )
        )
        counts: dict[str, dict[str, int]] = {}
        for name, status, n in counted:
            counts.setdefault(name, {})[status] = int(n)
    return [
        SubscriptionInfo(
            name=s["name"],
            url=s["url"],
            enabled=bool(s["enabled"]),
            configured=s["name"] in configured,
            disabled_reason=s["disabled_reason"],
            failing_since=ms_time(s["failing_since_ms"]),
            deliveries={k: counts.get(s["name"], {}).get(k, 0) for k in DELIVERY_STATUSES},
        )
        for s in subs
    ]


def subscription_known(engine: Engine, name: str) -> bool:
    from sqlalchemy import select

    from citygate.service.schema import subscriptions

    with engine.connect() as conn:
        found = conn.execute(select(subscriptions.c.name).where(subscriptions.c.name == name)).first()
    return found is not None
