"""Hypothesis against the running service: whatever the query, a 200 or a specific 4xx, never a 5xx.

Expressions are built from the grammar's pieces (paths that exist and do not, operators,
literals of every type, functions, nesting) and also from raw characters; the other options
and the resource paths likewise. A 5xx would be a bug: a 502 in particular would mean the
service built InfluxQL the database refused.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.sta.conftest import StaCloud

pytestmark = pytest.mark.servers

PATHS = [
    "result",
    "phenomenonTime",
    "resultTime",
    "id",
    "name",
    "description",
    "properties/site",
    "properties/profile_version",
    "Datastream/name",
    "Datastream/Thing/name",
    "FeatureOfInterest/feature",
    "Thing/name",
    "Locations/location",
    "location",
    "unitOfMeasurement/symbol",
    "time",
    "nosuch",
    "Datastreams/name",
    "ObservedProperty/name",
    "Sensor/metadata",
    "feature",
]
LITERALS = [
    "1",
    "-3",
    "2.5",
    "1e308",
    "1e999",
    "-0",
    "9223372036854775808",
    "true",
    "false",
    "null",
    "'a'",
    "'it''s'",
    "''",
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00.123456789+02:00",
    "2026-01-01",
    "2026-02-30T00:00:00Z",
    "geography'POLYGON((13 52, 14 52, 14 53, 13 53, 13 52))'",
    "geography'POINT(13.4 52.5)'",
    "geography'junk'",
    "duration'P1D'",
    "12:00:00",
    "('a','b')",
    "(1,2,3)",
]
FUNCTIONS = [
    "startswith",
    "endswith",
    "substringof",
    "contains",
    "tolower",
    "length",
    "round",
    "st_within",
    "geo.intersects",
    "st_contains",
    "geo.distance",
    "year",
    "now",
    "substring",
    "concat",
]
COMPARATORS = ["eq", "ne", "lt", "le", "gt", "ge", "in"]


def expressions() -> st.SearchStrategy[str]:
    atom = st.one_of(st.sampled_from(PATHS), st.sampled_from(LITERALS))
    call = st.builds(
        lambda f, args: f"{f}({', '.join(args)})",
        st.sampled_from(FUNCTIONS),
        st.lists(atom, min_size=0, max_size=3),
    )
    term = st.one_of(atom, call)
    comparison = st.builds(lambda a, op, b: f"{a} {op} {b}", term, st.sampled_from(COMPARATORS), term)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["and", "or"]), inner),
            st.builds(lambda a: f"not ({a})", inner),
            st.builds(lambda a: f"({a})", inner),
            st.builds(
                lambda a, op, b: f"{a} {op} {b}",
                inner,
                st.sampled_from(["add", "sub", "mul", "div", "mod"]),
                inner,
            ),
        )

    structured = st.recursive(st.one_of(comparison, term), extend, max_leaves=8)
    pieces = st.sampled_from([*"()'/,: ._-=$;", " eq ", " and ", "not ", "x", "1", "2026", "result"])
    raw = st.lists(pieces, max_size=15).map("".join)
    return st.one_of(structured, raw, st.text(max_size=30))


def result_conditions() -> st.SearchStrategy[str]:
    """Mostly valid conditions on Observations' results: what reaches InfluxDB as InfluxQL."""
    value = st.one_of(
        st.integers(-(2**63), 2**63 - 1).map(str),
        st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),
        st.sampled_from(["true", "false", "null", "'a'", "'it''s'"]),
    )
    atom = st.one_of(
        st.builds(lambda op, v: f"result {op} {v}", st.sampled_from(COMPARATORS[:-1]), value),
        st.builds(
            lambda vs: f"result in ({', '.join(vs)}{',' if len(vs) == 1 else ''})",
            st.lists(value, min_size=1, max_size=3),
        ),
        st.builds(
            lambda op, t: f"phenomenonTime {op} {t}",
            st.sampled_from(["lt", "le", "gt", "ge", "eq"]),
            st.sampled_from(["2026-01-01T00:00:00Z", "2100-01-01T00:00:00.5+01:00", "1969-12-31T23:59:59Z"]),
        ),
    )
    return st.recursive(
        atom,
        lambda inner: st.one_of(
            st.builds(lambda a, op, b: f"({a}) {op} ({b})", inner, st.sampled_from(["and", "or"]), inner),
            st.builds(lambda a: f"not ({a})", inner),
        ),
        max_leaves=6,
    )


OPTION_VALUES = st.one_of(
    st.sampled_from(
        [
            "1",
            "0",
            "-1",
            "50",
            "100000",
            "x",
            "",
            "true",
            "false",
            "name",
            "name desc",
            "phenomenonTime desc",
            "result",
            "id",
            "Datastreams",
            "Datastreams/Observations",
            "Datastreams($top=2;$expand=Observations($top=1))",
            "Observations($filter=result gt 1)",
            "Thing/name",
            "(",
            "Datastreams(",
            "Locations,Datastreams",
            "1.2",
            "99999999999999999999",
        ]
    ),
    st.text(max_size=20),
)
OPTIONS = st.dictionaries(
    st.sampled_from(
        ["$top", "$skip", "$count", "$orderby", "$select", "$expand", "$skiptoken", "$format", "x"]
    ),
    OPTION_VALUES,
    max_size=4,
)
RESOURCES = st.one_of(
    st.sampled_from(
        [
            "Things",
            "Datastreams",
            "Observations",
            "Locations",
            "HistoricalLocations",
            "Sensors",
            "ObservedProperties",
            "FeaturesOfInterest",
            "Things(1)",
            "Observations(5)/Datastream",
            "Things(1)/Datastreams",
            "Datastreams(1)/Observations",
            "Things(x)",
            "Things(1)/name/$value",
            "Things/$ref",
            "$metadata",
            "Things(99999999999999999999)",
            "Observations(0)",
        ]
    ),
    st.text(alphabet="Things()/$1ref", max_size=20),
)


@pytest.fixture(scope="module")
def client(sta_cloud: StaCloud) -> httpx.Client:
    return sta_cloud.reader()


def check(r: httpx.Response) -> None:
    event(f"HTTP {r.status_code}")
    assert r.status_code < 500 or r.status_code == 501, (r.request.url, r.status_code, r.text[:500])
    if r.status_code >= 400 and r.status_code != 401:
        body = r.json()
        assert isinstance(body.get("message"), str) and body["message"], body


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(
    expressions(),
    st.sampled_from(
        ["Things", "Datastreams", "Observations", "Locations", "FeaturesOfInterest", "HistoricalLocations"]
    ),
)
def test_filters_never_make_a_server_error(client: httpx.Client, text: str, where: str) -> None:
    if where == "Observations":
        # a time range, so that most reach the database rather than the cost check
        text = f"phenomenonTime ge 2026-01-01T00:00:00Z and ({text})"
    check(client.get(f"/sta/v1.1/{where}", params={"$filter": text}))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(result_conditions(), result_conditions(), expressions()))
def test_observation_filters_of_one_datastream_reach_the_database_safely(
    sta_cloud: StaCloud, client: httpx.Client, text: str
) -> None:
    check(
        client.get(
            "/sta/v1.1/Observations",
            params={"$filter": f"Datastream/name eq 'aq-1/pm2_5' and ({text})", "$top": "3"},
        )
    )


@FUZZ
@given(RESOURCES, OPTIONS)
def test_paths_and_options_never_make_a_server_error(
    client: httpx.Client, path: str, options: dict[str, Any]
) -> None:
    check(client.get(f"/sta/v1.1/{path}", params=options))
