"""The one exception of the Open311 API: a refusal answered in the Open311 error shape.

``[{"code": 400, "description": "..."}]`` in JSON, ``<errors><error><code>400</code>
<description>...</description></error></errors>`` in XML; the router
(:mod:`citygate.open311.api`) turns it into that answer. Raised only for what the client
can fix (4xx); the description never repeats a submitted value (it may be personal).
"""

from __future__ import annotations

from collections.abc import Mapping


class Open311Error(Exception):
    """A refused request: ``status`` (400, 403, 404, 413, 415, 429) and what to fix."""

    def __init__(self, status: int, description: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.headers = dict(headers or {})
