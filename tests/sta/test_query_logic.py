"""Pure logic: the query options, $filter in memory and as InfluxQL, and the cost bounds (no servers)."""

from __future__ import annotations

import pytest

from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.opendata.sta.entities import Kind, build_model
from citygate.opendata.sta.errors import BadQueryError
from citygate.opendata.sta.filters import Compiler
from citygate.opendata.sta.observations import (
    ObsFilter,
    Page,
    Window,
    check_cost,
    result_condition,
    split_filter,
)
from citygate.opendata.sta.query import parse_filter, parse_options
from citygate.opendata.sta.service import View
from citygate.opendata.sta.settings import StaSettings

NS = 1_000_000_000
T = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z


def model_view() -> View:
    inv = Inventory().with_devices(
        DeviceRecord(
            device_id="aq-1", profile="air_quality", profile_version=1, site="centre", lat=52.52, lon=13.40
        ),
        DeviceRecord(
            device_id="aq-2", profile="air_quality", profile_version=1, site="west", lat=52.50, lon=13.30
        ),
        DeviceRecord(device_id="n-1", profile="noise", profile_version=1, site="park"),
    )
    model = build_model(inv, ProfileRegistry())
    return View(model, model.profiles)


def names(view: View, kind: Kind, text: str) -> list[str]:
    predicate = Compiler(view).predicate(parse_filter(text), kind)
    return sorted(str(e.props.get("name", e.id)) for e in view.all(kind) if predicate(e))


def test_filters_in_memory() -> None:
    v = model_view()
    assert names(v, Kind.THING, "properties/site eq 'centre' or name eq 'n-1'") == ["aq-1", "n-1"]
    assert names(v, Kind.THING, "not (properties/profile eq 'air_quality')") == ["n-1"]
    assert names(v, Kind.THING, "startswith(name, 'aq') and properties/profile_version ge 1") == [
        "aq-1",
        "aq-2",
    ]
    assert names(v, Kind.THING, "substringof('-2', name)") == ["aq-2"]
    assert names(v, Kind.THING, "properties/district eq null") == ["aq-1", "aq-2", "n-1"]
    assert names(v, Kind.THING, "name in ('aq-2', 'n-1')") == ["aq-2", "n-1"]
    box = "geography'POLYGON((13.35 52.51, 13.45 52.51, 13.45 52.53, 13.35 52.53, 13.35 52.51))'"
    assert names(v, Kind.THING, f"st_within(Locations/location, {box})") == ["aq-1"]
    assert names(v, Kind.LOCATION, f"geo.intersects(location, {box})") == ["aq-1 location"]
    assert names(v, Kind.DATASTREAM, "Thing/name eq 'aq-2' and ObservedProperty/name eq 'pm2_5'") == [
        "aq-2/pm2_5"
    ]
    assert names(v, Kind.DATASTREAM, "unitOfMeasurement/symbol eq 'dB' and Thing/name eq 'n-1'") == [
        "n-1/la10",
        "n-1/la90",
        "n-1/laeq",
        "n-1/lamax",
        "n-1/lamin",
    ]
    assert len(names(v, Kind.HISTORICAL_LOCATION, "time lt 2000-01-01T00:00:00Z")) == 2  # located since 1970
    assert names(v, Kind.HISTORICAL_LOCATION, "time gt 2000-01-01T00:00:00Z") == []
    assert names(v, Kind.THING, "properties/profile_version add 1 eq 2 and length(name) eq 4") == [
        "aq-1",
        "aq-2",
    ]


@pytest.mark.parametrize(
    ("kind", "text", "says"),
    [
        (Kind.THING, "nosuch eq 1", "has no property 'nosuch'"),
        (Kind.THING, "Datastreams/Observations/result gt 1", "cannot reach Observations"),
        (Kind.THING, "year(name) eq 1", "unknown or unsupported function 'year'"),
        (Kind.THING, "startswith(name)", "takes 2 arguments"),
        (Kind.THING, "name eq", "does not parse"),
        (Kind.THING, "Datastreams/any(d: d/name eq 'x')", "any() and all()"),
        (Kind.THING, "name eq 2026-13-01T00:00:00Z", "does not parse"),
        (Kind.THING, "name eq 2026-01-01T00:00:00", "RFC 3339 with a time zone"),
        (Kind.THING, "id eq 99999999999999999999999", "outside the 64-bit range"),
        (Kind.THING, "st_within(Locations/location, geography'LINESTRING(0 0, 1 1)')", "WKT POINT"),
        (Kind.THING, "not (" * 45 + "name eq 'a'" + ")" * 45, "too complex"),
    ],
)
def test_bad_filters_say_what_is_wrong(kind: Kind, text: str, says: str) -> None:
    v = model_view()
    with pytest.raises(BadQueryError) as e:
        names(v, kind, text)
    assert says in e.value.message


@pytest.mark.parametrize(
    ("items", "says"),
    [
        ([("$top", "-1")], "$top must be a whole number"),
        ([("$top", "1"), ("$top", "2")], "$top is given twice"),
        ([("$limit", "1")], "unknown query option '$limit'"),
        ([("$count", "yes")], "$count is true or false"),
        ([("$select", "name,nosuch")], "no property 'nosuch' to $select"),
        ([("$orderby", "name sideways")], "'property [asc|desc]'"),
        ([("$orderby", "Datastreams/name")], "cannot be ordered by"),
        ([("$expand", "Sensors")], "no navigation property 'Sensors' to $expand"),
        ([("$expand", "Datastreams/Observations/FeatureOfInterest")], "nests too deep"),
        ([("$expand", "Datastreams($top=1),Datastreams($top=2)")], "expanded twice with options"),
        ([("$expand", "Datastreams($top=x)")], "$top must be a whole number"),
        ([("$expand", "Datastreams($expand=Observations($skiptoken=1.0))")], "$skiptoken is only"),
        ([("$expand", "Datastreams(")], "unbalanced"),
        ([("$skiptoken", "1.0")], "$skiptoken is only"),
    ],
)
def test_bad_options_say_what_is_wrong(items: list[tuple[str, str]], says: str) -> None:
    with pytest.raises(BadQueryError) as e:
        parse_options(Kind.THING, items, 2)
    assert says in e.value.message


def test_options_nest() -> None:
    opts = parse_options(
        Kind.THING,
        [
            (
                "$expand",
                "Datastreams($select=name;$expand=Observations($top=3;$orderby=phenomenonTime desc)),"
                "Locations",
            ),
            ("$top", "5"),
            ("custom", "ignored"),
        ],
        2,
    )
    assert opts.top == 5 and set(opts.expand) == {"Datastreams", "Locations"}
    ds = opts.expand["Datastreams"]
    assert ds.select == ("name",)
    obs = ds.expand["Observations"]
    assert obs.top == 3 and obs.orderby[0].descending
    merged = parse_options(Kind.THING, [("$expand", "Datastreams/Observations,Datastreams($top=2)")], 2)
    assert merged.expand["Datastreams"].top == 2 and "Observations" in merged.expand["Datastreams"].expand


def test_observation_filters_split_into_time_value_and_datastream() -> None:
    v = model_view()
    f = split_filter(
        parse_filter(
            "phenomenonTime ge 2026-01-01T00:00:00Z and not (resultTime gt 2026-01-01T01:00:00Z) "
            "and (result gt 3.5 or result eq 1) and Datastream/Thing/name eq 'aq-1'"
        ),
        Compiler(v),
    )
    assert f.window == Window(T, T + 3600 * NS + 1)
    assert f.streams is not None and f.result is not None
    assert result_condition(f.result, "pm2_5", "float") == '("pm2_5" > 3.5 OR "pm2_5" = 1)'
    assert split_filter(
        parse_filter("phenomenonTime lt 2026-01-01T00:00:00Z and phenomenonTime gt 2026-01-01T00:00:00Z"),
        Compiler(v),
    ).false


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("phenomenonTime gt 2026-01-01T00:00:00Z or result gt 1", "join such parts with and"),
        ("phenomenonTime ne 2026-01-01T00:00:00Z", "time conditions are"),
        ("phenomenonTime gt 3", "time conditions are"),
        ("result add 1 gt 2", "results are compared"),
        ("startswith(result, 'a')", "results are compared"),
        ("id gt 5", "only as 'id eq <id>'"),
    ],
)
def test_bad_observation_filters(text: str, says: str) -> None:
    with pytest.raises(BadQueryError) as e:
        split_filter(parse_filter(text), Compiler(model_view()))
    assert says in e.value.message


def test_result_conditions_per_field_type() -> None:
    def cond(text: str, ftype: str) -> object:
        return result_condition(parse_filter(text), "f", ftype)

    assert cond("not (result lt 3 and result ge 1)", "float") == '("f" >= 3 OR "f" < 1)'  # no NOT in InfluxQL
    assert cond("result eq true", "bool") == '"f" = true'
    assert cond("not result", "bool") == '"f" != true'
    assert cond("result eq 'it''s'", "string") == "\"f\" = 'it\\'s'"
    assert cond("result in (1, 2)", "int") == '("f" = 1 OR "f" = 2)'
    assert cond("result eq 'x'", "float") is False  # another type: never equal
    assert cond("result ne 'x'", "float") is True
    assert cond("result eq null", "float") is False
    with pytest.raises(BadQueryError, match="compared with eq and ne only"):
        cond("result gt 'a'", "string")


def test_costly_queries_are_refused_with_how_to_narrow() -> None:
    s = StaSettings(max_unbounded_datastreams=16, max_time_range_s=7 * 86400, max_observations=10_000)
    now = T
    unbounded = ObsFilter()
    page = Page(top=100, skip=0, descending=False, count=False)
    # FROST-Server #287: $count over all Observations
    with pytest.raises(BadQueryError, match=r"\$count of Observations needs a time range.*phenomenonTime ge"):
        check_cost(s, 1, unbounded, Page(100, 0, False, True), now, 101)
    # ... the latest per Thing over a long range
    month = ObsFilter(Window(now - 30 * 86400 * NS, None))
    with pytest.raises(
        BadQueryError, match=r"Observations of 500 Datastreams over a time range of 2592000 s"
    ):
        check_cost(s, 500, month, Page(1, 0, True, False), now, 1000)
    # ... an unbounded time range over many Datastreams
    with pytest.raises(BadQueryError, match="over no time range are too costly"):
        check_cost(s, 17, unbounded, page, now, 101)
    with pytest.raises(BadQueryError, match="max_observations"):
        check_cost(s, 1, unbounded, page, now, 10_001)
    with pytest.raises(BadQueryError, match=r"\$skip over Observations"):
        check_cost(s, 1, unbounded, Page(100, 10**9, False, False), now, 101)
    check_cost(s, 16, unbounded, page, now, 16 * 101)  # one Thing's Datastreams: fine
    check_cost(s, 500, ObsFilter(Window(now - 3600 * NS, None)), page, now, 500)
