"""GeoReport v2 documents from the configuration and the store's rows (no database here).

A case is a service request: its id is the ``service_request_id``, its status is open or
closed by ``status_map``, a citizen case's description, address and media come from its
first report, a sensor case's from its rule (title and detail) and device site. Every
request carries ``extended_attributes`` with its ``source`` (``citizen`` or ``sensor``) and
how many reports or occurrences it has; with ``extensions=true`` also ``notes``, its
history. Nothing of the ``reporters`` table is ever read to make these: they cannot show
personal data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from citygate.open311.runtime import Open311Runtime
from citygate.open311.settings import ServiceDefinition

SPECIFICATION: Final = "http://wiki.open311.org/GeoReport_v2"
MEDIA: Final = ("text/xml", "application/json")
# History actions that are the operators' own business (never public).
PRIVATE_ACTIONS: Final = frozenset({"escalated"})
NOTE_ACTION: Final = "noted"  # public only with public_notes
_SUMMARIES: Final[dict[str, str]] = {
    "opened": "Request opened",
    "recurred": "Condition returned",
    "cleared": "Condition cleared",
    "acknowledged": "Acknowledged",
    "assigned": "Assigned",
    "started": "Work started",
    "resolved": "Resolved",
    "closed": "Closed",
    "reopened": "Reopened",
    "merged": "Merged into another request",
    "noted": "Note",
}

Doc = dict[str, Any]
Row = Mapping[Any, Any]  # a store row (SQLAlchemy RowMapping) or a plain dict


def w3c(ms: int | None) -> str | None:
    """A time in the spec's W3C form, UTC to the second: 2026-01-01T10:00:00Z."""
    if ms is None:
        return None
    return datetime.fromtimestamp(int(ms) // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def discovery(rt: Open311Runtime, url: str) -> Doc:
    s = rt.settings
    return {
        "changeset": rt.changeset,
        "contact": s.contact,
        "key_service": s.key_service,
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": url,
                "changeset": rt.changeset,
                "type": s.endpoint_type,
                "formats": list(MEDIA),
            }
        ],
    }


def service(svc: ServiceDefinition) -> Doc:
    return {
        "service_code": svc.code,
        "service_name": svc.name,
        "description": svc.description,
        "metadata": bool(svc.attributes),
        "type": svc.type,
        "keywords": ", ".join(svc.keywords),
        "group": svc.group,
    }


def service_definition(svc: ServiceDefinition) -> Doc:
    return {
        "service_code": svc.code,
        "attributes": [
            {
                "variable": a.variable,
                "code": a.code,
                "datatype": a.datatype,
                "required": a.required,
                "datatype_description": a.datatype_description or None,
                "order": a.order,
                "description": a.description,
                "values": [{"key": v.key, "name": v.name} for v in a.values],
            }
            for a in sorted(svc.attributes, key=lambda a: a.order)
        ],
    }


def public_history(row: Row, rt: Open311Runtime) -> bool:
    action = row["action"]
    return action not in PRIVATE_ACTIONS and (action != NOTE_ACTION or rt.settings.public_notes)


def summary(row: Row) -> str:
    action = str(row["action"])
    data = row["data"] or {}
    if action == "recurred" and "report" in data:
        return "Reported again"
    if action == "merged" and data.get("into") is not None:
        return f"Duplicate of request {data['into']}"
    return _SUMMARIES.get(action, action.replace("_", " ").capitalize())


def _note_text(row: Row, rt: Open311Runtime) -> str:
    """What a history row says in public: what happened, and with public_notes the note."""
    text = summary(row)
    note = str(row["note"] or "")
    if rt.settings.public_notes and note:
        text = f"{text}: {note}"
    return text


def note(row: Row, rt: Open311Runtime) -> Doc:
    """One entry of ``notes`` (the Chicago extension's shape: datetime, summary, type, description)."""
    m = rt.settings.status_map
    before, after = row["from_status"], row["to_status"]
    kind = "activity"
    if row["action"] == "opened":
        kind = "opened"
    elif before is not None and m.get(before) == "open" and m.get(after) == "closed":
        kind = "closed"
    return {
        "datetime": w3c(row["at_ms"]),
        "summary": summary(row),
        "type": kind,
        "description": (row["note"] or None) if rt.settings.public_notes else None,
    }


def request(
    case: Row,
    code: str,
    rt: Open311Runtime,
    first_report: Row | None,
    notes: Sequence[Row] | None,
) -> Doc:
    """A case as a GeoReport service request (``code``: the Open311 service it is listed under)."""
    svc = rt.services[code]
    citizen = case["source"] == "citizen"
    status = rt.settings.status_map.get(str(case["status"]), "open")
    resolve_s = rt.resolve_s.get(str(case["service"]))
    expected = None if resolve_s is None else int(case["opened_ms"]) + int(resolve_s * 1000)
    if citizen:
        description = (first_report or {}).get("description") or case["detail"] or None
        address = (first_report or {}).get("address")
        address_id = (first_report or {}).get("address_id")
        media_url = (first_report or {}).get("media_url")
    else:
        title, detail = str(case["title"]), str(case["detail"] or "")
        description = f"{title}: {detail}" if detail else title
        address = case["site"] or case["district"]
        address_id, media_url = None, None
    merged = case["merged_into"]
    doc: Doc = {
        "service_request_id": str(case["id"]),
        "status": status,
        "status_notes": f"Duplicate of request {merged}" if merged is not None else None,
        "service_name": svc.name,
        "service_code": code,
        "description": description,
        "agency_responsible": svc.agency or None,
        "service_notice": svc.notice or None,
        "requested_datetime": w3c(case["opened_ms"]),
        "updated_datetime": w3c(case["updated_ms"]),
        "expected_datetime": w3c(expected) if status == "open" else None,
        "address": address,
        "address_id": address_id,
        "zipcode": None,
        "lat": case["latitude"],
        "long": case["longitude"],
        "media_url": media_url,
        "extended_attributes": {
            "source": case["source"],
            "occurrences": int(case["occurrences"]),
            "severity": case["severity"],
        },
    }
    if notes is not None:
        doc["notes"] = [note(h, rt) for h in notes if public_history(h, rt)]
    return doc


def update(row: Row, rt: Open311Runtime) -> Doc:
    """A history row as a FixMyStreet ``request_update``."""
    return {
        "update_id": str(row["id"]),
        "service_request_id": str(row["case_id"]),
        "status": rt.settings.status_map.get(str(row["to_status"]), "open"),
        "updated_datetime": w3c(row["at_ms"]),
        "description": _note_text(row, rt),
        "media_url": None,
        "external_status_code": row["to_status"],
    }
