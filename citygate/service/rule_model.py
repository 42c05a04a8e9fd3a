"""A rule compiled: the checked model of one ``[rules.<name>]`` table (see citygate.service.rules).

The pydantic models refuse unknown keys and wrong types; :func:`compile_rule` then checks
what only the device profile can tell (fields, their types, the expected interval) and
how the keys fit together, raising :class:`RuleProblem` with the key at fault. The
loader in :mod:`citygate.service.rules` adds the file and the rule name to the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from citygate.contract.profiles import NUMERIC_TYPES, DeviceProfile
from citygate.service.conditions import (
    NS_PER_S,
    Aggregate,
    Backlog,
    Condition,
    Forecast,
    Offline,
    Silence,
    Threshold,
    format_duration,
    format_value,
    overlap,
    parse_condition,
    parse_duration,
)

GATEWAY_KIND: Final = "gateway"
# Windows and fit windows are capped so that the evaluator's memory stays bounded
# (see citygate.service.windows_agg.MAX_POINTS for the per-window point cap).
MAX_WINDOW_NS: Final = 7 * 86_400 * NS_PER_S
MAX_HOLD_NS: Final = 30 * 86_400 * NS_PER_S

Severity = Literal["info", "warning", "critical"]
_SERVICE_RE: Final = re.compile(r"[a-z][a-z0-9-]{0,63}")
_HOURS_RE: Final = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")


def _duration_str(v: Any) -> Any:
    if v is not None and not isinstance(v, str):
        raise ValueError('a duration is a string like "30s", "10m", "2h", "1d" or "1h30m"')
    return v


class _ScopeSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    sites: list[str] | None = None
    districts: list[str] | None = None
    devices: list[str] | None = None
    gateways: list[str] | None = None


class RuleSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=False)

    title: Annotated[str, Field(min_length=1, max_length=120)]
    description: Annotated[str | None, Field(max_length=1000)] = None
    service: str
    severity: Severity
    when: Annotated[str, Field(min_length=1, max_length=200)]
    for_: Annotated[str, Field(alias="for")] = "0s"
    clear: Annotated[str | None, Field(max_length=200)] = None
    clear_for: str = "0s"
    window: str | None = None
    silence_intervals: Annotated[int | None, Field(ge=1, le=1000)] = None
    after: str | None = None
    scope: _ScopeSpec | None = None
    active_hours: str | None = None

    _dur = field_validator("for_", "clear_for", "window", "after", mode="before")(_duration_str)

    @field_validator("service")
    @classmethod
    def _service_syntax(cls, v: str) -> str:
        if _SERVICE_RE.fullmatch(v) is None:
            raise ValueError(f"service {v!r} must match [a-z][a-z0-9-]* (e.g. 'waste', 'field-ops')")
        return v


@dataclass(frozen=True, slots=True)
class Scope:
    """Which subjects a rule watches; None for a key means no restriction. All given keys must match."""

    sites: frozenset[str] | None = None
    districts: frozenset[str] | None = None
    devices: frozenset[str] | None = None
    gateways: frozenset[str] | None = None

    def matches_device(self, device_id: str, site: str | None, district: str | None) -> bool:
        return (
            (self.devices is None or device_id in self.devices)
            and (self.sites is None or site in self.sites)
            and (self.districts is None or district in self.districts)
        )

    def matches_gateway(self, gateway_id: str) -> bool:
        return self.gateways is None or gateway_id in self.gateways


@dataclass(frozen=True, slots=True)
class ActiveHours:
    """A daily span of local time (``22:00-06:00`` wraps past midnight) in ``tz``."""

    start_min: int
    end_min: int
    tz: ZoneInfo
    text: str

    def contains(self, ts_ns: int) -> bool:
        local = datetime.fromtimestamp(ts_ns / NS_PER_S, tz=UTC).astimezone(self.tz)
        m = local.hour * 60 + local.minute
        if self.start_min < self.end_min:
            return self.start_min <= m < self.end_min
        return m >= self.start_min or m < self.end_min


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule: conditions parsed, durations in nanoseconds, checked against its profile."""

    id: str
    name: str
    kind: Literal["device", "gateway"]
    profile: str | None  # None for gateway rules
    profile_version: int | None
    title: str
    description: str | None
    service: str
    severity: Severity
    when: Condition
    clear: Condition | None  # None: the negation of ``when``
    for_ns: int
    clear_for_ns: int
    scope: Scope
    active_hours: ActiveHours | None
    silence_after_ns: int | None  # silence rules: silence_intervals x expected_interval_s
    offline_after_ns: int | None  # offline rules: ``after``
    source: str

    @property
    def is_value_rule(self) -> bool:
        """Judged on each reading (threshold, aggregate, forecast) or heartbeat (backlog)."""
        return not isinstance(self.when, Silence | Offline)


class RuleProblem(Exception):  # noqa: N818 - one refusal; the loader collects them into a RuleError
    def __init__(self, key: str, msg: str) -> None:
        super().__init__(msg)
        self.key = key
        self.msg = msg


def _check_value_condition(cond: Condition, key: str, profile: DeviceProfile) -> None:
    if isinstance(cond, Silence | Offline | Backlog):
        raise RuleProblem(key, f"{cond.describe()!r} is not a condition on a reading here")
    assert isinstance(cond, Threshold | Aggregate | Forecast)
    spec = profile.fields.get(cond.field)
    if spec is None:
        raise RuleProblem(
            key,
            f"field {cond.field!r} is not in profile {profile.name} v{profile.version} "
            f"(fields: {', '.join(profile.fields)})",
        )
    numeric = spec.type in NUMERIC_TYPES
    if isinstance(cond, Threshold):
        v = cond.value
        if numeric:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise RuleProblem(
                    key, f"{cond.field} is a {spec.type} field: compare it with a number, not {v!r}"
                )
        elif spec.type == "bool":
            if not isinstance(v, bool):
                raise RuleProblem(key, f"{cond.field} is a bool field: compare it with true or false")
        elif not isinstance(v, str):
            raise RuleProblem(key, f"{cond.field} is a string field: compare it with a quoted string")
        if not numeric and cond.op not in ("==", "!="):
            raise RuleProblem(
                key, f"{cond.op} needs a numeric field; {cond.field} is a {spec.type} field (use == or !=)"
            )
    elif isinstance(cond, Aggregate):
        if cond.func != "count" and not numeric:
            raise RuleProblem(
                key, f"{cond.func}() needs a numeric field; {cond.field} is a {spec.type} field"
            )
        if cond.window_ns > MAX_WINDOW_NS:
            raise RuleProblem(key, f"the window is longer than {format_duration(MAX_WINDOW_NS)}")
    else:
        if not numeric:
            raise RuleProblem(key, f"forecast() needs a numeric field; {cond.field} is a {spec.type} field")
        if cond.horizon_ns > MAX_WINDOW_NS:
            raise RuleProblem(key, f"the forecast horizon is longer than {format_duration(MAX_WINDOW_NS)}")


def _parse(key: str, text: str) -> Condition:
    try:
        return parse_condition(text)
    except ValueError as e:
        raise RuleProblem(key, str(e)) from None


def _duration(key: str, text: str, *, positive: bool = False, cap: int = MAX_HOLD_NS) -> int:
    try:
        ns = parse_duration(text)
    except ValueError as e:
        raise RuleProblem(key, str(e)) from None
    if positive and ns <= 0:
        raise RuleProblem(key, "must be longer than 0s")
    if ns > cap:
        raise RuleProblem(key, f"must be at most {format_duration(cap)}")
    return ns


def _active_hours(text: str, tz: ZoneInfo) -> ActiveHours:
    m = _HOURS_RE.fullmatch(text.strip())
    if m is None:
        raise RuleProblem("active_hours", f'{text!r} is not a span of local time like "22:00-06:00"')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise RuleProblem("active_hours", "start and end are the same; leave active_hours out for all day")
    return ActiveHours(start_min=start, end_min=end, tz=tz, text=text.strip())


def _set(spec: RuleSpec, key: str) -> bool:
    return key in spec.model_fields_set


def _refuse(spec: RuleSpec, keys: Iterable[str], why: str) -> None:
    for key in keys:
        attr = "for_" if key == "for" else key
        if _set(spec, attr):
            raise RuleProblem(key, why)


def compile_rule(
    name: str,
    spec: RuleSpec,
    *,
    source: str,
    profile: DeviceProfile | None,
    tz: ZoneInfo,
    warnings: list[str],
) -> Rule:
    when = _parse("when", spec.when)
    clear = _parse("clear", spec.clear) if spec.clear is not None else None
    silence_after: int | None = None
    offline_after: int | None = None
    window_ns: int | None = None
    if spec.window is not None:
        window_ns = _duration("window", spec.window, positive=True, cap=MAX_WINDOW_NS)
    gateway = profile is None
    if isinstance(when, Silence):
        if gateway:
            raise RuleProblem("when", "silence is a device rule; gateway rules use 'offline'")
        _refuse(
            spec,
            ("for", "clear", "clear_for", "window", "after", "active_hours"),
            "a silence rule opens after silence_intervals and clears on the next reading",
        )
        if spec.silence_intervals is None:
            raise RuleProblem("silence_intervals", "a silence rule needs silence_intervals (e.g. 3)")
        assert profile is not None
        silence_after = spec.silence_intervals * profile.expected_interval_s * NS_PER_S
    elif isinstance(when, Offline):
        if not gateway:
            raise RuleProblem("when", "offline is a gateway rule (kind = \"gateway\"); devices use 'silence'")
        _refuse(
            spec,
            ("for", "clear", "clear_for", "window", "silence_intervals", "active_hours"),
            "an offline rule opens after 'after' without a heartbeat and clears on the next one",
        )
        if spec.after is None:
            raise RuleProblem("after", 'an offline rule needs after (e.g. "5m")')
        offline_after = _duration("after", spec.after, positive=True)
    elif isinstance(when, Backlog):
        if not gateway:
            raise RuleProblem("when", 'backlog_age is a gateway rule (kind = "gateway")')
        _refuse(spec, ("window", "silence_intervals", "after", "active_hours"), "not a key of a backlog rule")
        if clear is not None and not isinstance(clear, Backlog):
            raise RuleProblem("clear", "the clear condition of a backlog rule is on backlog_age too")
    else:
        if gateway:
            raise RuleProblem("when", "gateway rules use 'offline' or 'backlog_age op duration'")
        assert profile is not None
        _refuse(spec, ("silence_intervals", "after"), "only silence and offline rules take this key")
        _check_value_condition(when, "when", profile)
        if clear is not None:
            _check_value_condition(clear, "clear", profile)
        uses_forecast = isinstance(when, Forecast) or isinstance(clear, Forecast)
        if uses_forecast:
            if window_ns is None:
                raise RuleProblem(
                    "window", 'a forecast rule needs window, the span the trend is fitted over (e.g. "2h")'
                )
            if isinstance(when, Forecast):
                when = replace(when, window_ns=window_ns)
            if isinstance(clear, Forecast):
                clear = replace(clear, window_ns=window_ns)
        elif spec.window is not None:
            raise RuleProblem(
                "window", "only forecast rules take a fit window (aggregates carry theirs: avg(x, 10m))"
            )
    if clear is not None:
        v = overlap(when, clear)
        if v is not None:
            raise RuleProblem(
                "clear",
                f"a value of {format_value(v)} satisfies both when ({when.describe()}) and clear "
                f"({clear.describe()}); the rule would open and clear on the same value",
            )
    for_ns = _duration("for", spec.for_)
    clear_for_ns = _duration("clear_for", spec.clear_for)
    active = None
    if spec.active_hours is not None:
        active = _active_hours(spec.active_hours, tz)
    scope = Scope()
    if spec.scope is not None:
        s = spec.scope
        if gateway and (s.sites is not None or s.districts is not None or s.devices is not None):
            raise RuleProblem("scope", "a gateway rule's scope takes only 'gateways'")
        if not gateway and s.gateways is not None:
            raise RuleProblem(
                "scope", "a device rule's scope takes sites, districts and devices, not gateways"
            )
        scope = Scope(
            sites=frozenset(s.sites) if s.sites is not None else None,
            districts=frozenset(s.districts) if s.districts is not None else None,
            devices=frozenset(s.devices) if s.devices is not None else None,
            gateways=frozenset(s.gateways) if s.gateways is not None else None,
        )
    numeric_when = isinstance(when, Aggregate | Forecast | Backlog) or (
        isinstance(when, Threshold) and when.op in (">", ">=", "<", "<=")
    )
    if numeric_when and clear is None and clear_for_ns == 0:
        warnings.append(
            f"{source}: rule {name!r}: no clear and no clear_for: a value hovering at the "
            "threshold opens and clears again and again; add clear (hysteresis) or clear_for"
        )
    prefix = GATEWAY_KIND if profile is None else profile.name
    return Rule(
        id=f"{prefix}.{name}",
        name=name,
        kind="gateway" if gateway else "device",
        profile=None if profile is None else profile.name,
        profile_version=None if profile is None else profile.version,
        title=spec.title,
        description=spec.description,
        service=spec.service,
        severity=spec.severity,
        when=when,
        clear=clear,
        for_ns=for_ns,
        clear_for_ns=clear_for_ns,
        scope=scope,
        active_hours=active,
        silence_after_ns=silence_after,
        offline_after_ns=offline_after,
        source=source,
    )
