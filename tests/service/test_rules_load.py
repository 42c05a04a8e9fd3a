"""Rule files: the shipped ones load, and every kind of mistake is refused naming file, rule and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citygate.contract.profiles import ProfileRegistry
from citygate.errors import ConfigError
from citygate.service.conditions import (
    Aggregate,
    Backlog,
    Forecast,
    Threshold,
    compare,
    format_duration,
    overlap,
    parse_condition,
    parse_duration,
)
from citygate.service.rules import RuleError, load_rules, packaged_rules_dir, parse_rule_file

PROFILES = ProfileRegistry()
S = 1_000_000_000
PROFILE_NAMES = (
    "air_quality",
    "noise",
    "parking",
    "street_light",
    "traffic_counter",
    "waste_bin",
    "water_level",
    "weather",
)


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    p = directory / name
    p.write_text(textwrap.dedent(text))
    return p


def load_text(tmp_path: Path, text: str, name: str = "waste_bin.v1.toml"):
    write(tmp_path, name, text)
    return load_rules([tmp_path], PROFILES)


BIN_HEAD = 'profile = "waste_bin"\nversion = 1\n'
RULE = """
[rules.bin_full]
title = "Bin full"
service = "waste"
severity = "warning"
"""


# -- the shipped rules ------------------------------------------------------------------


def test_shipped_rules_load_without_warnings():
    rs = load_rules([packaged_rules_dir()], PROFILES)
    assert len(rs) >= 30
    assert rs.warnings == ()
    assert rs.overrides == ()


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_every_profile_has_shipped_rules_including_silence(profile):
    rs = load_rules([packaged_rules_dir()], PROFILES)
    rules = rs.for_profile(profile)
    assert rules, profile
    assert all(r.id == f"{profile}.{r.name}" for r in rules)
    assert any(r.when.describe() == "silence" for r in rules)
    assert packaged_rules_dir().joinpath(f"{profile}.v1.toml").is_file()


def test_shipped_gateway_rules():
    rs = load_rules([packaged_rules_dir()], PROFILES)
    ids = {r.id for r in rs.gateway_rules()}
    assert {"gateway.offline", "gateway.backlog_old"} <= ids
    offline = rs.get("gateway.offline")
    assert offline is not None and offline.offline_after_ns == 300 * S and offline.profile is None


def test_silence_after_is_intervals_times_expected_interval():
    rs = load_rules([packaged_rules_dir()], PROFILES)
    silent = rs.get("waste_bin.silent")
    assert silent is not None
    assert silent.silence_after_ns == 3 * 3600 * S


def test_rule_error_is_a_config_error():
    assert issubclass(RuleError, ConfigError)


# -- refusals ---------------------------------------------------------------------------


def test_unknown_field_names_file_rule_key_and_the_fields(tmp_path):
    with pytest.raises(RuleError) as ei:
        load_text(tmp_path, BIN_HEAD + RULE + 'when = "fill_levle > 85"\nclear = "fill_level < 20"\n')
    msg = str(ei.value)
    path = str(tmp_path / "waste_bin.v1.toml")
    assert msg == (
        f"{path}: rule 'bin_full': key 'when': field 'fill_levle' is not in profile waste_bin v1 "
        "(fields: fill_level, temperature, tilt_alarm, battery)"
    )


BAD_RULES = [
    # (rule body after the common head, key named, words in the message)
    (RULE + 'when = "fill_level > 85"\ncolour = "red"\n', "colour", "Extra inputs"),
    (RULE.replace('"warning"', '"urgent"') + 'when = "fill_level > 85"\n', "severity", "info"),
    (RULE.replace('"Bin full"', "5") + 'when = "fill_level > 85"\n', "title", "string"),
    (RULE.replace('"waste"', '"Waste Dept"') + 'when = "fill_level > 85"\n', "service", "must match"),
    (RULE + 'when = "tilt_alarm > 1"\n', "when", "bool field"),
    (RULE + 'when = "tilt_alarm == 1"\n', "when", "true or false"),
    (RULE + 'when = "avg(tilt_alarm, 10m) > 0.5"\n', "when", "numeric field"),
    (RULE + 'when = "forecast(tilt_alarm, 1h) > 0.5"\nwindow = "2h"\n', "when", "numeric field"),
    (RULE + 'when = "fill_level > high"\n', "when", "not a value"),
    (RULE + 'when = "fill_level >> 85"\n', "when", "not a value"),
    (RULE + 'when = "fill_level"\n', "when", "cannot parse"),
    (RULE + 'when = "median(fill_level, 1h) > 3"\n', "when", "cannot parse"),
    (RULE + 'when = "avg(fill_level, 10 minutes) > 3"\n', "when", "cannot parse"),
    (RULE + 'when = "avg(fill_level, 10x) > 3"\n', "when", "not a duration"),
    (RULE + 'when = "avg(fill_level, 0s) > 3"\n', "when", "longer than 0s"),
    (RULE + 'when = "avg(fill_level, 8d) > 3"\n', "when", "longer than 7d"),
    (RULE + 'when = "fill_level > 85"\nfor = "10 minutes"\n', "for", "not a duration"),
    (RULE + 'when = "fill_level > 85"\nfor = 600\n', "for", "a duration is a string"),
    (RULE + 'when = "fill_level > 85"\nclear_for = "1w"\n', "clear_for", "not a duration"),
    (RULE + 'when = "fill_level > 85"\nwindow = "2h"\n', "window", "only forecast rules"),
    (RULE + 'when = "forecast(fill_level, 6h) > 95"\n', "window", "needs window"),
    (RULE + 'when = "forecast(fill_level, 6h) == 95"\nwindow = "2h"\n', "when", "predicts a crossing"),
    (RULE + 'when = "silence"\n', "silence_intervals", "needs silence_intervals"),
    (RULE + 'when = "silence"\nsilence_intervals = 0\n', "silence_intervals", "greater than or equal"),
    (RULE + 'when = "silence"\nsilence_intervals = 3\nclear = "fill_level < 3"\n', "clear", "silence rule"),
    (RULE + 'when = "offline"\nafter = "5m"\n', "when", "gateway rule"),
    (RULE + 'when = "backlog_age > 15m"\n', "when", "gateway rule"),
    (RULE + 'when = "fill_level > 85"\nsilence_intervals = 3\n', "silence_intervals", "only silence"),
    (RULE + 'when = "fill_level > 85"\nclear = "fill_level < 90"\n', "clear", "satisfies both"),
    (RULE + 'when = "fill_level >= 85"\nclear = "fill_level <= 85"\n', "clear", "satisfies both"),
    (
        RULE + 'when = "fill_level > 85"\nclear = "battery < 3"\nactive_hours = "25:00-06:00"\n',
        "active_hours",
        "span of local time",
    ),
    (
        RULE + 'when = "fill_level > 85"\nclear = "battery < 3"\nactive_hours = "06:00-06:00"\n',
        "active_hours",
        "the same",
    ),
    (
        RULE + 'when = "fill_level > 85"\nclear_for = "1h"\nscope = { gateways = ["gw1"] }\n',
        "scope",
        "not gateways",
    ),
    (
        RULE + 'when = "fill_level > 85"\nclear_for = "1h"\nscope = { streets = ["x"] }\n',
        "scope.streets",
        "Extra",
    ),
    (RULE + 'when = "fill_level > 85"\nclear_for = "1h"\nscope = { sites = "a" }\n', "scope.sites", "list"),
]


@pytest.mark.parametrize(("body", "key", "words"), BAD_RULES)
def test_bad_rule_is_refused_naming_file_rule_and_key(tmp_path, body, key, words):
    with pytest.raises(RuleError) as ei:
        load_text(tmp_path, BIN_HEAD + body)
    (problem,) = ei.value.problems
    assert problem.startswith(f"{tmp_path / 'waste_bin.v1.toml'}: rule 'bin_full': key '{key}': "), problem
    assert words in problem, problem


def test_string_field_takes_only_equality_with_a_quoted_string(tmp_path):
    head = 'profile = "parking"\nversion = 1\n'
    with pytest.raises(RuleError, match="key 'when': > needs a numeric field; bay_id is a string"):
        load_text(tmp_path, head + RULE + 'when = "bay_id > \\"A\\""\n', "parking.v1.toml")
    rs = load_text(tmp_path, head + RULE + "when = \"bay_id == 'A1'\"\n", "parking.v1.toml")
    rule = rs.get("parking.bin_full")
    assert rule is not None and rule.when == Threshold("bay_id", "==", "A1")


@pytest.mark.parametrize(
    ("head", "key", "words"),
    [
        ('profile = "waste_bn"\nversion = 1\n', "profile", "unknown device profile 'waste_bn'"),
        ('profile = "waste_bin"\nversion = 7\n', "version", "no version 7"),
        ('profile = "waste_bin"\n', "version", "Field required"),
        ('profile = "waste_bin"\nkind = "gateway"\nversion = 1\n', "profile", "either"),
        ("version = 1\n", "profile", "either"),
        ('kind = "gateway"\nversion = 2\n', "version", "version 1"),
        ('kind = "robot"\nversion = 1\n', "kind", "gateway"),
        (BIN_HEAD + 'timezone = "Mars/Olympus"\n', "timezone", "unknown time zone"),
    ],
)
def test_bad_file_head_names_the_key(tmp_path, head, key, words):
    with pytest.raises(RuleError) as ei:
        load_text(tmp_path, head + RULE + 'when = "fill_level > 85"\nclear = "fill_level < 5"\n')
    (problem,) = ei.value.problems
    assert problem.startswith(f"{tmp_path / 'waste_bin.v1.toml'}: key '{key}'"), problem
    assert words in problem


def test_bad_toml_and_bad_rule_name(tmp_path):
    with pytest.raises(RuleError, match="not valid TOML"):
        load_text(tmp_path, "profile = \n")
    with pytest.raises(RuleError, match=r"rule 'Bin-Full': key 'rules.Bin-Full': rule names must match"):
        load_text(tmp_path, BIN_HEAD + RULE.replace("bin_full", '"Bin-Full"') + 'when = "fill_level > 85"\n')


def test_gateway_file_refuses_device_conditions_and_device_scope(tmp_path):
    head = 'kind = "gateway"\nversion = 1\n'
    with pytest.raises(RuleError, match="key 'when': silence is a device rule"):
        load_text(tmp_path, head + RULE + 'when = "silence"\nsilence_intervals = 3\n', "gateway.v1.toml")
    with pytest.raises(RuleError, match="key 'after': an offline rule needs after"):
        load_text(tmp_path, head + RULE + 'when = "offline"\n', "gateway.v1.toml")
    with pytest.raises(RuleError, match="key 'scope': a gateway rule's scope takes only 'gateways'"):
        load_text(
            tmp_path,
            head + RULE + 'when = "offline"\nafter = "5m"\nscope = { sites = ["a"] }\n',
            "gateway.v1.toml",
        )
    with pytest.raises(RuleError, match="key 'when': gateway rules use"):
        load_text(tmp_path, head + RULE + 'when = "fill_level > 3"\n', "gateway.v1.toml")


def test_every_problem_of_every_file_is_reported_at_once(tmp_path):
    write(tmp_path, "a.toml", BIN_HEAD + RULE + 'when = "fill_levle > 85"\n')
    write(
        tmp_path,
        "b.toml",
        'profile = "noise"\nversion = 1\n'
        + RULE
        + 'when = "laeq > 85"\nfor = "soon"\n'
        + RULE.replace("bin_full", "other")
        + 'when = "laeq > 85"\ncolour = 1\n',
    )
    with pytest.raises(RuleError) as ei:
        load_rules([tmp_path], PROFILES)
    probs = ei.value.problems
    assert len(probs) == 3
    assert any("a.toml: rule 'bin_full': key 'when'" in p for p in probs)
    assert any("b.toml: rule 'bin_full': key 'for'" in p for p in probs)
    assert any("b.toml: rule 'other': key 'colour'" in p for p in probs)
    assert str(ei.value).startswith("3 problems in the rules:\n")


def test_missing_directory_is_an_error(tmp_path):
    with pytest.raises(RuleError, match="does not exist"):
        load_rules([tmp_path / "nope"], PROFILES)


# -- layering ---------------------------------------------------------------------------


def test_city_directory_overrides_a_shipped_rule_of_the_same_id(tmp_path):
    city = tmp_path / "city"
    write(
        city,
        "bins.toml",
        BIN_HEAD
        + RULE
        + 'when = "fill_level > 70"\nclear = "fill_level < 10"\n'
        + RULE.replace("bin_full", "bin_half")
        + 'when = "fill_level > 50"\nclear = "fill_level < 10"\n',
    )
    shipped = load_rules([packaged_rules_dir()], PROFILES)
    rs = load_rules([packaged_rules_dir(), city], PROFILES)
    rule = rs.get("waste_bin.bin_full")
    assert rule is not None
    assert rule.when == Threshold("fill_level", ">", 70)
    assert rule.source == str(city / "bins.toml")
    assert "waste_bin.bin_half" in rs
    assert len(rs) == len(shipped) + 1
    assert [(rid, new) for rid, _, new in rs.overrides] == [("waste_bin.bin_full", str(city / "bins.toml"))]


def test_same_id_twice_in_one_directory_is_an_error(tmp_path):
    body = BIN_HEAD + RULE + 'when = "fill_level > 70"\nclear = "fill_level < 10"\n'
    write(tmp_path, "a.toml", body)
    write(tmp_path, "b.toml", body)
    with pytest.raises(
        RuleError, match=r"b.toml: rule 'bin_full': id 'waste_bin.bin_full' is already defined in"
    ):
        load_rules([tmp_path], PROFILES)


def test_a_single_file_can_be_loaded(tmp_path):
    p = write(tmp_path, "x.toml", BIN_HEAD + RULE + 'when = "tilt_alarm == true"\n')
    rs = load_rules([p], PROFILES)
    assert [r.id for r in rs] == ["waste_bin.bin_full"]


def test_hovering_numeric_rule_without_hysteresis_warns(tmp_path):
    rs = load_text(tmp_path, BIN_HEAD + RULE + 'when = "fill_level > 85"\n')
    (w,) = rs.warnings
    assert "rule 'bin_full'" in w and "clear" in w
    rs = load_text(tmp_path, BIN_HEAD + RULE + 'when = "fill_level > 85"\nclear_for = "1h"\n')
    assert rs.warnings == ()
    rs = load_text(tmp_path, BIN_HEAD + RULE + 'when = "tilt_alarm == true"\n')
    assert rs.warnings == ()


def test_parse_rule_file_with_defaults(tmp_path):
    rules = parse_rule_file(
        (BIN_HEAD + RULE + 'when = "forecast(fill_level, 6h) > 95"\nwindow = "2h"\nfor = "1h30m"\n').encode(),
        source="mem.toml",
        profiles=PROFILES,
    )
    (r,) = rules
    assert r.when == Forecast("fill_level", 6 * 3600 * S, ">", 95.0, window_ns=2 * 3600 * S)
    assert r.for_ns == 5400 * S and r.clear is None and r.clear_for_ns == 0
    assert r.scope.matches_device("any", None, None)


def test_active_hours_wrap_midnight_in_the_time_zone(tmp_path):
    body = (
        'profile = "noise"\nversion = 1\ntimezone = "Europe/Amsterdam"\n'
        + RULE
        + 'when = "laeq > 55"\nclear = "laeq < 50"\nactive_hours = "22:00-06:00"\n'
    )
    rs = load_text(tmp_path, body, "noise.v1.toml")
    rule = rs.get("noise.bin_full")
    assert rule is not None and rule.active_hours is not None
    # 2024-01-15 in Amsterdam is UTC+1: 21:30 UTC is 22:30 local, 05:30 UTC is 06:30 local.
    from datetime import UTC, datetime

    def ns(h: int, m: int) -> int:
        return int(datetime(2024, 1, 15, h, m, tzinfo=UTC).timestamp()) * S

    assert rule.active_hours.contains(ns(21, 30))
    assert rule.active_hours.contains(ns(4, 59))
    assert not rule.active_hours.contains(ns(5, 30))
    assert not rule.active_hours.contains(ns(20, 30))


def test_load_rules_timezone_is_the_default_for_files(tmp_path):
    write(
        tmp_path,
        "n.toml",
        'profile = "noise"\nversion = 1\n'
        + RULE
        + 'when = "laeq > 55"\nclear = "laeq < 50"\nactive_hours = "22:00-06:00"\n',
    )
    rule = load_rules([tmp_path], PROFILES, timezone="America/New_York").get("noise.bin_full")
    assert rule is not None and rule.active_hours is not None
    assert str(rule.active_hours.tz) == "America/New_York"
    with pytest.raises(RuleError, match="unknown time zone"):
        load_rules([tmp_path], PROFILES, timezone="Nowhere/Town")


# -- the expression language ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cond"),
    [
        ("fill_level > 85", Threshold("fill_level", ">", 85)),
        ("  battery<=15.5 ", Threshold("battery", "<=", 15.5)),
        ("tilt_alarm == true", Threshold("tilt_alarm", "==", True)),
        ('bay_id != "A1"', Threshold("bay_id", "!=", "A1")),
        ("level > -1.5e0", Threshold("level", ">", -1.5)),
        ("avg(laeq, 10m) > 55", Aggregate("avg", "laeq", 600 * S, ">", 55.0)),
        ("count( vehicles ,1h) < 6", Aggregate("count", "vehicles", 3600 * S, "<", 6.0)),
        ("forecast(fill_level, 6h) >= 95", Forecast("fill_level", 6 * 3600 * S, ">=", 95.0)),
        ("backlog_age > 15m", Backlog(">", 900.0)),
    ],
)
def test_parse_condition(text, cond):
    assert parse_condition(text) == cond


@pytest.mark.parametrize(
    ("text", "ns"),
    [("30s", 30 * S), ("10m", 600 * S), ("2h", 7200 * S), ("1d", 86400 * S), ("1h30m", 5400 * S), ("0s", 0)],
)
def test_parse_duration(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "10", "m", "1m1h", "-5m", "1.5h", "10 m", "1w"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**7))
def test_format_duration_round_trips(secs):
    assert parse_duration(format_duration(secs * S)) == secs * S


@pytest.mark.parametrize(
    ("when", "clear", "both"),
    [
        ("x > 85", "x < 20", False),
        ("x > 85", "x <= 85", False),
        ("x > 85", "x < 90", True),
        ("x >= 85", "x <= 85", True),
        ("x > 85", "x > 90", True),
        ("x < 10", "x > 20", False),
        ("x > 85", "y < 90", False),
        ("avg(x, 10m) > 5", "avg(x, 10m) < 6", True),
        ("avg(x, 10m) > 5", "avg(x, 5m) < 6", False),
        ("backlog_age > 15m", "backlog_age < 5m", False),
        ("backlog_age > 15m", "backlog_age < 20m", True),
    ],
)
def test_overlap(when, clear, both):
    v = overlap(parse_condition(when), parse_condition(clear))
    assert (v is not None) == both
    if v is not None:  # the witness really satisfies both
        for cond in (parse_condition(when), parse_condition(clear)):
            limit = cond.seconds if isinstance(cond, Backlog) else cond.value
            assert compare(cond.op, v, limit), (cond, v)
