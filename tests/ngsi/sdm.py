"""The Smart Data Models' JSON Schemas, resolved offline: validate a keyValues entity against its model.

A test helper (jsonschema is a development dependency). The schemas (stored unchanged in
``citygate/opendata/ngsi/schemas/``, licence and sources in its README) ``$ref``
each other by their published URLs. A ``referencing.Registry`` maps each of those URLs to the
stored file, and has no retriever: a reference to anything not stored fails (``Unresolvable``)
instead of going to the network.

JSON Schema's ``format`` is only an annotation unless a checker asserts it, and jsonschema's
own ``date-time`` and ``uri`` checks need packages this project does not install; the
checker here asserts both with the contract's RFC 3339 parser and an RFC 3986 pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any, Final

import orjson
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from citygate.contract.rfc3339 import parse_rfc3339_ns

_PACKAGE: Final = "citygate.opendata.ngsi"
# RFC 3986: a scheme, then unreserved, reserved and percent-encoded characters only.
_URI: Final = re.compile(
    r"[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?#\[\]]|%[0-9A-Fa-f]{2})*"
)


def _load(name: str) -> Any:
    return orjson.loads(resources.files(_PACKAGE).joinpath("schemas", name).read_bytes())


@cache
def index() -> Mapping[str, Mapping[str, str]]:
    """``{"schemas": {url: file}, "contexts": {url: file}}`` as stored in ``schemas/index.json``."""
    doc: Mapping[str, Mapping[str, str]] = _load("index.json")
    return doc


@cache
def registry() -> Registry[Any]:
    """Every stored schema under each URL it is published at (and referred to by)."""
    pairs = [(url, Resource.from_contents(_load(name))) for url, name in index()["schemas"].items()]
    return Registry().with_resources(pairs).crawl()


def schema_url(entity_type: str) -> str:
    for url, name in index()["schemas"].items():
        if name == f"{entity_type}.json":
            return url
    raise KeyError(f"no stored schema for {entity_type}")


def _date_time(value: object) -> bool:
    return not isinstance(value, str) or parse_rfc3339_ns(value) is not None


def _uri(value: object) -> bool:
    return not isinstance(value, str) or _URI.fullmatch(value) is not None


def format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checks("date-time")(_date_time)
    checker.checks("uri")(_uri)
    return checker


@cache
def validator(entity_type: str) -> Draft202012Validator:
    """The validator of one model's schema, with every ``$ref`` resolved from the stored files."""
    schema = registry().contents(schema_url(entity_type))
    return Draft202012Validator(schema, registry=registry(), format_checker=format_checker())


def refs(schema: Any) -> Iterator[str]:
    """Every ``$ref`` in a schema document, depth first."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from refs(item)


def errors(entity: Mapping[str, Any]) -> Iterator[str]:
    """What makes a keyValues entity invalid against its type's model (nothing: it is valid)."""
    for e in validator(str(entity["type"])).iter_errors(dict(entity)):
        where = "/".join(str(p) for p in e.absolute_path) or "(entity)"
        yield f"{where}: {e.message}"


@cache
def context_document(context_url: str) -> Mapping[str, Any]:
    """The term definitions of a stored @context (term -> expanded IRI)."""
    ctx: Mapping[str, Any] = _load(index()["contexts"][context_url])["@context"]
    return ctx
