"""Query parameters and content negotiation of the NGSI-LD API (no servers)."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from citygate.opendata.ngsi.params import MAX_LIMIT, negotiate, parse_entity, parse_query
from citygate.opendata.ngsi.problems import BAD_REQUEST_DATA, NgsiProblem


def test_defaults() -> None:
    q = parse_query(QueryParams("type=AirQualityObserved"))
    assert q.selection.types == ("AirQualityObserved",)
    assert (q.limit, q.offset, q.count, q.selection.form, q.ids, q.selection.attrs) == (
        20,
        0,
        False,
        "normalized",
        None,
        None,
    )


def test_lists_forms_and_paging() -> None:
    q = parse_query(
        QueryParams(
            "type=AirQualityObserved,https://smartdatamodels.org/dataModel.Weather/WeatherObserved"
            "&id=urn:ngsi-ld:AirQualityObserved:a,urn:ngsi-ld:AirQualityObserved:a"
            "&attrs=pm25,no2&options=keyValues&limit=5&offset=10&count=true"
        )
    )
    assert q.selection.types == (
        "AirQualityObserved",
        "https://smartdatamodels.org/dataModel.Weather/WeatherObserved",
    )
    assert q.ids == ("urn:ngsi-ld:AirQualityObserved:a",)  # each once
    assert q.selection.attrs == {"pm25", "no2"}
    assert (q.selection.form, q.limit, q.offset, q.count) == ("keyValues", 5, 10, True)
    assert parse_query(QueryParams("type=X&format=simplified")).selection.form == "keyValues"
    assert parse_query(QueryParams("type=X&options=concise")).selection.form == "concise"
    assert parse_query(QueryParams("type=X&limit=0&count=true")).limit == 0


@pytest.mark.parametrize(
    "query",
    [
        "",  # no type, id or attrs
        "limit=5",
        "type=A&q=pm25>10",  # not implemented: refused, not ignored
        "type=A&geoQ=x",
        "type=A&idPattern=.*",
        "type=A&type=B",  # twice
        "type=A,,B",
        "type=A%20B",
        "type=" + ",".join(f"T{i}" for i in range(101)),
        "id=not-a-uri",
        "id=urn:a:b,",
        f"type=A&limit={MAX_LIMIT + 1}",
        "type=A&limit=-1",
        "type=A&limit=1.5",
        "type=A&limit=%D9%A3",  # an Arabic-Indic digit is not a number here
        "type=A&limit=0",  # only with count=true
        "type=A&offset=99999999999",
        "type=A&count=yes",
        "type=A&options=keyValues,normalized",
        "type=A&options=sysAttrs",
        "type=A&options=whatever",
        "type=A&format=xml",
        "type=A&options=keyValues&format=concise",
        "type=A&attrs=https://example.org/x",  # attrs are names
    ],
)
def test_bad_queries_are_400_bad_request_data(query: str) -> None:
    with pytest.raises(NgsiProblem) as e:
        parse_query(QueryParams(query))
    assert (e.value.status, e.value.type) == (400, BAD_REQUEST_DATA)
    assert e.value.detail


def test_an_entity_takes_no_paging() -> None:
    assert parse_entity(QueryParams("options=keyValues&attrs=pm25")).form == "keyValues"
    with pytest.raises(NgsiProblem):
        parse_entity(QueryParams("limit=5"))


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        (None, "json"),
        ("", "json"),
        ("application/json", "json"),
        ("application/ld+json", "ld"),
        ("*/*", "json"),
        ("application/ld+json;q=0.9, application/json;q=0.5", "ld"),
        ("application/json;q=0.1, application/ld+json", "ld"),
        ("text/html, application/*;q=0.2", "json"),
    ],
)
def test_negotiation(accept: str | None, media: str) -> None:
    assert negotiate(accept) == media


@pytest.mark.parametrize("accept", ["text/html", "application/geo+json", "application/json;q=0"])
def test_unacceptable_is_406(accept: str) -> None:
    with pytest.raises(NgsiProblem) as e:
        negotiate(accept)
    assert e.value.status == 406
