"""Refusals of the NGSI-LD API, in the ProblemDetails shape the NGSI-LD API specifies.

ETSI GS CIM 009, clause 5.5.3: a JSON object after RFC 7807 with ``type`` (an NGSI-LD error
type URI), ``title`` and ``detail``, sent as ``application/json`` (not
``application/problem+json``, so that older clients are not broken). ``status`` is added as
RFC 7807 allows. Errors the NGSI-LD list does not name (401, 405, 406, 429, 503) use
``about:blank``, RFC 7807's type for "the status code says it all".
"""

from __future__ import annotations

from typing import Final

import orjson
from fastapi import Response

_ETSI: Final = "https://uri.etsi.org/ngsi-ld/errors/"
INVALID_REQUEST: Final = _ETSI + "InvalidRequest"
BAD_REQUEST_DATA: Final = _ETSI + "BadRequestData"
RESOURCE_NOT_FOUND: Final = _ETSI + "ResourceNotFound"
NONEXISTENT_TENANT: Final = _ETSI + "NonexistentTenant"
BLANK: Final = "about:blank"

_TITLES: Final[dict[str, str]] = {
    INVALID_REQUEST: "Invalid request",
    BAD_REQUEST_DATA: "Bad request data",
    RESOURCE_NOT_FOUND: "Resource not found",
    NONEXISTENT_TENANT: "Nonexistent tenant",
}
_STATUS_TITLES: Final[dict[int, str]] = {
    401: "Unauthorized",
    405: "Method not allowed",
    406: "Not acceptable",
    429: "Too many requests",
    502: "Bad gateway",
    503: "Service unavailable",
}


class NgsiProblem(Exception):  # noqa: N818 - named after the ProblemDetails it becomes
    """A refusal, answered as a ProblemDetails document (the API's route class writes it)."""

    def __init__(
        self, status: int, detail: str, *, type_: str = BLANK, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.type = type_
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self, extra_headers: dict[str, str] | None = None) -> Response:
        title = _TITLES.get(self.type) or _STATUS_TITLES.get(self.status, "Error")
        body = {"type": self.type, "title": title, "status": self.status, "detail": self.detail}
        return Response(
            orjson.dumps(body),
            status_code=self.status,
            media_type="application/json",
            headers={**(extra_headers or {}), **self.headers},
        )


def bad_data(detail: str) -> NgsiProblem:
    return NgsiProblem(400, detail, type_=BAD_REQUEST_DATA)


def not_found(detail: str) -> NgsiProblem:
    return NgsiProblem(404, detail, type_=RESOURCE_NOT_FOUND)
