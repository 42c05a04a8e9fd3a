"""The read-only NGSI-LD API: access per caller, representations, paging, refusals, rate limit, cache."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from citygate.opendata.ngsi.entity import entity_id
from citygate.opendata.ngsi.zones import zone_id
from citygate.servers.process import free_port
from tests.cloud.conftest import CloudPki, RunningCloud
from tests.ngsi.conftest import MARKET, Fleet, opendata, start_fleet_cloud, write_fleet

pytestmark = pytest.mark.servers

E = "/ngsi-ld/v1/entities"
ENV_CONTEXT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld"
)
ETSI = "https://uri.etsi.org/ngsi-ld/errors/"


def assert_problem(resp: httpx.Response, status: int, kind: str | None) -> dict[str, Any]:
    """A ProblemDetails answer (NGSI-LD clause 5.5.3): application/json, type, title, detail."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    doc: dict[str, Any] = resp.json()
    assert doc["type"] == (ETSI + kind if kind else "about:blank")
    assert doc["title"] and doc["detail"] and doc["status"] == status
    return doc


def ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [d["id"] for d in resp.json()]


def test_anonymous_callers_see_only_the_public_profiles(ngsi_fleet: Fleet) -> None:
    anon, reader = ngsi_fleet.anonymous(), ngsi_fleet.reader()
    assert len(ids(anon.get(E, params={"type": "AirQualityObserved"}))) == 2
    assert len(ids(anon.get(E, params={"type": "OnStreetParking"}))) == 1
    assert ids(anon.get(E, params={"type": "NoiseLevelObserved"})) == []  # absent, not refused
    noise = entity_id("NoiseLevelObserved", "noise-full")
    assert_problem(anon.get(f"{E}/{noise}"), 404, "ResourceNotFound")
    assert len(ids(reader.get(E, params={"type": "NoiseLevelObserved"}))) == 2
    assert reader.get(f"{E}/{noise}").json()["id"] == noise
    assert "RateLimit-Limit" in anon.get(E, params={"type": "WeatherObserved"}).headers
    assert "RateLimit-Limit" not in reader.get(E, params={"type": "WeatherObserved"}).headers


def test_json_has_the_context_in_a_link_header_json_ld_in_the_body(ngsi_fleet: Fleet) -> None:
    c = ngsi_fleet.reader()
    aq = entity_id("AirQualityObserved", "air_quality-full")
    plain = c.get(f"{E}/{aq}")
    assert plain.headers["content-type"] == "application/json"
    assert plain.headers["link"] == (
        f'<{ENV_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    )
    assert "@context" not in plain.json()
    assert plain.json()["pm25"]["type"] == "Property"  # normalized by default
    ld = c.get(f"{E}/{aq}", params={"options": "keyValues"}, headers={"Accept": "application/ld+json"})
    assert ld.headers["content-type"] == "application/ld+json"
    assert "link" not in ld.headers
    assert ld.json()["@context"][0] == ENV_CONTEXT
    assert ld.json()["pm25"] == 12.5
    head = c.head(f"{E}/{aq}")
    assert (head.status_code, head.content, head.headers["link"]) == (200, b"", plain.headers["link"])
    concise = c.get(f"{E}/{aq}", params={"format": "concise"}).json()
    assert concise["typeofLocation"] == "outdoor"
    assert concise["pm25"]["unitCode"] == "GQ"


def test_paging_count_ids_attrs_and_expanded_types(ngsi_fleet: Fleet) -> None:
    c = ngsi_fleet.reader()
    env = "AirQualityObserved,NoiseLevelObserved,FloodMonitoring"  # one context: Environment
    every = ids(c.get(E, params={"type": env, "limit": 100}))
    assert len(every) == 6
    assert every == sorted(every, key=lambda i: (i.split(":")[2], i))
    page = c.get(E, params={"type": env, "limit": 2, "offset": 3, "count": "true"})
    assert ids(page) == every[3:5]
    assert page.headers["ngsild-results-count"] == "6"
    only_count = c.get(E, params={"type": env, "limit": 0, "count": "true"})
    assert ids(only_count) == [] and only_count.headers["ngsild-results-count"] == "6"
    wanted = [entity_id("FloodMonitoring", "water_level-sig"), entity_id("AirQualityObserved", "nothing")]
    assert ids(c.get(E, params={"id": ",".join(wanted)})) == wanted[:1]
    with_attr = c.get(E, params={"type": env, "attrs": "currentLevel", "options": "keyValues"}).json()
    assert {d["type"] for d in with_attr} == {"FloodMonitoring"}
    assert all(set(d) == {"id", "type", "currentLevel"} for d in with_attr)
    expanded = "https://smartdatamodels.org/dataModel.Environment/FloodMonitoring"
    assert len(ids(c.get(E, params={"type": expanded}))) == 2
    assert ids(c.get(E, params={"type": "NoSuchModel"})) == []
    zone = zone_id(("site", MARKET))
    assert c.get(f"{E}/{zone}").json()["totalSpotNumber"]["value"] == 6


def test_types_from_two_contexts_need_json_ld(ngsi_fleet: Fleet) -> None:
    c = ngsi_fleet.reader()
    both = {"type": "AirQualityObserved,WeatherObserved"}
    doc = assert_problem(c.get(E, params=both), 400, "BadRequestData")
    assert "application/ld+json" in doc["detail"]
    ld = c.get(E, params=both, headers={"Accept": "application/ld+json"})
    assert {d["@context"][0] for d in ld.json()} == {
        ENV_CONTEXT,
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Weather/master/context.jsonld",
    }


BAD: list[tuple[str, str, dict[str, str], int, str | None]] = [
    ("GET", E, {}, 400, "BadRequestData"),
    ("GET", E + "?type=A&q=pm25>10", {}, 400, "BadRequestData"),
    ("GET", E + "?type=A&limit=5000", {}, 400, "BadRequestData"),
    ("GET", E + "?type=A&limit=abc", {}, 400, "BadRequestData"),
    ("GET", E + "?id=nope", {}, 400, "BadRequestData"),
    ("GET", E + "?type=A&options=sysAttrs", {}, 400, "BadRequestData"),
    ("GET", E + "/not-a-uri", {}, 400, "BadRequestData"),
    ("GET", E + "/urn:ngsi-ld:AirQualityObserved:nothing", {}, 404, "ResourceNotFound"),
    ("GET", E + "/urn:ngsi-ld:NoSuchType:x", {}, 404, "ResourceNotFound"),
    ("GET", E + "/urn:example:x", {}, 404, "ResourceNotFound"),
    ("GET", E + "/urn:ngsi-ld:AirQualityObserved:air_quality-full?limit=3", {}, 400, "BadRequestData"),
    (
        "GET",
        E + "/urn:ngsi-ld:AirQualityObserved:air_quality-full?attrs=nothere",
        {},
        404,
        "ResourceNotFound",
    ),
    (
        "GET",
        E + "/urn:ngsi-ld:AirQualityObserved:air_quality-full?type=WeatherObserved",
        {},
        404,
        "ResourceNotFound",
    ),
    ("GET", E + "?type=AirQualityObserved", {"Accept": "text/html"}, 406, None),
    ("GET", E + "?type=AirQualityObserved", {"NGSILD-Tenant": "other"}, 404, "NonexistentTenant"),
    (
        "GET",
        E + "?type=AirQualityObserved",
        {"Authorization": "Bearer wrong-token-wrong-token-1234"},
        401,
        None,
    ),
    ("GET", E + "/", {}, 404, "ResourceNotFound"),
    ("GET", "/ngsi-ld/v1/types", {}, 404, "ResourceNotFound"),
    ("GET", "/ngsi-ld/v1/subscriptions/x", {}, 404, "ResourceNotFound"),
    ("POST", E, {"Content-Type": "application/json"}, 405, None),
    ("DELETE", E + "/urn:ngsi-ld:AirQualityObserved:air_quality-full", {}, 405, None),
    ("OPTIONS", E, {}, 405, None),
    ("PATCH", "/ngsi-ld/v1/entityOperations/upsert", {}, 404, "ResourceNotFound"),
]


@pytest.mark.parametrize(("method", "path", "headers", "status", "kind"), BAD)
def test_every_bad_request_is_a_specific_4xx_problem(
    ngsi_fleet: Fleet, method: str, path: str, headers: dict[str, str], status: int, kind: str | None
) -> None:
    resp = ngsi_fleet.anonymous().request(
        method, path, headers=headers, content=b"{}" if method != "GET" else None
    )
    doc = assert_problem(resp, status, kind)
    if status == 405:
        assert resp.headers["allow"] == "GET, HEAD"
    if status == 401:
        assert resp.headers["www-authenticate"] == "Bearer"
    assert "Traceback" not in doc["detail"]


def test_the_database_sees_one_query_per_type_whatever_the_traffic(
    cloud_pki: CloudPki, influxdb: Any, tmp_path: Path
) -> None:
    fleet = start_fleet_cloud(cloud_pki, influxdb, tmp_path)
    try:
        clients = [fleet.anonymous() for _ in range(8)]

        def ask(n: int) -> int:
            entity_type = ("AirQualityObserved", "WeatherObserved")[n % 2]
            return clients[n % 8].get(E, params={"type": entity_type}).status_code

        with ThreadPoolExecutor(8) as pool:  # concurrent first requests: single flight
            assert set(pool.map(ask, range(80))) == {200}
        exporter = fleet.cloud.app.state.ngsi.exporter
        assert exporter.computed("AirQualityObserved") == 1
        assert exporter.computed("WeatherObserved") == 1
        assert exporter.computed("NoiseLevelObserved") == 0  # never asked for, never queried
    finally:
        fleet.cloud.stop()


def test_anonymous_callers_are_rate_limited_per_address(
    cloud_factory: Callable[..., RunningCloud], tmp_path: Path
) -> None:
    od = opendata(public_rate_per_minute=1, public_burst=2)
    rc = cloud_factory(
        opendata=od,
        inventory=write_fleet(tmp_path / "fleet.json"),
        influx_url=f"http://127.0.0.1:{free_port()}",
    )
    anon = rc.client(rc.cloud_pki.gateway())
    bad_token = rc.client(rc.cloud_pki.gateway(), token="wrong-token-wrong-token-1234")
    first = anon.get(E, params={"type": "NoSuchModel"})
    assert first.status_code == 200
    assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("2", "1")
    assert_problem(bad_token.get(E, params={"type": "NoSuchModel"}), 401, None)  # takes a token too
    refused = anon.get(E, params={"type": "NoSuchModel"})
    assert_problem(refused, 429, None)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-remaining"] == "0"
    assert rc.reader().get(E, params={"type": "NoSuchModel"}).status_code == 200  # readers are not limited


def test_a_database_that_does_not_answer_is_503_with_retry_after(
    cloud_factory: Callable[..., RunningCloud], tmp_path: Path
) -> None:
    rc = cloud_factory(
        opendata=opendata(),
        inventory=write_fleet(tmp_path / "fleet.json"),
        influx_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        influx_timeout_s=1.0,
    )
    resp = rc.reader().get(E, params={"type": "AirQualityObserved"})
    assert_problem(resp, 503, None)
    assert resp.headers["retry-after"] == "7"


def test_off_by_default(cloud_factory: Callable[..., RunningCloud]) -> None:
    rc = cloud_factory()
    doc = assert_problem(rc.reader().get(E, params={"type": "AirQualityObserved"}), 404, "ResourceNotFound")
    assert "enabled" in doc["detail"]
