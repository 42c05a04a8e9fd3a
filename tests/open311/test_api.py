"""The GeoReport v2 API against a real cloud with the service layer (SQLite store).

Every resource in both formats; the JSON judged by the spec's field names, the XML by the
standard library's parser on our own output. Reports become cases (and join open ones
nearby), sensor cases are service requests too, the system's own cases are not.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from citygate.service.case_model import Condition
from tests.cloud.service_cloud import condition, seed
from tests.open311.conftest import CENTRE, Open311Cloud

pytestmark = pytest.mark.servers

V2 = "/open311/v2"
# GET requests' fields, in the spec's order, and ours after them.
REQUEST_FIELDS = [
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
    "extended_attributes",
]
W3C = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_spots = iter(range(1, 10_000))


def spot() -> dict[str, str]:
    """A place of its own (about 1 km from every other one): reports there join nothing else."""
    i = next(_spots)
    return {
        "lat": f"{CENTRE[0] - 0.1 + (i % 20) * 0.01:.5f}",
        "long": f"{CENTRE[1] - 0.2 + (i // 20) * 0.01:.5f}",
    }


def xml(r: httpx.Response) -> ET.Element:
    assert r.headers["content-type"] == "text/xml; charset=utf-8", r.headers
    assert r.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(r.content)


def ok_json(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    return r.json()


def as_text(v: Any) -> str:
    return "" if v is None else ("true" if v is True else "false" if v is False else str(v))


def same_document(element: ET.Element, doc: Any) -> None:
    """The XML element holds what the JSON document holds (the Spark convention)."""
    if isinstance(doc, dict):
        assert [c.tag for c in element] == list(doc), (element.tag, [c.tag for c in element], list(doc))
        for child, value in zip(element, doc.values(), strict=True):
            same_document(child, value)
    elif isinstance(doc, list):
        assert len(element) == len(doc)
        for child, value in zip(element, doc, strict=True):
            same_document(child, value)
    elif isinstance(doc, float):
        assert float(element.text or "nan") == doc
    else:
        assert (element.text or "") == as_text(doc), (element.tag, element.text, doc)


def test_discovery_names_this_endpoint_and_both_formats(o311: Open311Cloud) -> None:
    c = o311.client()
    doc = ok_json(c.get(f"{V2}/discovery.json"))
    assert list(doc) == ["changeset", "contact", "key_service", "endpoints"]
    assert doc["contact"] == "311@city.example" and W3C.fullmatch(doc["changeset"])
    (ep,) = doc["endpoints"]
    assert ep["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert ep["url"] == f"{o311.cloud.url}{V2}" and ep["type"] == "production"
    assert ep["formats"] == ["text/xml", "application/json"]
    root = xml(c.get(f"{V2}/discovery.xml"))
    assert root.tag == "discovery"
    same_document(root, doc)


def test_services_and_their_definitions(o311: Open311Cloud) -> None:
    c = o311.client()
    services = ok_json(c.get(f"{V2}/services.json"))
    assert [s["service_code"] for s in services] == ["pothole", "bin-full"]
    pothole = services[0]
    assert list(pothole) == [
        "service_code",
        "service_name",
        "description",
        "metadata",
        "type",
        "keywords",
        "group",
    ]
    assert (
        pothole["metadata"] is True and pothole["type"] == "realtime" and pothole["keywords"] == "road, hole"
    )
    assert services[1]["metadata"] is False and services[1]["type"] == "batch"
    root = xml(c.get(f"{V2}/services.xml"))
    assert root.tag == "services" and [s.tag for s in root] == ["service", "service"]
    same_document(root, services)

    definition = ok_json(c.get(f"{V2}/services/pothole.json"))
    assert definition["service_code"] == "pothole"
    depth, lane, hazards = definition["attributes"]
    assert list(depth) == [
        "variable",
        "code",
        "datatype",
        "required",
        "datatype_description",
        "order",
        "description",
        "values",
    ]
    assert (depth["code"], depth["datatype"], depth["required"], depth["order"]) == (
        "depth",
        "number",
        True,
        1,
    )
    assert lane["values"] == [{"key": "road", "name": "Road"}, {"key": "path", "name": "Cycle path"}]
    assert hazards["datatype"] == "multivaluelist"
    root = xml(c.get(f"{V2}/services/pothole.xml"))
    assert root.tag == "service_definition"
    assert [v.findtext("key") for v in root.iterfind("attributes/attribute/values/value")] == [
        "road",
        "path",
        "water",
        "glass",
    ]
    same_document(root, definition)
    r = c.get(f"{V2}/services/graffiti.xml")
    assert r.status_code == 404 and xml(r).findtext("error/code") == "404"


def test_a_report_becomes_a_case_and_a_service_request(o311: Open311Cloud) -> None:
    where = spot()
    r = o311.report(
        **where,
        description="Deep, near the kerb",
        address_string="Unter den Linden 1",
        media_url="https://photos.example/p/1.jpg",
        **{"attribute[lane]": "path", "attribute[hazards][]": "water"},
    )
    (answer,) = ok_json(r)
    assert answer == {
        "service_request_id": answer["service_request_id"],
        "service_notice": "Inspected within 2 working days",
        "account_id": None,
    }
    case_id = int(answer["service_request_id"])
    case = o311.store.get(case_id)
    assert case is not None
    assert (case["source"], case["rule_id"], case["service"], case["status"]) == (
        "citizen",
        "citizen.pothole",
        "roads",
        "new",
    )
    assert (case["latitude"], case["longitude"]) == (float(where["lat"]), float(where["long"]))

    (req,) = ok_json(o311.client().get(f"{V2}/requests/{case_id}.json"))
    assert list(req) == REQUEST_FIELDS
    assert req["service_request_id"] == str(case_id) and req["status"] == "open"
    assert (req["service_code"], req["service_name"]) == ("pothole", "Pothole")
    assert req["description"] == "Deep, near the kerb" and req["address"] == "Unter den Linden 1"
    assert req["media_url"] == "https://photos.example/p/1.jpg"
    assert req["agency_responsible"] == "Roads department" and req["status_notes"] is None
    assert (req["lat"], req["long"]) == (float(where["lat"]), float(where["long"]))
    assert W3C.fullmatch(req["requested_datetime"]) and W3C.fullmatch(req["updated_datetime"])
    assert W3C.fullmatch(req["expected_datetime"])  # the roads target: resolve within 2 days
    assert req["extended_attributes"] == {"source": "citizen", "occurrences": 1, "severity": "warning"}

    root = xml(o311.client().get(f"{V2}/requests/{case_id}.xml"))
    assert root.tag == "service_requests" and [e.tag for e in root] == ["request"]
    same_document(root, [req])


def test_a_report_posted_to_requests_xml_is_answered_in_xml(o311: Open311Cloud) -> None:
    r = o311.post("xml", service_code="pothole", **spot(), **{"attribute[depth]": "3"})
    assert r.status_code == 200, r.text
    root = xml(r)
    assert root.tag == "service_requests"
    (req,) = root
    assert req.tag == "request" and req.findtext("service_request_id", "").isdigit()
    assert req.find("account_id") is not None


def test_a_second_report_nearby_gets_the_same_request(o311: Open311Cloud) -> None:
    where = spot()
    (first,) = ok_json(o311.report(**where))
    nearby = {"lat": f"{float(where['lat']) + 0.0001:.5f}", "long": where["long"]}  # 11 m north
    (second,) = ok_json(o311.report(**nearby))
    (elsewhere,) = ok_json(o311.report(**spot()))
    assert second["service_request_id"] == first["service_request_id"]
    assert elsewhere["service_request_id"] != first["service_request_id"]
    (req,) = ok_json(o311.client().get(f"{V2}/requests/{first['service_request_id']}.json"))
    assert req["extended_attributes"]["occurrences"] == 2
    actions = [h["action"] for h in o311.store.history(int(first["service_request_id"]))]
    assert actions == ["opened", "recurred"]


def test_a_batch_service_answers_a_token_that_resolves_to_the_request(o311: Open311Cloud) -> None:
    (answer,) = ok_json(o311.post(service_code="bin-full", address_string="Market square 3"))
    assert set(answer) == {"token", "service_notice", "account_id"}  # no service_request_id with a token
    c = o311.client()
    (found,) = ok_json(c.get(f"{V2}/tokens/{answer['token']}.json"))
    assert found["token"] == answer["token"] and found["service_request_id"].isdigit()
    (req,) = ok_json(c.get(f"{V2}/requests/{found['service_request_id']}.json"))
    assert req["service_code"] == "bin-full" and req["address"] == "Market square 3" and req["lat"] is None
    root = xml(c.get(f"{V2}/tokens/{answer['token']}.xml"))
    assert root.findtext("request/service_request_id") == found["service_request_id"]
    for token in ("A" * 22, "short", "not*a*token*at*all"):
        r = c.get(f"{V2}/tokens/{token}.json")
        assert r.status_code == 404 and r.json() == [{"code": 404, "description": "token was not found"}]


def test_sensor_cases_are_service_requests_and_the_systems_own_are_not(o311: Open311Cloud) -> None:
    waste, flood, system = seed(
        o311.store,
        condition("bin-77", title="Bin full"),
        condition("gauge-1", rule_id="water_level.high", service="flood", title="High water"),
        Condition(
            kind="opened",
            rule_id="system.delivery_expired",
            subject="workorders",
            service="waste",
            severity="critical",
            title="Deliveries expired",
            at_ns=time.time_ns(),
            source="system",
        ),
    )
    c = o311.client()
    (req,) = ok_json(c.get(f"{V2}/requests/{waste}.json"))
    assert req["service_code"] == "bin-full" and req["service_name"] == "Bin overflowing"
    assert req["extended_attributes"]["source"] == "sensor"
    assert req["description"] == "Bin full: fill_level 91 > 85" and req["address"] == "market square"
    for hidden in (flood, system):  # flood feeds no Open311 service; system cases are the operators'
        assert c.get(f"{V2}/requests/{hidden}.json").status_code == 404
    listed = ok_json(c.get(f"{V2}/requests.json", params={"service_request_id": f"{waste},{flood},{system}"}))
    assert [r["service_request_id"] for r in listed] == [str(waste)]


def test_notes_and_updates_follow_the_case_without_the_operators_words(o311: Open311Cloud) -> None:
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    (answer,) = ok_json(o311.report(**spot()))
    case_id = answer["service_request_id"]
    op = o311.cloud.operator()
    for action in ({"action": "acknowledge", "note": "crew Bravo, call Jo on 0170"}, {"action": "resolve"}):
        r = op.post(f"/v1/cases/{case_id}/actions", json=action)
        assert r.status_code == 200, r.text
    c = o311.client()
    (req,) = ok_json(c.get(f"{V2}/requests/{case_id}.json", params={"extensions": "true"}))
    assert req["status"] == "closed" and req["expected_datetime"] is None
    assert list(req)[-1] == "notes"
    assert [(n["type"], n["summary"]) for n in req["notes"]] == [
        ("opened", "Request opened"),
        ("activity", "Acknowledged"),
        ("closed", "Resolved"),
    ]
    assert all(list(n) == ["datetime", "summary", "type", "description"] for n in req["notes"])
    assert all(W3C.fullmatch(n["datetime"]) and n["description"] is None for n in req["notes"])
    assert "Bravo" not in c.get(f"{V2}/requests/{case_id}.xml", params={"extensions": "true"}).text
    same_document(xml(c.get(f"{V2}/requests/{case_id}.xml", params={"extensions": "true"})), [req])

    updates = ok_json(c.get(f"{V2}/servicerequestupdates.json", params={"start_date": start}))
    mine = [u for u in updates if u["service_request_id"] == case_id]
    assert [(u["status"], u["external_status_code"], u["description"]) for u in mine] == [
        ("open", "new", "Request opened"),
        ("open", "acknowledged", "Acknowledged"),
        ("closed", "resolved", "Resolved"),
    ]
    assert list(mine[0]) == [
        "update_id",
        "service_request_id",
        "status",
        "updated_datetime",
        "description",
        "media_url",
        "external_status_code",
    ]
    assert "Bravo" not in str(updates)
    root = xml(c.get(f"{V2}/servicerequestupdates.xml", params={"start_date": start}))
    assert root.tag == "service_request_updates" and {e.tag for e in root} == {"request_update"}
    same_document(root, updates)
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    assert ok_json(c.get(f"{V2}/servicerequestupdates.json", params={"start_date": later})) == []


def test_a_merged_request_says_which_one_it_duplicates(o311: Open311Cloud) -> None:
    (a,) = ok_json(o311.report(**spot()))
    (b,) = ok_json(o311.report(**spot()))
    r = o311.cloud.operator().post(
        f"/v1/cases/{b['service_request_id']}/merge", json={"into": int(a["service_request_id"])}
    )
    assert r.status_code == 200, r.text
    (req,) = ok_json(
        o311.client().get(f"{V2}/requests/{b['service_request_id']}.json", params={"extensions": "true"})
    )
    assert (
        req["status"] == "closed" and req["status_notes"] == f"Duplicate of request {a['service_request_id']}"
    )
    assert req["notes"][-1]["summary"] == f"Duplicate of request {a['service_request_id']}"


def test_filters_dates_and_pages(open311_factory: Any) -> None:
    o = open311_factory()
    ids = [ok_json(o.report(**spot()))[0]["service_request_id"] for _ in range(3)]
    (token,) = ok_json(o.post(service_code="bin-full", address_string="Market square"))
    (bin_id,) = ok_json(o.client().get(f"{V2}/tokens/{token['token']}.json"))
    assert o.cloud.operator().post(f"/v1/cases/{ids[0]}/actions", json={"action": "close"}).status_code == 200
    c = o.client()

    def listed(**params: str) -> list[str]:
        return [r["service_request_id"] for r in ok_json(c.get(f"{V2}/requests.json", params=params))]

    newest_first = [bin_id["service_request_id"], ids[2], ids[1], ids[0]]
    assert listed() == newest_first
    assert listed(service_code="pothole") == newest_first[1:]
    assert listed(service_code="bin-full,pothole") == newest_first
    assert listed(status="closed") == [ids[0]]
    assert listed(status="open") == newest_first[:3]
    assert listed(status="open,closed") == newest_first
    assert listed(service_request_id=f"{ids[2]}, {ids[0]}", status="closed") == [
        ids[0],
        ids[2],
    ]  # ids override
    assert listed(page_size="2") == newest_first[:2]
    assert listed(page_size="2", page="2") == newest_first[2:]
    assert listed(page_size="2", page="3") == []
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    in_an_hour = time.strftime("%Y-%m-%dT%H:%M:%S+01:00", time.gmtime(time.time() + 7200))
    assert listed(start_date=hour_ago) == newest_first
    assert listed(start_date=in_an_hour) == []
    assert listed(end_date=hour_ago) == []
    assert listed(start_date=hour_ago, end_date=in_an_hour, jurisdiction_id="city.example") == newest_first
    xml_ids = [e.findtext("service_request_id") for e in xml(c.get(f"{V2}/requests.xml"))]
    assert xml_ids == newest_first


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"start_date": "2026-01-01"}, "date-time with offset"),
        ({"start_date": "2026-01-01T00:00:00 01:00"}, "write + as %2B"),
        ({"start_date": "2026-01-01T00:00:00Z", "end_date": "2025-01-01T00:00:00Z"}, "after start_date"),
        ({"start_date": "2025-01-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"}, "at most 90 days"),
        ({"status": "pending"}, "status must be open, closed"),
        ({"service_code": "graffiti"}, "not a service here"),
        ({"service_request_id": "1,two"}, "request ids"),
        ({"service_request_id": ",".join(str(i) for i in range(101))}, "more than 100"),
        ({"page": "0"}, "page must be"),
        ({"page_size": "1001"}, "page_size must be"),
        ({"page_size": "１０"}, "page_size must be"),
        ({"extensions": "yes"}, "extensions must be"),
        ({"jurisdiction_id": "other.example"}, "jurisdiction_id was not found"),
    ],
)
def test_bad_read_parameters_are_400_or_404(o311: Open311Cloud, params: dict[str, str], says: str) -> None:
    for fmt in ("json", "xml"):
        r = o311.client().get(f"{V2}/requests.{fmt}", params=params)
        status = 404 if "jurisdiction" in says else 400
        assert r.status_code == status, r.text
        if fmt == "json":
            (err,) = r.json()
            assert err["code"] == status and says in err["description"]
        else:
            assert xml(r).findtext("error/code") == str(status)


def test_public_notes_and_no_sensor_cases_when_configured(open311_factory: Any) -> None:
    o = open311_factory(
        public_notes=True,
        sensor_cases=False,
        status_map={
            "new": "open",
            "acknowledged": "open",
            "assigned": "open",
            "in_progress": "open",
            "resolved": "open",
            "closed": "closed",
        },
    )
    (sensor,) = seed(o.store, condition("bin-9"))
    (answer,) = ok_json(o.report(**spot()))
    case_id = answer["service_request_id"]
    op = o.cloud.operator()
    assert (
        op.post(f"/v1/cases/{case_id}/actions", json={"action": "resolve", "note": "filled"}).status_code
        == 200
    )
    assert (
        op.post(f"/v1/cases/{case_id}/actions", json={"action": "note", "note": "checked"}).status_code == 200
    )
    c = o.client()
    (req,) = ok_json(c.get(f"{V2}/requests/{case_id}.json", params={"extensions": "true"}))
    assert req["status"] == "open"  # resolved is open by this status_map
    assert [(n["summary"], n["description"]) for n in req["notes"]] == [
        ("Request opened", "reported through Open311 (pothole)"),
        ("Resolved", "filled"),
        ("Note", "checked"),
    ]
    updates = ok_json(c.get(f"{V2}/servicerequestupdates.json"))
    assert [u["description"] for u in updates if u["service_request_id"] == case_id][1:] == [
        "Resolved: filled",
        "Note: checked",
    ]
    assert c.get(f"{V2}/requests/{sensor}.json").status_code == 404
    assert [r["service_request_id"] for r in ok_json(c.get(f"{V2}/requests.json"))] == [case_id]
