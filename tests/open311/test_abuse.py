"""Abuse: every bad request is a specific 4xx in the Open311 error shape (400, 403, 404, 413,
415, 429 with Retry-After and RateLimit headers), never a 5xx; a fuzzer throwing garbage forms,
paths and query strings at a running cloud finds no 5xx and no crash."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.open311.conftest import API_KEY, CENTRE, OTHER_KEY, Open311Cloud

pytestmark = pytest.mark.servers

V2 = "/open311/v2"
FORM = "application/x-www-form-urlencoded"
GOOD = {"service_code": "pothole", "lat": str(CENTRE[0]), "long": str(CENTRE[1]), "attribute[depth]": "4"}


def refusal(r: httpx.Response, status: int) -> str:
    """The Open311 error shape with this status; its description."""
    assert r.status_code == status, r.text
    if r.headers["content-type"].startswith("text/xml"):
        root = ET.fromstring(r.content)
        assert root.tag == "errors" and root.findtext("error/code") == str(status)
        return root.findtext("error/description") or ""
    (err,) = r.json()
    assert list(err) == ["code", "description"] and err["code"] == status
    return str(err["description"])


def post_raw(
    o: Open311Cloud, body: bytes | str, content_type: str | None = FORM, fmt: str = "json", **kw: Any
) -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    return o.client().post(f"{V2}/requests.{fmt}", content=body, headers=headers, **kw)


def test_keys(o311: Open311Cloud) -> None:
    assert "invalid api_key" in refusal(o311.post(key="x" * 40, **GOOD), 403)
    assert "invalid api_key" in refusal(o311.post("xml", key=API_KEY[:-1] + "X", **GOOD), 403)
    assert "api_key was not provided" in refusal(o311.client().post(f"{V2}/requests.json", data=GOOD), 400)
    assert o311.post(key=OTHER_KEY, **GOOD).status_code == 200  # any configured key


def test_refusals_are_specific(o311: Open311Cloud) -> None:
    good = urlencode({"api_key": API_KEY, **GOOD})
    assert "larger than 65536" in refusal(post_raw(o311, good + "&description=" + "x" * 70_000), 413)
    assert "more than 64 fields" in refusal(post_raw(o311, good + "&a=1" * 64), 413)
    assert "Content-Type must be" in refusal(
        post_raw(o311, '{"service_code": "pothole"}', "application/json"), 415
    )
    assert "Content-Type must be" in refusal(post_raw(o311, good, None), 415)
    assert "Content-Type must be" in refusal(post_raw(o311, good, FORM + "; charset=iso-8859-1", "xml"), 415)
    assert "not UTF-8" in refusal(post_raw(o311, b"api_key=" + API_KEY.encode() + b"&description=\xff"), 400)
    assert "not in the URL" in refusal(post_raw(o311, good, params={"email": "a@b.example"}), 400)
    assert "jurisdiction_id was not found" in refusal(
        post_raw(o311, good + "&jurisdiction_id=elsewhere"), 404
    )
    assert "service_code" in refusal(post_raw(o311, good.replace("pothole", "graffiti")), 404)
    assert "no such format" in refusal(o311.client().get(f"{V2}/services.html"), 404)
    assert "no such format" in refusal(post_raw(o311, good, fmt="yaml"), 404)
    assert "no such resource" in refusal(o311.client().get(f"{V2}/nothing/here.xml"), 404)
    assert "not found" in refusal(o311.client().get(f"{V2}/requests/99999999.json"), 404)
    assert "not found" in refusal(o311.client().get(f"{V2}/requests/abc.json"), 404)
    assert o311.client().put(f"{V2}/requests.json", content=good).status_code == 405


def test_open311_off_is_404(open311_factory: Any) -> None:
    o = open311_factory(enabled=False)
    assert "not enabled" in refusal(o.client().get(f"{V2}/services.xml"), 404)
    assert "not enabled" in refusal(o.post(**GOOD), 404)


def test_reports_are_limited_per_address(open311_factory: Any) -> None:
    o = open311_factory(post_burst_per_address=2, post_rate_per_minute_per_address=1)
    first = o.post(**GOOD)
    assert first.status_code == 200 and first.headers["RateLimit-Limit"] == "100000"  # the key's counters
    assert o.post(key="x" * 40, **GOOD).status_code == 403  # a refused attempt counts too
    r = o.post(key=OTHER_KEY, **GOOD)
    assert "from this address" in refusal(r, 429)
    assert r.headers["Retry-After"] == r.headers["RateLimit-Reset"] and int(r.headers["Retry-After"]) >= 1
    assert r.headers["RateLimit-Limit"] == "2" and r.headers["RateLimit-Remaining"] == "0"
    assert o.client().get(f"{V2}/services.json").status_code == 200  # reads have their own bucket


def test_reports_are_limited_per_key(open311_factory: Any) -> None:
    o = open311_factory(post_burst_per_key=2, post_rate_per_minute_per_key=1)
    assert [o.post(**GOOD).status_code for _ in range(2)] == [200, 200]
    r = o.post("xml", **GOOD)
    assert "with this api_key" in refusal(r, 429)
    assert int(r.headers["Retry-After"]) >= 1 and r.headers["RateLimit-Limit"] == "2"
    assert o.post(key=OTHER_KEY, **GOOD).status_code == 200  # another app's key is its own bucket


def test_reads_are_limited_per_address(open311_factory: Any) -> None:
    o = open311_factory(read_burst=3, read_rate_per_minute=1)
    c = o.client()
    got = [c.get(f"{V2}/services.json") for _ in range(3)]
    assert [r.status_code for r in got] == [200, 200, 200]
    assert [r.headers["RateLimit-Remaining"] for r in got] == ["2", "1", "0"]
    r = c.get(f"{V2}/requests.xml")
    assert "from this address" in refusal(r, 429) and int(r.headers["Retry-After"]) >= 1


# -- the fuzzer ----------------------------------------------------------------------------

READS = st.sampled_from(
    [
        "requests.json",
        "requests.xml",
        "services.json",
        "services/pothole.xml",
        "services/bin-full.json",
        "requests/1.json",
        "requests/2.xml",
        "tokens/AAAAAAAAAAAAAAAAAAAA.json",
        "servicerequestupdates.xml",
        "servicerequestupdates.json",
        "discovery.xml",
    ]
)
SEGMENTS = st.sampled_from(
    [
        "requests",
        "services",
        "tokens",
        "discovery",
        "servicerequestupdates",
        "pothole",
        "1",
        "0",
        "..",
        "%00",
        "x" * 300,
        "",
    ]
)
EXTENSIONS = st.sampled_from([".json", ".xml", "", ".JSON", ".json.xml", ".", ".html", "%2ejson"])
ANY_PATH = st.builds(
    lambda segs, ext, junk: "/".join(segs) + ext + quote(junk, safe="/%.;="),
    st.lists(SEGMENTS, min_size=1, max_size=3),
    EXTENSIONS,
    st.text(max_size=20),
)
NAMES = st.sampled_from(
    [
        "service_request_id",
        "service_code",
        "status",
        "start_date",
        "end_date",
        "page",
        "page_size",
        "extensions",
        "jurisdiction_id",
        "api_key",
        "lat",
        "long",
        "email",
        "phone",
        "attribute[depth]",
        "attribute[lane]",
        "attribute[hazards][]",
        "attribute[]",
        "description",
        "media_url",
        "address_string",
        "first_name",
        "x",
    ]
)
VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "open",
            "closed",
            "true",
            "1,2,3",
            "2026-01-01T00:00:00Z",
            "-1",
            "99999999999999999999",
            "pothole",
            "bin-full",
            "52.5",
            "13.4",
            "path",
            "water",
            "https://x.example/1.jpg",
            "a@b.example",
            "",
        ]
    ),
)
PAIRS = st.lists(st.tuples(NAMES, VALUES), max_size=10)
BODIES = st.one_of(
    PAIRS.map(lambda p: urlencode([("api_key", API_KEY), *GOOD.items(), *p]).encode()),
    PAIRS.map(lambda p: urlencode([("api_key", API_KEY), *p]).encode()),
    st.binary(max_size=200),
)
CONTENT_TYPES = st.sampled_from(
    [
        FORM,
        FORM,
        FORM,
        FORM + "; charset=utf-8",
        "application/json",
        "text/plain",
        "",
        "a/b; charset=",
        FORM + "; x",
    ]
)
FUZZ = settings(max_examples=150, deadline=None)


@pytest.fixture(scope="module")
def fuzz_client(o311: Open311Cloud) -> httpx.Client:
    return o311.client()


def no_5xx(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.request.method, str(r.request.url), r.status_code, r.text[:300])
    if r.status_code >= 400 and r.headers.get("content-type", "").startswith("text/xml"):
        ET.fromstring(r.content)  # an XML refusal is XML


@FUZZ
@given(path=READS, query=PAIRS)
def test_garbage_query_strings_never_make_a_5xx(
    fuzz_client: httpx.Client, path: str, query: list[tuple[str, str]]
) -> None:
    no_5xx(fuzz_client.get(f"{V2}/{path}", params=query))


@FUZZ
@given(
    fmt=st.sampled_from(["json", "xml"]),
    body=BODIES,
    content_type=CONTENT_TYPES,
    query=st.one_of(st.just([]), PAIRS),
)
def test_garbage_forms_never_make_a_5xx(
    fuzz_client: httpx.Client, fmt: str, body: bytes, content_type: str, query: list[tuple[str, str]]
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    no_5xx(fuzz_client.post(f"{V2}/requests.{fmt}", content=body, headers=headers, params=query))


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "HEAD", "DELETE"]), path=ANY_PATH, body=st.binary(max_size=50))
def test_garbage_paths_never_make_a_5xx(
    fuzz_client: httpx.Client, method: str, path: str, body: bytes
) -> None:
    no_5xx(fuzz_client.request(method, f"{V2}/{path}", content=body if method == "POST" else None))


def test_the_cloud_still_answers_after_the_fuzzer(o311: Open311Cloud) -> None:
    assert o311.report().status_code == 200
    assert o311.client().get(f"{V2}/requests.json").status_code == 200
