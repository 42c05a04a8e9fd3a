"""The Open311 API's side of the service store: reports in, public service requests out.

Reports go through :meth:`citygate.service.cases.CaseStore.report` (a case, its history,
its event and deliveries in one transaction; the reporter's details apart). Reads select
only public cases: citizen cases of a configured service, and sensor cases of a service
some Open311 service feeds; the system's own cases never. Every read is bounded (a page,
the latest ``max_notes`` history rows per request). The ``reporters`` table is not read here.

Blocking (SQLAlchemy): the router calls these in the thread pool. A store that does not
answer is a 503 with Retry-After, like the rest of the cloud.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, RowMapping, and_, func, or_, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import ColumnElement

from citygate.open311 import views
from citygate.open311.errors import Open311Error
from citygate.open311.queries import RequestQuery, UpdatesQuery
from citygate.open311.runtime import Open311Runtime
from citygate.open311.submission import Submission
from citygate.service.cases import CaseStore
from citygate.service.reports import CitizenReport, ReportOutcome
from citygate.service.schema import case_history, cases, citizen_reports


@contextmanager
def store_errors(retry_after_s: int) -> Iterator[None]:
    """A store that is down or restarting: 503 + Retry-After (nothing was recorded)."""
    try:
        yield
    except OperationalError:
        raise Open311Error(
            503, "the case store is unavailable; try again later", {"Retry-After": str(retry_after_s)}
        ) from None


def submit(store: CaseStore, rt: Open311Runtime, sub: Submission, client: str) -> ReportOutcome:
    svc, s = sub.service, rt.settings
    report = CitizenReport(
        service_code=svc.code,
        service=svc.feeds,
        severity=svc.severity,
        title=svc.name,
        client=client,
        description=sub.description,
        latitude=sub.latitude,
        longitude=sub.longitude,
        address=sub.address,
        address_id=sub.address_id,
        media_url=sub.media_url,
        attributes=sub.attributes,
        reporter=sub.reporter,
        reporter_retention_ms=int(s.personal_data_retention_s * 1000),
    )
    with store_errors(rt.retry_after_s):
        return store.report(report, attach_within_m=s.attach_within_m, attach_within_s=s.attach_within_s)


def _public(rt: Open311Runtime, codes: Sequence[str] | None) -> ColumnElement[bool]:
    """Cases listed as service requests (of these Open311 services, or all)."""
    wanted = set(rt.services if codes is None else codes)
    rules = [rule for rule, code in rt.citizen_rules.items() if code in wanted]
    sensor = [service for service, code in rt.sensor_codes.items() if code in wanted]
    cond = and_(cases.c.source == "citizen", cases.c.rule_id.in_(rules))
    if sensor:
        cond = or_(cond, and_(cases.c.source == "sensor", cases.c.service.in_(sensor)))
    return cond


def _history_public(rt: Open311Runtime) -> ColumnElement[bool]:
    hidden = set(views.PRIVATE_ACTIONS)
    if not rt.settings.public_notes:
        hidden.add(views.NOTE_ACTION)
    return case_history.c.action.not_in(sorted(hidden))


def find_requests(engine: Engine, rt: Open311Runtime, q: RequestQuery) -> list[views.Doc]:
    sel = select(cases)
    if q.ids is not None:
        sel = sel.where(_public(rt, None), cases.c.id.in_(q.ids)).order_by(cases.c.id)
    else:
        statuses = [s for s, oc in rt.settings.status_map.items() if oc in (q.statuses or ())]
        sel = sel.where(
            _public(rt, q.codes),
            cases.c.status.in_(statuses),
            cases.c.opened_ms >= q.start_ms,
            cases.c.opened_ms < q.end_ms,
        ).order_by(cases.c.opened_ms.desc(), cases.c.id.desc())
    sel = sel.limit(q.page.size).offset(q.page.offset)
    with store_errors(rt.retry_after_s), engine.connect() as conn:
        rows = list(conn.execute(sel).mappings())
        return _documents(conn, rt, rows, q.extensions)


def find_request(engine: Engine, rt: Open311Runtime, case_id: int, extensions: bool) -> views.Doc | None:
    sel = select(cases).where(_public(rt, None), cases.c.id == case_id)
    with store_errors(rt.retry_after_s), engine.connect() as conn:
        rows = list(conn.execute(sel).mappings())
        docs = _documents(conn, rt, rows, extensions)
    return docs[0] if docs else None


def find_updates(engine: Engine, rt: Open311Runtime, q: UpdatesQuery) -> list[views.Doc]:
    sel = (
        select(case_history)
        .join(cases, case_history.c.case_id == cases.c.id)
        .where(
            _public(rt, None),
            _history_public(rt),
            case_history.c.at_ms >= q.start_ms,
            case_history.c.at_ms < q.end_ms,
        )
        .order_by(case_history.c.id)
        .limit(q.page.size)
        .offset(q.page.offset)
    )
    with store_errors(rt.retry_after_s), engine.connect() as conn:
        return [views.update(r, rt) for r in conn.execute(sel).mappings()]


def request_of_token(engine: Engine, rt: Open311Runtime, token: str) -> int | None:
    sel = select(citizen_reports.c.case_id).where(citizen_reports.c.token == token)
    with store_errors(rt.retry_after_s), engine.connect() as conn:
        found = conn.execute(sel).scalar()
    return None if found is None else int(found)


def _documents(
    conn: Connection, rt: Open311Runtime, rows: Sequence[RowMapping], extensions: bool
) -> list[views.Doc]:
    citizen_ids = [r["id"] for r in rows if r["source"] == "citizen"]
    first = _first_reports(conn, citizen_ids) if citizen_ids else {}
    notes = _notes(conn, rt, [r["id"] for r in rows]) if extensions and rows else {}
    docs = []
    for r in rows:
        code = rt.code_of(r["source"], r["rule_id"], r["service"])
        if code is None:
            continue  # the filter keeps these out; a configuration change between two calls
        docs.append(
            views.request(r, code, rt, first.get(r["id"]), notes.get(r["id"], []) if extensions else None)
        )
    return docs


def _first_reports(conn: Connection, case_ids: list[int]) -> dict[int, RowMapping]:
    """Each citizen case's first report (what it was opened with)."""
    firsts = (
        select(func.min(citizen_reports.c.id))
        .where(citizen_reports.c.case_id.in_(case_ids))
        .group_by(citizen_reports.c.case_id)
    )
    sel = select(
        citizen_reports.c.case_id,
        citizen_reports.c.description,
        citizen_reports.c.address,
        citizen_reports.c.address_id,
        citizen_reports.c.media_url,
    ).where(citizen_reports.c.id.in_(firsts))
    return {int(r["case_id"]): r for r in conn.execute(sel).mappings()}


def _notes(conn: Connection, rt: Open311Runtime, case_ids: list[int]) -> dict[int, list[RowMapping]]:
    """The latest ``max_notes`` public history rows of each case, oldest first."""
    rank = (
        func.row_number()
        .over(partition_by=case_history.c.case_id, order_by=case_history.c.id.desc())
        .label("rank")
    )
    ranked = (
        select(case_history, rank).where(case_history.c.case_id.in_(case_ids), _history_public(rt)).subquery()
    )
    sel = select(ranked).where(ranked.c.rank <= rt.settings.max_notes).order_by(ranked.c.case_id, ranked.c.id)
    out: dict[int, list[RowMapping]] = {}
    for r in conn.execute(sel).mappings():
        out.setdefault(int(r["case_id"]), []).append(r)
    return out
