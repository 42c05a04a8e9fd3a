"""The rule evaluator: readings and heartbeats in, condition changes out. Pure: no I/O, no clock.

Every decision is made in device time: a condition must hold from one reading to a later
one for the rule's ``for`` before it opens, and once open only the clear condition held
for ``clear_for`` clears it. Each (rule, subject) pair is a small state machine::

    idle --when--> pending --held for `for`--> OPEN --clear--> clearing --held for `clear_for`--> idle
                   <-not when-                       <-not clear-

so a value hovering at a threshold cannot produce an opened/cleared/opened chain unless
the rule asks for it (a rule with neither ``clear`` nor ``clear_for`` on a numeric
threshold is flagged by ``citygate rules check``).

Order and lateness. Per (rule, subject) only readings newer than the last one judged move
the state machine; an older one (or a duplicate) still joins the aggregate windows but
never re-triggers a transition, and is counted in ``stats["out_of_order"]``. A backlog
that a gateway drains in device-time order after an outage therefore yields exactly the
changes the device-time series says, including an opened+cleared pair for a condition
that came and went inside the backlog. A change is marked ``late`` when the reading (or
heartbeat, or instant) it was decided on is older than the evaluator's watermark (the
newest device time or ``advance`` instant seen) minus ``lateness_ns``.

Silence and offline. ``advance(now_ns)`` opens silence rules (no reading for
``silence_intervals`` x the profile's expected interval) and gateway offline rules (no
heartbeat for ``after``); each opens at the device time it became true (last reading +
allowance) and clears at the next reading / heartbeat. While a gateway has an offline
condition open, silence rules of the devices last seen behind it are held back (one
outage, one case); while its last heartbeat reports a backlog, those devices' silence is
judged only up to what the gateway has delivered (heartbeat time - backlog age). Devices
and gateways never seen are not judged.

Forecasts: a least-squares line over the rule's ``window``; the condition holds when the
line predicts the threshold is crossed within the horizon, *or when the latest value is
already past it* (a bin already at 97 % needs emptying more than one heading for 95 %;
the case does not clear the moment the prediction comes true). ``forecast_at_ns`` is the
predicted crossing (the reading's time when already past).

Memory: state per (rule, subject) plus per device/gateway a few numbers; windows hold
only their span, at most ``windows_agg.MAX_POINTS`` points each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from citygate.service.conditions import (
    NS_PER_S,
    Aggregate,
    Backlog,
    Forecast,
    Offline,
    Silence,
    format_duration,
)
from citygate.service.judging import FieldValue, Judgement, iso, judge, judge_backlog, negate, numeric
from citygate.service.rules import Rule, RuleSet
from citygate.service.windows_agg import Window

# 2: a window's points as {"ts": [...], "values": [...]}; 1 (still read): [[ts, value], ...].
SNAPSHOT_FORMAT: Final = 2
_FORMATS_READ: Final = frozenset({1, 2})
IDLE, PENDING, OPEN, CLEARING = "idle", "pending", "open", "clearing"
_STATES: Final = frozenset({IDLE, PENDING, OPEN, CLEARING})


@dataclass(frozen=True, slots=True)
class Observation:
    """One reading as the evaluator sees it."""

    device_id: str
    profile: str
    ts_ns: int  # the device's timestamp
    fields: Mapping[str, FieldValue]
    site: str | None = None
    district: str | None = None
    gateway_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConditionChange:
    """What the case store consumes: a rule's condition opened or cleared for one subject."""

    kind: Literal["opened", "cleared"]
    rule_id: str
    subject: str  # the device id (or gateway id for gateway rules)
    service: str
    severity: str
    at_ns: int  # device time at which the condition (or its clearing) took effect
    value: float | None  # the value that triggered
    late: bool
    detail: str  # human sentence, e.g. "fill_level 91 > 85 for 10m"
    forecast_at_ns: int | None = None  # forecast rules: when the threshold is predicted to be crossed


@dataclass(slots=True)
class _Track:
    state: str = IDLE
    since_ns: int = 0  # pending: when `when` began to hold; open/clearing: when it opened
    clear_since_ns: int = 0  # clearing: when the clear condition began to hold
    last_ts: int | None = None  # the newest reading judged
    first_ts: int | None = None  # the first reading judged (windows are warm one span later)
    windows: dict[tuple[str, int], Window] = field(default_factory=dict)


@dataclass(slots=True)
class _Device:
    profile: str
    last_ts: int
    site: str | None
    district: str | None
    gateway_id: str | None


@dataclass(slots=True)
class _Gateway:
    last_hb_ns: int
    backlog_age_s: float | None


def _windows_needed(rule: Rule) -> tuple[tuple[str, int], ...]:
    keys: list[tuple[str, int]] = []
    for cond in (rule.when, rule.clear):
        if isinstance(cond, Aggregate | Forecast):
            keys.append((cond.field, cond.window_ns))
    return tuple(dict.fromkeys(keys))


class Evaluator:
    """Judges readings and heartbeats against a RuleSet; see the module docstring."""

    def __init__(self, rules: RuleSet, *, lateness_ns: int) -> None:
        if lateness_ns < 0:
            raise ValueError("lateness_ns must be >= 0")
        self._rules = rules
        self._lateness = lateness_ns
        self._watermark: int | None = None
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._devices: dict[str, _Device] = {}
        self._gateways: dict[str, _Gateway] = {}
        self._stats: dict[str, int] = {"out_of_order": 0, "late_changes": 0, "window_truncated": 0}
        self._needs = {r.id: _windows_needed(r) for r in rules}
        self._offline_rules = tuple(r for r in rules.gateway_rules() if isinstance(r.when, Offline))
        # Conditions that were open in a restored snapshot but whose rule is gone: the
        # caller decides what becomes of their cases.
        self.dropped_open: tuple[tuple[str, str], ...] = ()

    @property
    def rules(self) -> RuleSet:
        return self._rules

    @property
    def stats(self) -> dict[str, int]:
        """Counters: readings/heartbeats out of order, late changes, points dropped by window caps."""
        return dict(self._stats)

    @property
    def watermark_ns(self) -> int | None:
        return self._watermark

    def is_open(self, rule_id: str, subject: str) -> bool:
        tr = self._tracks.get((rule_id, subject))
        return tr is not None and tr.state in (OPEN, CLEARING)

    # -- time and lateness ------------------------------------------------------------

    def _late_then_see(self, ts_ns: int) -> bool:
        late = self._is_late(ts_ns)
        if self._watermark is None or ts_ns > self._watermark:
            self._watermark = ts_ns
        return late

    def _is_late(self, ts_ns: int) -> bool:
        return self._watermark is not None and ts_ns < self._watermark - self._lateness

    def _change(
        self,
        kind: Literal["opened", "cleared"],
        rule: Rule,
        subject: str,
        at_ns: int,
        value: float | None,
        late: bool,
        detail: str,
        forecast_at_ns: int | None = None,
    ) -> ConditionChange:
        if late:
            self._stats["late_changes"] += 1
        return ConditionChange(
            kind=kind,
            rule_id=rule.id,
            subject=subject,
            service=rule.service,
            severity=rule.severity,
            at_ns=at_ns,
            value=value,
            late=late,
            detail=detail,
            forecast_at_ns=forecast_at_ns,
        )

    # -- readings ---------------------------------------------------------------------

    def observe(self, obs: Observation) -> list[ConditionChange]:
        """Judge one reading against its profile's rules."""
        late = self._late_then_see(obs.ts_ns)
        dev = self._devices.get(obs.device_id)
        prev_last = None if dev is None else dev.last_ts
        newer = dev is None or obs.ts_ns > dev.last_ts
        if dev is None:
            self._devices[obs.device_id] = _Device(
                obs.profile, obs.ts_ns, obs.site, obs.district, obs.gateway_id
            )
        elif newer:
            dev.profile, dev.last_ts, dev.site, dev.district = obs.profile, obs.ts_ns, obs.site, obs.district
            if obs.gateway_id is not None:
                dev.gateway_id = obs.gateway_id
        changes: list[ConditionChange] = []
        for rule in self._rules.for_profile(obs.profile):
            if not rule.scope.matches_device(obs.device_id, obs.site, obs.district):
                continue
            if isinstance(rule.when, Silence):
                if newer:
                    ch = self._end_silence(rule, obs, prev_last, late)
                    if ch is not None:
                        changes.append(ch)
                continue
            ch = self._observe_value(rule, obs, late)
            if ch is not None:
                changes.append(ch)
        return changes

    def _observe_value(self, rule: Rule, obs: Observation, late: bool) -> ConditionChange | None:
        key = (rule.id, obs.device_id)
        tr = self._tracks.get(key)
        if tr is None:
            tr = self._tracks[key] = _Track()
        ts = obs.ts_ns
        for fname, span in self._needs[rule.id]:
            raw = obs.fields.get(fname)
            if raw is None:
                continue
            num = numeric(raw)
            win = tr.windows.get((fname, span))
            if win is None:
                win = tr.windows[(fname, span)] = Window(span)
            before = win.truncated
            win.add(ts, 1.0 if num is None else num)
            self._stats["window_truncated"] += win.truncated - before
        if tr.last_ts is not None and ts <= tr.last_ts:
            self._stats["out_of_order"] += 1
            return None
        if tr.first_ts is None:
            tr.first_ts = ts
        tr.last_ts = ts
        if rule.active_hours is not None and not rule.active_hours.contains(ts):
            outside = f"outside active hours {rule.active_hours.text}"
            wj, cj = Judgement(False, None, outside), Judgement(True, None, outside)
        else:
            wj = judge(rule.when, tr.first_ts, tr.windows, ts, obs.fields)
            cj = (
                judge(rule.clear, tr.first_ts, tr.windows, ts, obs.fields)
                if rule.clear is not None
                else negate(wj)
            )
        return self._step(rule, tr, obs.device_id, ts, wj, cj, late)

    def _step(
        self,
        rule: Rule,
        tr: _Track,
        subject: str,
        ts: int,
        wj: Judgement,
        cj: Judgement,
        late: bool,
    ) -> ConditionChange | None:
        """Advance one (rule, subject) state machine by one judged reading or heartbeat."""
        if tr.state in (IDLE, PENDING):
            if wj.holds is False:
                tr.state = IDLE
            elif wj.holds is True:
                if tr.state == IDLE:
                    tr.state, tr.since_ns = PENDING, ts
                held = ts - tr.since_ns
                if held >= rule.for_ns:
                    tr.state, tr.since_ns = OPEN, ts
                    detail = wj.text + (f" for {format_duration(held)}" if rule.for_ns else "")
                    return self._change(
                        "opened", rule, subject, ts, wj.value, late, detail, wj.forecast_at_ns
                    )
            return None
        if cj.holds is False:
            tr.state = OPEN
        elif cj.holds is True:
            if tr.state == OPEN:
                tr.state, tr.clear_since_ns = CLEARING, ts
            held = ts - tr.clear_since_ns
            if held >= rule.clear_for_ns:
                tr.state = IDLE
                detail = cj.text + (f" for {format_duration(held)}" if rule.clear_for_ns else "")
                return self._change("cleared", rule, subject, ts, cj.value, late, detail)
        return None

    def _end_silence(
        self, rule: Rule, obs: Observation, prev_last: int | None, late: bool
    ) -> ConditionChange | None:
        tr = self._tracks.get((rule.id, obs.device_id))
        if tr is None or tr.state != OPEN:
            return None
        del self._tracks[(rule.id, obs.device_id)]
        gap = "" if prev_last is None else f" after {format_duration(obs.ts_ns - prev_last)} without one"
        # A reading from before the silence was declared means the data was only delayed.
        at = max(obs.ts_ns, tr.since_ns)
        return self._change(
            "cleared",
            rule,
            obs.device_id,
            at,
            None,
            late or obs.ts_ns < tr.since_ns,
            f"reading at {iso(obs.ts_ns)}{gap}",
        )

    # -- gateways ---------------------------------------------------------------------

    def heartbeat(self, gateway_id: str, at_ns: int, backlog_age_s: float | None) -> list[ConditionChange]:
        """Judge one gateway heartbeat; ``backlog_age_s`` is its oldest unsent reading's age (None: none)."""
        late = self._late_then_see(at_ns)
        gw = self._gateways.get(gateway_id)
        if gw is not None and at_ns <= gw.last_hb_ns:
            self._stats["out_of_order"] += 1
            return []
        prev = None if gw is None else gw.last_hb_ns
        self._gateways[gateway_id] = _Gateway(at_ns, backlog_age_s)
        changes: list[ConditionChange] = []
        age = 0.0 if backlog_age_s is None else float(backlog_age_s)
        for rule in self._rules.gateway_rules():
            if not rule.scope.matches_gateway(gateway_id):
                continue
            if isinstance(rule.when, Offline):
                tr = self._tracks.get((rule.id, gateway_id))
                if tr is not None and tr.state == OPEN:
                    del self._tracks[(rule.id, gateway_id)]
                    gap = "" if prev is None else f" after {format_duration(at_ns - prev)} without one"
                    changes.append(
                        self._change(
                            "cleared", rule, gateway_id, at_ns, None, late, f"heartbeat at {iso(at_ns)}{gap}"
                        )
                    )
            elif isinstance(rule.when, Backlog):
                key = (rule.id, gateway_id)
                tr = self._tracks.get(key)
                if tr is None:
                    tr = self._tracks[key] = _Track()
                tr.last_ts = at_ns
                if tr.first_ts is None:
                    tr.first_ts = at_ns
                wj = judge_backlog(rule.when, age)
                cj = judge_backlog(rule.clear, age) if isinstance(rule.clear, Backlog) else negate(wj)
                ch = self._step(rule, tr, gateway_id, at_ns, wj, cj, late)
                if ch is not None:
                    changes.append(ch)
        return changes

    # -- silence and offline ------------------------------------------------------------

    def advance(self, now_ns: int) -> list[ConditionChange]:
        """Open the silence and offline conditions that are due at ``now_ns``."""
        self._late_then_see(now_ns)
        changes: list[ConditionChange] = []
        for gid, gw in self._gateways.items():
            for rule in self._offline_rules:
                assert rule.offline_after_ns is not None
                if not rule.scope.matches_gateway(gid) or self.is_open(rule.id, gid):
                    continue
                if now_ns - gw.last_hb_ns >= rule.offline_after_ns:
                    at = gw.last_hb_ns + rule.offline_after_ns
                    self._tracks[(rule.id, gid)] = _Track(state=OPEN, since_ns=at)
                    allowed = format_duration(rule.offline_after_ns)
                    detail = f"no heartbeat since {iso(gw.last_hb_ns)} ({allowed} allowed)"
                    changes.append(self._change("opened", rule, gid, at, None, self._is_late(at), detail))
        for did, dev in self._devices.items():
            silence = [r for r in self._rules.for_profile(dev.profile) if isinstance(r.when, Silence)]
            if not silence:
                continue
            clock = self._silence_clock(dev, now_ns)
            if clock is None:
                continue
            for rule in silence:
                assert rule.silence_after_ns is not None
                if not rule.scope.matches_device(did, dev.site, dev.district) or self.is_open(rule.id, did):
                    continue
                if clock - dev.last_ts >= rule.silence_after_ns:
                    at = dev.last_ts + rule.silence_after_ns
                    self._tracks[(rule.id, did)] = _Track(state=OPEN, since_ns=at)
                    detail = (
                        f"no reading since {iso(dev.last_ts)} "
                        f"({format_duration(rule.silence_after_ns)} allowed)"
                    )
                    changes.append(self._change("opened", rule, did, at, None, self._is_late(at), detail))
        changes.sort(key=lambda c: (c.at_ns, c.rule_id, c.subject))
        return changes

    def _silence_clock(self, dev: _Device, now_ns: int) -> int | None:
        """Up to which instant a device's silence can be judged; None while its gateway is offline."""
        if dev.gateway_id is None:
            return now_ns
        gid = dev.gateway_id
        if any(self.is_open(r.id, gid) for r in self._offline_rules):
            return None
        gw = self._gateways.get(gid)
        if gw is not None and gw.backlog_age_s:
            return min(now_ns, gw.last_hb_ns - int(gw.backlog_age_s * NS_PER_S))
        return now_ns

    # -- state across restarts ------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain JSON types; :meth:`restore` takes it back."""
        tracks = []
        for (rid, subject), tr in sorted(self._tracks.items()):
            tracks.append(
                {
                    "rule": rid,
                    "subject": subject,
                    "state": tr.state,
                    "since_ns": tr.since_ns,
                    "clear_since_ns": tr.clear_since_ns,
                    "last_ts": tr.last_ts,
                    "first_ts": tr.first_ts,
                    "windows": [
                        {"field": f, "span_ns": s, "points": w.to_json(), "sums": w.sums_json()}
                        for (f, s), w in sorted(tr.windows.items())
                    ],
                }
            )
        return {
            "format": SNAPSHOT_FORMAT,
            "watermark_ns": self._watermark,
            "stats": dict(self._stats),
            "tracks": tracks,
            "devices": {
                d: {
                    "profile": v.profile,
                    "last_ts": v.last_ts,
                    "site": v.site,
                    "district": v.district,
                    "gateway_id": v.gateway_id,
                }
                for d, v in sorted(self._devices.items())
            },
            "gateways": {
                g: {"last_hb_ns": v.last_hb_ns, "backlog_age_s": v.backlog_age_s}
                for g, v in sorted(self._gateways.items())
            },
        }

    @classmethod
    def restore(cls, rules: RuleSet, snapshot: Mapping[str, Any], *, lateness_ns: int) -> Evaluator:
        """An evaluator continuing from ``snapshot`` under ``rules`` (which may have changed).

        State of rules that no longer exist is dropped; those that were open are listed in
        ``dropped_open`` so that their cases can be closed. ValueError if the snapshot is malformed.
        """
        ev = cls(rules, lateness_ns=lateness_ns)
        try:
            _restore_into(ev, snapshot)
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not an evaluator snapshot: {e!r}") from e
        return ev


def _restore_into(ev: Evaluator, snap: Mapping[str, Any]) -> None:
    if snap.get("format") not in _FORMATS_READ:
        raise ValueError(
            f"evaluator snapshot format {snap.get('format')!r}, expected one of {sorted(_FORMATS_READ)}"
        )
    wm = snap["watermark_ns"]
    ev._watermark = None if wm is None else int(wm)
    for k, v in snap["stats"].items():
        ev._stats[str(k)] = int(v)
    dropped: list[tuple[str, str]] = []
    for t in snap["tracks"]:
        rid, subject, state = str(t["rule"]), str(t["subject"]), t["state"]
        if state not in _STATES:
            raise ValueError(f"unknown track state {state!r}")
        if rid not in ev._rules:
            if state in (OPEN, CLEARING):
                dropped.append((rid, subject))
            continue
        needed = set(ev._needs[rid])
        windows = {}
        for w in t["windows"]:
            key = (str(w["field"]), int(w["span_ns"]))
            if key in needed:
                windows[key] = Window.from_json(key[1], w["points"], w.get("sums"))
        ev._tracks[(rid, subject)] = _Track(
            state=state,
            since_ns=int(t["since_ns"]),
            clear_since_ns=int(t["clear_since_ns"]),
            last_ts=None if t["last_ts"] is None else int(t["last_ts"]),
            first_ts=None if t["first_ts"] is None else int(t["first_ts"]),
            windows=windows,
        )
    for d, v in snap["devices"].items():
        ev._devices[str(d)] = _Device(
            str(v["profile"]), int(v["last_ts"]), v["site"], v["district"], v["gateway_id"]
        )
    for g, v in snap["gateways"].items():
        age = v["backlog_age_s"]
        ev._gateways[str(g)] = _Gateway(int(v["last_hb_ns"]), None if age is None else float(age))
    ev.dropped_open = tuple(dropped)
