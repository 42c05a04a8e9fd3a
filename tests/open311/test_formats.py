"""JSON and XML renderings of one document (the Spark convention), judged with the stdlib parser."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import orjson
import pytest

from citygate.open311.formats import error_response, render

DOC = [
    {
        "service_code": "pothole",
        "metadata": True,
        "order": 2,
        "lat": 52.5163,
        "description": None,
        "attributes": [
            {"code": "depth", "values": [{"key": "1", "name": "one"}, {"key": "2", "name": "two"}]}
        ],
        "extended_attributes": {"source": "citizen"},
    }
]


def test_json_is_the_document() -> None:
    assert orjson.loads(render("json", "services", DOC)) == DOC


def test_xml_maps_lists_to_items_and_values_to_text() -> None:
    body = render("xml", "services", DOC)
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(body)
    assert root.tag == "services"
    (service,) = root
    assert service.tag == "service"
    assert [c.tag for c in service] == [
        "service_code",
        "metadata",
        "order",
        "lat",
        "description",
        "attributes",
        "extended_attributes",
    ]
    assert service.findtext("metadata") == "true" and service.findtext("order") == "2"
    assert float(service.findtext("lat") or "") == 52.5163
    assert service.find("description") is not None and service.findtext("description") == ""
    assert [v.findtext("key") for v in service.findall("attributes/attribute/values/value")] == ["1", "2"]
    assert service.findtext("extended_attributes/source") == "citizen"


def test_text_is_escaped_and_characters_xml_cannot_carry_are_dropped() -> None:
    body = render("xml", "errors", [{"code": 400, "description": "<b>&\x00\x1b\ufffe</b>\n\ttab"}])
    root = ET.fromstring(body)  # it parses
    assert root.findtext("error/description") == "<b>&</b>\n\ttab"


def test_element_names_never_come_from_data() -> None:
    with pytest.raises(ValueError, match="not an element name"):
        render("xml", "services", [{"a b": 1}])
    with pytest.raises(ValueError, match="not an element name"):
        render("xml", "services", [{"<script>": 1}])
    with pytest.raises(KeyError):
        render("xml", "services", [{"unknown_list": [1]}])


def test_errors_are_the_spec_shape_in_both_formats() -> None:
    r = error_response("json", 403, "invalid api_key")
    assert r.status_code == 403 and orjson.loads(r.body) == [{"code": 403, "description": "invalid api_key"}]
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    x = error_response("xml", 404, "nothing")
    assert x.headers["content-type"] == "text/xml; charset=utf-8"
    root = ET.fromstring(x.body)
    assert root.tag == "errors" and root.findtext("error/code") == "404"
