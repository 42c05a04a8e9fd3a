"""The evaluator: pure, in device time. Each test feeds readings/heartbeats and checks the changes."""

from __future__ import annotations

import gc
import json
import random
import textwrap
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citygate.contract.profiles import ProfileRegistry
from citygate.service.evaluator import ConditionChange, Evaluator, Observation
from citygate.service.rules import RuleSet, load_rules, packaged_rules_dir, parse_rule_file
from citygate.service.windows_agg import MAX_POINTS, Window

PROFILES = ProfileRegistry()
S = 1_000_000_000
M = 60 * S
H = 3600 * S
T0 = int(datetime(2024, 3, 4, 12, 0, tzinfo=UTC).timestamp()) * S


def rules(text: str, *, gateway: str | None = None) -> RuleSet:
    out = parse_rule_file(textwrap.dedent(text).encode(), source="test.toml", profiles=PROFILES)
    if gateway is not None:
        out += parse_rule_file(textwrap.dedent(gateway).encode(), source="gw.toml", profiles=PROFILES)
    return RuleSet(out)


def rule(name: str, body: str, profile: str = "waste_bin") -> str:
    return (
        f'profile = "{profile}"\nversion = 1\n[rules.{name}]\ntitle = "t"\nservice = "waste"\n'
        f'severity = "warning"\n{textwrap.dedent(body)}'
    )


def obs(ts: int, dev: str = "bin1", profile: str = "waste_bin", gw: str | None = None, **fields):
    return Observation(device_id=dev, profile=profile, ts_ns=ts, fields=fields, gateway_id=gw, site="s1")


def feed(ev: Evaluator, series) -> list[ConditionChange]:
    out: list[ConditionChange] = []
    for o in series:
        out += ev.observe(o)
    return out


def kinds(changes) -> list[tuple[str, str, int]]:
    return [(c.kind, c.rule_id, c.at_ns) for c in changes]


def essence(c: ConditionChange) -> tuple:
    """Everything but ``late``."""
    return (c.kind, c.rule_id, c.subject, c.at_ns, c.value, c.detail, c.forecast_at_ns)


FULL = rule("full", 'when = "fill_level > 85"\nclear = "fill_level < 20"\n')


# -- thresholds, for, clear, hysteresis -------------------------------------------------


def test_threshold_opens_at_the_reading_and_clears_on_the_clear_condition():
    ev = Evaluator(rules(FULL), lateness_ns=0)
    series = [obs(T0 + i * H, fill_level=v) for i, v in enumerate([50.0, 86.0, 90.0, 50.0, 19.0, 30.0])]
    changes = feed(ev, series)
    assert kinds(changes) == [("opened", "waste_bin.full", T0 + H), ("cleared", "waste_bin.full", T0 + 4 * H)]
    opened, cleared = changes
    assert opened.value == 86.0 and opened.detail == "fill_level 86 > 85"
    assert opened.service == "waste" and opened.severity == "warning" and opened.subject == "bin1"
    assert not opened.late and cleared.detail == "fill_level 19 < 20"


def test_for_needs_the_condition_to_hold_continuously_in_device_time():
    ev = Evaluator(
        rules(rule("full", 'when = "fill_level > 85"\nclear = "fill_level < 20"\nfor = "10m"\n')),
        lateness_ns=0,
    )
    # 86 at 0, 4, 8 min; dips at 9; holds from 10 to 20: opens at 20 (10 min after 10).
    vals = {0: 86, 4: 86, 8: 86, 9: 80, 10: 90, 15: 91, 19: 92, 20: 93, 21: 94}
    changes = feed(ev, [obs(T0 + m * M, fill_level=float(v)) for m, v in vals.items()])
    assert kinds(changes) == [("opened", "waste_bin.full", T0 + 20 * M)]
    assert changes[0].detail == "fill_level 93 > 85 for 10m"


def test_values_oscillating_around_the_threshold_open_one_case_not_a_chain():
    ev = Evaluator(rules(FULL), lateness_ns=0)
    rng = random.Random(7)
    series = [obs(T0 + i * M, fill_level=85.0 + rng.choice([-3.0, -0.5, 0.5, 3.0])) for i in range(500)]
    changes = feed(ev, series)
    assert [c.kind for c in changes] == ["opened"]


def test_default_clear_with_clear_for_also_stops_flapping():
    ev = Evaluator(rules(rule("full", 'when = "fill_level > 85"\nclear_for = "30m"\n')), lateness_ns=0)
    series = [obs(T0 + i * M, fill_level=84.0 if i % 2 else 86.0) for i in range(200)]
    series += [obs(T0 + (200 + i) * M, fill_level=50.0) for i in range(40)]
    changes = feed(ev, series)
    # i = 199 is the last oscillation (84): the clear run starts there, 30 minutes before 229.
    assert kinds(changes) == [("opened", "waste_bin.full", T0), ("cleared", "waste_bin.full", T0 + 229 * M)]
    assert changes[1].detail == "no longer: fill_level 50 > 85 for 30m"


def test_clear_for_broken_by_a_relapse_starts_over():
    ev = Evaluator(
        rules(rule("full", 'when = "fill_level > 85"\nclear = "fill_level < 20"\nclear_for = "2h"\n')),
        lateness_ns=0,
    )
    vals = [90, 10, 10, 50, 10, 10, 10]
    changes = feed(ev, [obs(T0 + i * H, fill_level=float(v)) for i, v in enumerate(vals)])
    assert kinds(changes) == [("opened", "waste_bin.full", T0), ("cleared", "waste_bin.full", T0 + 6 * H)]


def test_bool_field_and_missing_fields():
    ev = Evaluator(rules(rule("tilt", 'when = "tilt_alarm == true"\n')), lateness_ns=0)
    changes = feed(
        ev,
        [
            obs(T0, tilt_alarm=False),
            obs(T0 + H, fill_level=3.0),
            obs(T0 + 2 * H, tilt_alarm=True),
            obs(T0 + 3 * H, battery=3.0),
            obs(T0 + 4 * H, tilt_alarm=False),
        ],
    )
    assert kinds(changes) == [
        ("opened", "waste_bin.tilt", T0 + 2 * H),
        ("cleared", "waste_bin.tilt", T0 + 4 * H),
    ]
    assert changes[0].value is None


def test_scope_restricts_by_district_and_device():
    text = rule(
        "full", 'when = "fill_level > 85"\nclear = "fill_level < 20"\nscope = { districts = ["north"] }\n'
    )
    ev = Evaluator(rules(text), lateness_ns=0)
    north = Observation("b1", "waste_bin", T0, {"fill_level": 90.0}, district="north")
    south = Observation("b2", "waste_bin", T0, {"fill_level": 90.0}, district="south")
    assert [c.subject for c in ev.observe(north) + ev.observe(south)] == ["b1"]
    other_profile = Observation("n1", "noise", T0, {"laeq": 90.0})
    assert ev.observe(other_profile) == []


# -- order and lateness -----------------------------------------------------------------


def test_older_readings_never_re_trigger_transitions_but_are_counted():
    ev = Evaluator(rules(FULL), lateness_ns=0)
    assert kinds(feed(ev, [obs(T0 + 10 * H, fill_level=90.0)])) == [("opened", "waste_bin.full", T0 + 10 * H)]
    # An old low reading would clear, an old duplicate would re-open: neither does.
    assert feed(ev, [obs(T0 + 5 * H, fill_level=5.0), obs(T0 + 10 * H, fill_level=90.0)]) == []
    assert ev.stats["out_of_order"] == 2
    assert ev.is_open("waste_bin.full", "bin1")


def test_late_is_set_when_the_reading_is_older_than_watermark_minus_lateness():
    ev = Evaluator(rules(FULL), lateness_ns=10 * M)
    ev.observe(obs(T0 + 2 * H, dev="other", fill_level=50.0))  # the watermark: T0 + 2h
    (a,) = ev.observe(obs(T0 + 2 * H - 5 * M, dev="b1", fill_level=90.0))
    assert not a.late  # within the allowance
    (b,) = ev.observe(obs(T0, dev="b2", fill_level=90.0))
    assert b.late
    assert ev.stats["late_changes"] == 1


def test_advance_moves_the_watermark():
    ev = Evaluator(rules(FULL), lateness_ns=M)
    ev.advance(T0 + H)
    (c,) = ev.observe(obs(T0, fill_level=90.0))
    assert c.late


def _day_of_bins(devices: int = 4) -> list[Observation]:
    """A day of 5-minute readings: bins fill, get emptied, one spikes briefly (opened+cleared)."""
    rng = random.Random(11)
    out = []
    for d in range(devices):
        level = rng.uniform(0, 30)
        for i in range(288):
            ts = T0 + i * 5 * M + d * S
            level += rng.uniform(0, 1.2)
            if level > 100 or (d == 0 and i == 150):
                level = 5.0
            out.append(obs(ts, dev=f"bin{d}", gw="gw1" if d < 2 else "gw2", fill_level=round(level, 1)))
    out.sort(key=lambda o: o.ts_ns)
    return out


DAY_RULES = (
    rule("full", 'when = "fill_level > 85"\nclear = "fill_level < 20"\nfor = "10m"\n')
    + '[rules.filling]\ntitle = "t"\nservice = "waste"\nseverity = "info"\n'
    'when = "forecast(fill_level, 2h) > 95"\nwindow = "1h"\nclear = "fill_level < 20"\n'
    '[rules.avg_high]\ntitle = "t"\nservice = "waste"\nseverity = "info"\n'
    'when = "avg(fill_level, 30m) > 60"\nclear = "avg(fill_level, 30m) < 30"\n'
)


def test_backlog_replayed_fast_after_an_outage_gives_the_real_time_changes_marked_late():
    real = Evaluator(rules(DAY_RULES), lateness_ns=5 * M)
    day = _day_of_bins()
    live = []
    for o in day:
        live += real.observe(o)
        live += real.advance(o.ts_ns)
    # Replay: gw1's devices are cut off for the whole day and drain at the end, in device time.
    replay = Evaluator(rules(DAY_RULES), lateness_ns=5 * M)
    behind = [o for o in day if o.gateway_id == "gw1"]
    later = []
    for o in day:
        if o.gateway_id != "gw1":
            later += replay.observe(o)
    drained = []
    for o in behind:
        drained += replay.observe(o)
    by_subject_live = sorted(essence(c) for c in live if c.subject in ("bin0", "bin1"))
    assert by_subject_live, "the day must produce changes for the cut-off devices"
    assert sorted(essence(c) for c in drained) == by_subject_live
    old = [c for c in drained if c.at_ns < day[-1].ts_ns - 5 * M]
    assert old and all(c.late for c in old)
    assert not any(c.late for c in live)
    assert sorted(essence(c) for c in later) == sorted(
        essence(c) for c in live if c.subject in ("bin2", "bin3")
    )
    # The emptied-and-refilled bin0 opened and cleared inside the backlog: a pair, both late.
    pair = [c for c in drained if c.subject == "bin0" and c.rule_id == "waste_bin.full"]
    assert [c.kind for c in pair][:2] == ["opened", "cleared"]
    assert pair[0].late and pair[1].late
    assert pair[0].at_ns < T0 + 150 * 5 * M <= pair[1].at_ns
    assert replay.is_open("waste_bin.full", "bin0") == (len(pair) % 2 == 1)


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False))
def test_interleaving_between_devices_does_not_change_the_outcome(rnd):
    day = _day_of_bins(3)[:300]
    ref = Evaluator(rules(DAY_RULES), lateness_ns=10 * 24 * H)
    expected = sorted(essence(c) for c in feed(ref, day))
    # Shuffle across devices, keep each device's own order.
    per_dev: dict[str, list[Observation]] = {}
    for o in day:
        per_dev.setdefault(o.device_id, []).append(o)
    queues = list(per_dev.values())
    mixed = []
    while any(queues):
        q = rnd.choice([q for q in queues if q])
        mixed.append(q.pop(0))
    ev = Evaluator(rules(DAY_RULES), lateness_ns=10 * 24 * H)
    assert sorted(essence(c) for c in feed(ev, mixed)) == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=80),
    st.lists(st.integers(min_value=1, max_value=3 * H // S), min_size=80, max_size=80),
)
def test_changes_alternate_opened_cleared_per_rule_and_subject(values, gaps):
    ev = Evaluator(rules(DAY_RULES), lateness_ns=0)
    ts = T0
    series = []
    for v, g in zip(values, gaps, strict=False):
        ts += g * S
        series.append(obs(ts, fill_level=v))
    changes = feed(ev, series)
    for rid in ("waste_bin.full", "waste_bin.filling", "waste_bin.avg_high"):
        seq = [c.kind for c in changes if c.rule_id == rid]
        assert seq == ["opened", "cleared"] * (len(seq) // 2) + (["opened"] if len(seq) % 2 else [])


# -- aggregates and windows -------------------------------------------------------------


NOISE_AVG = rule("loud", 'when = "avg(laeq, 10m) > 55"\nclear = "avg(laeq, 10m) < 50"\n', "noise")


def test_avg_is_judged_once_the_window_is_warm_and_over_the_window_only():
    ev = Evaluator(rules(NOISE_AVG), lateness_ns=0)
    series = [obs(T0 + i * M, dev="n1", profile="noise", laeq=70.0 if i < 3 else 52.0) for i in range(30)]
    changes = feed(ev, series)
    # Minutes 0-2 are loud but the window is not warm until minute 10, when the mean of
    # minutes 1..10 is (2*70 + 8*52)/10 = 55.6 > 55; at minute 11 it is 53.8: no clear (not < 50).
    assert kinds(changes) == [("opened", "noise.loud", T0 + 10 * M)]
    assert changes[0].detail == "avg(laeq, 10m) 55.6 > 55"
    assert changes[0].value == pytest.approx(55.6)


def test_avg_clears_when_the_window_mean_drops_below_clear():
    ev = Evaluator(rules(NOISE_AVG), lateness_ns=0)
    series = [obs(T0 + i * M, dev="n1", profile="noise", laeq=60.0 if i < 20 else 40.0) for i in range(40)]
    changes = feed(ev, series)
    # Mean < 50 once at least 6 of the 10 minutes in (t-10m, t] are 40: minute 25.
    assert kinds(changes) == [("opened", "noise.loud", T0 + 10 * M), ("cleared", "noise.loud", T0 + 25 * M)]


def test_duplicate_readings_do_not_skew_an_average():
    ev = Evaluator(rules(NOISE_AVG), lateness_ns=0)
    base = [obs(T0 + i * M, dev="n1", profile="noise", laeq=50.0) for i in range(10)]
    feed(ev, base)
    # Redelivered loud-looking duplicates of minute 9 ... and the real minute 10.
    feed(ev, [obs(T0 + 9 * M, dev="n1", profile="noise", laeq=99.0)] * 5)
    assert ev.observe(obs(T0 + 10 * M, dev="n1", profile="noise", laeq=54.0)) == []


def test_count_rule_sees_missing_readings():
    text = rule(
        "missing",
        'when = "count(vehicles, 1h) < 6"\nclear = "count(vehicles, 1h) >= 10"\n',
        "traffic_counter",
    )
    ev = Evaluator(rules(text), lateness_ns=0)
    every5 = [obs(T0 + i * 5 * M, dev="t1", profile="traffic_counter", vehicles=3) for i in range(13)]
    sparse = [
        obs(T0 + 65 * M + i * 20 * M, dev="t1", profile="traffic_counter", vehicles=3) for i in range(4)
    ]
    changes = feed(ev, every5 + sparse)
    assert [c.kind for c in changes] == ["opened"]
    assert changes[0].value is not None and changes[0].value < 6


def test_window_is_bounded_by_span_and_point_cap():
    w = Window(10 * S)
    for i in range(100):
        w.add(T0 + i * S, float(i))
    assert [t for t, _ in w.pairs()] == [T0 + i * S for i in range(90, 100)]
    assert not w.add(T0 + 50 * S, 1.0)  # older than the window
    w = Window(10**6 * S)
    for i in range(MAX_POINTS + 10):
        w.add(T0 + i, 1.0)
    assert len(w) == MAX_POINTS and w.truncated == 10


def test_a_window_holds_nothing_the_garbage_collector_walks():
    """Points in typed arrays: a few million of them (thousands of devices' windows) are not
    objects every full collection of the cloud's process has to visit."""
    w = Window(10**6 * S)
    for i in range(1000):
        w.add(T0 + i * S, float(i))
    w.add(T0 + 500 * S + 1, 1.0)  # and one inserted in the middle
    assert len(w) == 1001
    # What a collection visits through the window: its containers' referents (a deque's
    # would be its 1,001 tuples; an array's is its type).
    visited = [x for r in gc.get_referents(w) if gc.is_tracked(r) for x in gc.get_referents(r)]
    assert len(visited) < 10


@pytest.mark.parametrize(
    "points",
    [
        {"ts": [T0 + 2, T0 + 1], "values": [1.0, 2.0]},  # out of order
        {"ts": [T0, T0], "values": [1.0, 2.0]},  # a duplicate
        {"ts": [T0], "values": [1.0, 2.0]},  # not equally long
        {"ts": [1.5], "values": [1.0]},  # a time that is not an integer
        {"ts": [T0], "values": ["x"]},
        {"ts": [T0]},
        "points",
    ],
)
def test_a_malformed_window_is_refused(points):
    with pytest.raises(ValueError):
        Window.from_json(10 * S, points)


def test_a_window_restored_is_held_to_its_span():
    w = Window.from_json(10 * S, {"ts": [T0 + i * S for i in range(20)], "values": [1.0] * 20})
    assert [t for t, _ in w.pairs()] == [T0 + i * S for i in range(10, 20)]
    assert w.aggregate("count") == 10.0


def test_a_format_1_snapshot_restores_to_the_same_state():
    """Stores saved before the windows became arrays hold [[ts, value], ...] per window."""
    ev = Evaluator(rules(FILLING), lateness_ns=0)
    feed(ev, [obs(T0 + i * H // 4, fill_level=40.0 + i) for i in range(20)])
    now = ev.snapshot()
    old = json.loads(json.dumps(now))
    old["format"] = 1
    for t in old["tracks"]:
        for w in t["windows"]:
            w["points"] = [list(p) for p in zip(w["points"]["ts"], w["points"]["values"], strict=True)]
    assert Evaluator.restore(rules(FILLING), old, lateness_ns=0).snapshot() == json.loads(json.dumps(now))


def _direct_fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Slope per hour and mean value, computed from the points alone (the reference)."""
    n = len(points)
    xs = [(t - points[0][0]) / 3.6e12 for t, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return sxy / sum((x - mx) ** 2 for x in xs), my


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 20_000), st.floats(-1e4, 1e4, allow_nan=False)),
        min_size=3,
        max_size=400,
    )
)
def test_window_running_sums_match_the_points_held(steps):
    """Average and trend come from running sums; after any mix of in-order and late points,
    trims and a snapshot round trip they agree with a computation over the points held."""
    w = Window(600 * S)
    for dt, v in steps:
        w.add(T0 + dt * S // 10, v)
    saved = json.loads(json.dumps([w.to_json(), w.sums_json()]))
    w = Window.from_json(w.span_ns, *saved)
    pts = w.pairs()
    avg = w.aggregate("avg")
    assert avg == pytest.approx(sum(v for _, v in pts) / len(pts), rel=1e-9, abs=1e-6)
    fit = w.trend()
    if len({t for t, _ in pts}) >= 2 and fit is not None:
        slope, my = _direct_fit(pts)
        assert fit[0] * 3.6e12 == pytest.approx(slope, rel=1e-6, abs=1e-6)
        assert fit[2] == pytest.approx(my, rel=1e-9, abs=1e-6)


# -- forecasts --------------------------------------------------------------------------


FILLING = rule(
    "filling", 'when = "forecast(fill_level, 6h) > 95"\nwindow = "3h"\nclear = "fill_level < 20"\n'
)


def test_forecast_opens_when_the_trend_crosses_within_the_horizon():
    ev = Evaluator(rules(FILLING), lateness_ns=0)
    # +5 %/h from 40 %: 95 % at 11h. Warm at 3h (55 %, 8h ahead: no); 5h: 65 %, 6h ahead: yes.
    changes = feed(ev, [obs(T0 + i * H, fill_level=40.0 + 5 * i) for i in range(8)])
    assert kinds(changes) == [("opened", "waste_bin.filling", T0 + 5 * H)]
    assert changes[0].forecast_at_ns == T0 + 11 * H
    assert changes[0].value == 65.0
    assert "predicted > 95 at 2024-03-04T23:00:00Z" in changes[0].detail


def test_forecast_with_a_falling_or_flat_trend_does_not_open():
    ev = Evaluator(rules(FILLING), lateness_ns=0)
    assert feed(ev, [obs(T0 + i * H, fill_level=90.0 - i) for i in range(10)]) == []
    assert feed(ev, [obs(T0 + (10 + i) * H, fill_level=80.0) for i in range(10)]) == []


def test_forecast_already_past_the_threshold_counts_as_crossing_now():
    ev = Evaluator(rules(FILLING), lateness_ns=0)
    changes = feed(ev, [obs(T0 + i * H, fill_level=97.0 - 0.1 * i) for i in range(5)])
    assert kinds(changes) == [("opened", "waste_bin.filling", T0 + 3 * H)]
    assert changes[0].forecast_at_ns == T0 + 3 * H


# -- silence, gateways ------------------------------------------------------------------


SILENT = rule("silent", 'when = "silence"\nsilence_intervals = 3\n')
GATEWAY = """\
kind = "gateway"
version = 1
[rules.offline]
title = "t"
service = "field-ops"
severity = "critical"
when = "offline"
after = "5m"
[rules.backlog]
title = "t"
service = "field-ops"
severity = "warning"
when = "backlog_age > 15m"
clear = "backlog_age < 5m"
"""


def test_silence_opens_at_last_reading_plus_allowance_and_clears_on_a_reading():
    ev = Evaluator(rules(SILENT), lateness_ns=H)
    ev.observe(obs(T0))
    assert ev.advance(T0 + 3 * H - S) == []
    (opened,) = ev.advance(T0 + 3 * H + 10 * M)
    assert (opened.kind, opened.at_ns, opened.rule_id, opened.late) == (
        "opened",
        T0 + 3 * H,
        "waste_bin.silent",
        False,
    )
    assert ev.advance(T0 + 5 * H) == []  # once
    (cleared,) = ev.observe(obs(T0 + 5 * H, fill_level=3.0))
    assert (cleared.kind, cleared.at_ns) == ("cleared", T0 + 5 * H)


def test_gateway_offline_holds_back_silence_of_its_devices_one_outage_one_case():
    ev = Evaluator(rules(SILENT, gateway=GATEWAY), lateness_ns=H)
    for d in range(50):
        ev.observe(obs(T0, dev=f"bin{d}", gw="gw1", fill_level=10.0))
    ev.observe(obs(T0, dev="lonely", gw="gw2", fill_level=10.0))
    ev.heartbeat("gw1", T0, None)
    ev.heartbeat("gw2", T0, None)
    for k in range(1, 13):  # gw2 keeps beating, gw1 is gone
        ev.heartbeat("gw2", T0 + k * 30 * M, None)
    changes = ev.advance(T0 + 6 * H)
    assert sorted((c.rule_id, c.subject) for c in changes) == [
        ("gateway.offline", "gw1"),
        ("waste_bin.silent", "lonely"),
    ]
    # gw1 comes back with a 6 h backlog: offline clears, silence is still judged only up to T0.
    back = ev.heartbeat("gw1", T0 + 6 * H + M, backlog_age_s=6 * 3600.0)
    assert [(c.kind, c.rule_id, c.at_ns) for c in back] == [
        ("opened", "gateway.backlog", T0 + 6 * H + M),
        ("cleared", "gateway.offline", T0 + 6 * H + M),
    ]
    assert ev.advance(T0 + 6 * H + 2 * M) == []
    # The backlog drains; the devices' silence never opened.
    for d in range(50):
        assert ev.observe(obs(T0 + H, dev=f"bin{d}", gw="gw1", fill_level=12.0)) == []
    ev.heartbeat("gw1", T0 + 6 * H + 3 * M, None)
    # Now fully delivered: a device that really stopped at T0 + 1h is silent from T0 + 4h.
    silent = ev.advance(T0 + 6 * H + 4 * M)
    assert len(silent) == 50 and {c.at_ns for c in silent} == {T0 + 4 * H}
    assert all(c.late for c in silent)


def test_backlog_rule_with_hysteresis():
    ev = Evaluator(rules(SILENT, gateway=GATEWAY), lateness_ns=0)
    ages = [0, 600, 1000, 800, 400, 200, 100]
    changes = []
    for i, a in enumerate(ages):
        changes += ev.heartbeat("gw1", T0 + i * M, float(a))
    assert kinds(changes) == [
        ("opened", "gateway.backlog", T0 + 2 * M),
        ("cleared", "gateway.backlog", T0 + 5 * M),
    ]
    assert changes[0].value == 1000.0 and changes[0].subject == "gw1"
    assert ev.heartbeat("gw1", T0, 5000.0) == [] and ev.stats["out_of_order"] == 1


# -- active hours -----------------------------------------------------------------------


def test_active_hours_open_only_at_night_and_clear_when_the_night_ends():
    text = (
        'profile = "noise"\nversion = 1\ntimezone = "UTC"\n[rules.night]\ntitle = "t"\nservice = "noise"\n'
        'severity = "warning"\nwhen = "laeq > 55"\nclear = "laeq < 50"\nactive_hours = "22:00-06:00"\n'
    )
    ev = Evaluator(rules(text), lateness_ns=0)
    day = T0 - 12 * H  # 2024-03-04 00:00 UTC
    series = [obs(day + h * H, dev="n1", profile="noise", laeq=70.0) for h in range(24)]
    changes = feed(ev, series)
    assert kinds(changes) == [
        ("opened", "noise.night", day),
        ("cleared", "noise.night", day + 6 * H),
        ("opened", "noise.night", day + 22 * H),
    ]
    assert "outside active hours 22:00-06:00" in changes[1].detail


# -- snapshot and restore ---------------------------------------------------------------


ALL_RULES = DAY_RULES + SILENT.split("\n", 2)[2]


def _events(n: int):
    day = _day_of_bins(3)[:n]
    evts = []
    for i, o in enumerate(day):
        evts.append(("obs", o))
        if i % 7 == 0:
            evts.append(("hb", ("gw1", o.ts_ns, float(i % 5) * 100)))
        if i % 11 == 0:
            evts.append(("adv", o.ts_ns + 2 * H))
    return evts


def _run(ev: Evaluator, evts) -> list[ConditionChange]:
    out: list[ConditionChange] = []
    for kind, arg in evts:
        if kind == "obs":
            out += ev.observe(arg)
        elif kind == "hb":
            out += ev.heartbeat(*arg)
        else:
            out += ev.advance(arg)
    return out


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=400))
def test_snapshot_and_restore_continue_exactly(cut):
    rs = rules(ALL_RULES, gateway=GATEWAY)
    evts = _events(340)
    ref = _run(Evaluator(rs, lateness_ns=10 * M), evts)
    first = Evaluator(rs, lateness_ns=10 * M)
    out = _run(first, evts[:cut])
    snap = json.loads(json.dumps(first.snapshot()))  # survives a trip through JSON
    second = Evaluator.restore(rs, snap, lateness_ns=10 * M)
    out += _run(second, evts[cut:])
    assert out == ref
    assert ref, "the run must produce changes"


def test_restore_under_changed_rules_reports_open_conditions_of_removed_rules():
    ev = Evaluator(rules(FULL + SILENT.split("\n", 2)[2]), lateness_ns=0)
    ev.observe(obs(T0, fill_level=90.0))
    snap = ev.snapshot()
    other = Evaluator.restore(rules(SILENT), snap, lateness_ns=0)
    assert other.dropped_open == (("waste_bin.full", "bin1"),)
    assert not other.is_open("waste_bin.full", "bin1")
    # Devices survive: silence still works from the restored last reading.
    (c,) = other.advance(T0 + 3 * H)
    assert (c.rule_id, c.at_ns) == ("waste_bin.silent", T0 + 3 * H)


@pytest.mark.parametrize(
    "snap",
    [
        {},
        {"format": 99},
        {"format": 1, "watermark_ns": None},
        {"format": 1, "watermark_ns": None, "stats": {}, "tracks": [{"rule": "x", "state": "weird"}]},
    ],
)
def test_restore_refuses_a_malformed_snapshot(snap):
    with pytest.raises(ValueError):
        Evaluator.restore(rules(FULL), snap, lateness_ns=0)


def test_shipped_rules_run_over_a_day_of_every_profile_without_error():
    rs = load_rules([packaged_rules_dir()], PROFILES)
    ev = Evaluator(rs, lateness_ns=5 * M)
    rng = random.Random(3)
    out = []
    for p in PROFILES:
        for i in range(0, 24 * 3600, p.expected_interval_s * 4):
            fields: dict[str, float | int | bool | str] = {}
            for name, f in p.fields.items():
                if f.type == "float":
                    fields[name] = rng.uniform(f.min or 0.0, f.max or 100.0)
                elif f.type == "int":
                    fields[name] = rng.randint(int(f.min or 0), int(f.max or 100))
                elif f.type == "bool":
                    fields[name] = rng.random() < 0.1
                else:
                    fields[name] = "A1"
            out += ev.observe(obs(T0 + i * S, dev=f"{p.name}-1", profile=p.name, gw="gw1", **fields))
    out += ev.heartbeat("gw1", T0 + 30 * H, None)
    out += ev.advance(T0 + 30 * H)
    assert out and all(c.rule_id in rs for c in out)
    silent = {c.rule_id for c in out if c.kind == "opened" and c.rule_id.endswith(".silent")}
    assert silent == {f"{p.name}.silent" for p in PROFILES}
    json.dumps(ev.snapshot())
