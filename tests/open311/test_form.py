"""POST requests' body: bounded form parsing and the checks of every field (pure logic).

Each refusal is the specific 4xx it should be; garbage of any kind is a 4xx, never a crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citygate.open311.errors import Open311Error
from citygate.open311.form import check_content_type, parse_form, read_limited
from citygate.open311.submission import check
from tests.open311.conftest import CENTRE, SERVICES, open311_settings

S = open311_settings()
BY_CODE = {s.code: s for s in SERVICES}
GOOD: dict[str, Any] = {
    "api_key": "k",
    "service_code": "pothole",
    "lat": str(CENTRE[0]),
    "long": str(CENTRE[1]),
    "attribute[depth]": "7.5",
}


def submit(fields: dict[str, Any] | list[tuple[str, str]], **more: Any) -> Any:
    pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
    pairs += list(more.items())
    return check(parse_form(urlencode(pairs).encode(), max_fields=S.max_fields), S, BY_CODE)


def refused(status: int, fields: Any, **more: Any) -> str:
    with pytest.raises(Open311Error) as e:
        submit(fields, **more)
    assert e.value.status == status, e.value.description
    return e.value.description


def test_a_good_report() -> None:
    sub = submit(
        {
            **GOOD,
            "description": "Deep,\nnear the kerb",
            "media_url": "https://photos.example/p/1.jpg",
            "email": "ann@example.org",
            "first_name": "Ann",
            "phone": "+49 30 1234-567",
            "attribute[lane]": "path",
        },
    )
    assert sub.service.code == "pothole" and (sub.latitude, sub.longitude) == CENTRE
    assert sub.attributes == {"depth": "7.5", "lane": "path"}
    assert sub.description == "Deep,\nnear the kerb" and sub.reporter.email == "ann@example.org"
    assert "ann@example.org" not in repr(sub) and "Ann" not in repr(sub)


def test_multivaluelist_takes_repeated_values_and_an_address_is_a_location() -> None:
    pairs = [(k, v) for k, v in GOOD.items() if k not in ("lat", "long")]
    pairs += [("address_string", "Unter den Linden 1"), ("attribute[hazards][]", "water")]
    pairs += [("attribute[hazards][]", "glass"), ("attribute[hazards][]", "water")]
    sub = submit(pairs)
    assert sub.attributes["hazards"] == ["water", "glass"] and sub.latitude is None
    assert sub.address == "Unter den Linden 1"


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"service_code": None}, 400, "service_code was not provided"),
        ({"service_code": "graffiti"}, 404, "was not found"),
        ({"lat": None, "long": None}, 400, "a location is required"),
        ({"long": None}, 400, "lat and long go together"),
        ({"lat": "north"}, 400, "decimal degrees"),
        ({"lat": "nan"}, 400, "decimal degrees"),
        ({"lat": "1_0"}, 400, "decimal degrees"),
        ({"lat": "91"}, 400, "between -90 and 90"),
        ({"lat": "48.1", "long": "11.5"}, 400, "outside the area"),
        ({"attribute[depth]": None}, 400, "'depth' is required"),
        ({"attribute[depth]": "deep"}, 400, "must be a number"),
        ({"attribute[depth]": "1e999"}, 400, "must be a number"),
        ({"attribute[lane]": "motorway"}, 400, "one of the keys"),
        ({"attribute[colour]": "red"}, 400, "is not one of service"),
        ({"favourite_colour": "red"}, 400, "is not a field"),
        ({"media_url": "http://photos.example/1.jpg"}, 400, "must be an https:// URL"),
        ({"media_url": "javascript:alert(1)"}, 400, "must be an https:// URL"),
        ({"media_url": "https://user:pw@photos.example/1.jpg"}, 400, "no user or password"),
        ({"media_url": "https://photos.example:99999/1.jpg"}, 400, "not a URL"),
        ({"media_url": "https:///nohost"}, 400, "with a host"),
        ({"email": "not-an-address"}, 400, "email is not an e-mail address"),
        ({"phone": "call me"}, 400, "phone is not a phone number"),
        ({"first_name": "Ann\nBob"}, 400, "line breaks"),
        ({"description": "x\x00y"}, 400, "control characters"),
        ({"description": "x" * 4001}, 400, "longer than 4000"),
        ({"address_string": "x" * 501}, 400, "longer than 500"),
    ],
)
def test_each_bad_field_is_a_specific_refusal(change: dict[str, str | None], status: int, says: str) -> None:
    fields = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    description = refused(status, fields)
    assert says in description
    for value in change.values():  # the refusal never repeats a submitted value
        if value and len(value) > 6 and value not in ("graffiti",):
            assert value not in description


def test_a_field_given_twice_is_refused() -> None:
    assert "more than once" in refused(
        400, [*GOOD.items(), ("email", "a@b.example"), ("email", "c@d.example")]
    )
    assert "takes one value" in refused(
        400, [*GOOD.items(), ("attribute[lane]", "road"), ("attribute[lane]", "path")]
    )


def test_an_empty_optional_field_is_as_if_absent() -> None:
    sub = submit({**GOOD, "email": "", "description": "", "attribute[lane]": ""})
    assert sub.reporter.email is None and sub.description == "" and "lane" not in sub.attributes


def test_form_limits() -> None:
    with pytest.raises(Open311Error) as e:
        parse_form(b"&".join([b"a=1"] * (S.max_fields + 1)), max_fields=S.max_fields)
    assert e.value.status == 413
    with pytest.raises(Open311Error) as e:
        parse_form(b"description=%ff%fe", max_fields=10)
    assert e.value.status == 400 and "UTF-8" in e.value.description
    with pytest.raises(Open311Error) as e:
        parse_form(b"\xff=1", max_fields=10)
    assert e.value.status == 400
    with pytest.raises(Open311Error) as e:
        parse_form(b"=nameless", max_fields=10)
    assert e.value.status == 400 and "field name" in e.value.description


@pytest.mark.parametrize(
    "header",
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        'Application/X-WWW-Form-Urlencoded; charset="UTF-8"',
    ],
)
def test_form_content_types(header: str) -> None:
    check_content_type(header)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "application/json",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded; charset=latin-1",
        "text/plain;;;==",
    ],
)
def test_other_content_types_are_415(header: str | None) -> None:
    with pytest.raises(Open311Error) as e:
        check_content_type(header)
    assert e.value.status == 415


def test_a_body_is_read_up_to_its_limit_only() -> None:
    async def chunks(n: int) -> AsyncIterator[bytes]:
        for _ in range(n):
            yield b"x" * 1000

    assert asyncio.run(read_limited(None, chunks(3), 3000)) == b"x" * 3000
    for declared, n in (("3001", 0), (None, 4)):
        with pytest.raises(Open311Error) as e:
            asyncio.run(read_limited(declared, chunks(n), 3000))
        assert e.value.status == 413


FIELD_NAMES = st.sampled_from(
    [
        *GOOD,
        "description",
        "media_url",
        "email",
        "phone",
        "first_name",
        "address_string",
        "attribute[lane]",
        "attribute[hazards][]",
        "attribute[",
        "attribute[]",
        "jurisdiction_id",
        "x",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.lists(st.tuples(FIELD_NAMES, st.text(max_size=40)), max_size=12).map(
            lambda p: urlencode(p).encode()
        ),
        st.lists(st.tuples(FIELD_NAMES, st.text(max_size=8)), max_size=6).map(
            lambda p: urlencode([*GOOD.items(), *p]).encode()
        ),
    )
)
def test_garbage_is_a_4xx_or_a_report_never_a_crash(body: bytes) -> None:
    try:
        check(parse_form(body, max_fields=S.max_fields), S, BY_CODE)
    except Open311Error as e:
        assert 400 <= e.status < 500
