"""Entities as SensorThings JSON: ``@iot.id``, ``@iot.selfLink``, properties, navigation links.

Every link is absolute (STA 1.1 requires it), built on the service's base URL: the
configured ``public_url``, else the one the request came to. ``@iot.nextLink`` s repeat the
request's options with ``$skip`` moved on, so a client follows them without knowing them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from citygate.opendata.sta.entities import NAVIGATION, PROPERTIES, SET_NAME, Entity, Kind

# Characters left as they are in option values: readable links, and nothing a query parser
# splits on ('&', '+', '#', '%' and spaces are escaped).
_SAFE: Final = "$'(),/:;=@*!~"


class Links:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def entity(self, kind: Kind, entity_id: int) -> str:
        return f"{self.base}/{SET_NAME[kind]}({entity_id})"

    def nav(self, kind: Kind, entity_id: int, nav: str) -> str:
        return f"{self.entity(kind, entity_id)}/{nav}"

    def set(self, kind: Kind) -> str:
        return f"{self.base}/{SET_NAME[kind]}"

    def with_options(
        self, url: str, raw: Mapping[str, str], *, top: int, skip: int = 0, token: str | None = None
    ) -> str:
        """``url`` with the options of ``raw``, ``$top`` and ``$skip`` (or ``$skiptoken``) replaced."""
        items = {k: v for k, v in raw.items() if k not in ("$top", "$skip", "$skiptoken")}
        items["$top"] = str(top)
        if token is not None:
            items["$skiptoken"] = token
        else:
            items["$skip"] = str(skip)
        return url + "?" + "&".join(f"{k}={quote(v, safe=_SAFE)}" for k, v in items.items())


def render(entity: Entity, links: Links, select: tuple[str, ...] | None) -> dict[str, Any]:
    """The entity's JSON object, with only the ``$select`` ed members when ``select`` is given."""
    kind = entity.kind
    out: dict[str, Any] = {}
    want = None if select is None else set(select)
    if want is None or "id" in want:
        out["@iot.id"] = entity.id
    self_link = links.entity(kind, entity.id)
    if want is None or "selfLink" in want:
        out["@iot.selfLink"] = self_link
    for prop in PROPERTIES[kind]:
        if (want is None or prop in want) and prop in entity.props:
            out[prop] = entity.props[prop]
    for nav in NAVIGATION[kind]:
        if want is None or nav in want:
            out[f"{nav}@iot.navigationLink"] = f"{self_link}/{nav}"
    return out
