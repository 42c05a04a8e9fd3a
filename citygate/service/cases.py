"""Cases: what the rules open and people work, with an append-only history.

Every change to a case is one transaction that writes the case, one history row and one
event (the transactional outbox, :mod:`citygate.service.schema` ``events``), and a
delivery row for every enabled subscription that wants it. So a transition and its event
exist together or not at all, and the dispatcher never has to guess what it missed.

"One case per (rule, subject) while it is open" is the database's partial unique index,
not a read-then-insert: two writers racing on the same condition make one case and one
recurrence.

Citizen reports (Open311, :meth:`CaseStore.report`) are cases too, with the same history,
events and deliveries: a report near an open case of the same service, reported to recently,
joins that case (a recurrence) instead of opening a second one. Who reported is stored
apart (``reporters``) and never reaches a case, its history or an event.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from citygate.service.case_model import (
    OPEN,
    OPERATOR_ACTIONS,
    WORKING,
    ActionNotAllowedError,
    CaseConflictError,
    CaseError,
    CaseNotFoundError,
    Condition,
    Transition,
    wall_ms,
)
from citygate.service.reports import EARTH_RADIUS_M, CitizenReport, ReportOutcome, citizen_case, distance_m
from citygate.service.schema import (
    case_history,
    cases,
    citizen_reports,
    deliveries,
    events,
    reporters,
    subscriptions,
)
from citygate.service.subscriptions import Subscription

EVENT_TYPE_PREFIX = "org.citygate."  # CloudEvents type: reverse-DNS prefix + "case.<action>"
_ATTACH_CANDIDATES = 50  # open cases looked at around a report (the nearest one wins)


class CaseStore:
    """Cases, history and the event outbox on one engine (SQLite or PostgreSQL)."""

    def __init__(
        self,
        engine: Engine,
        subscriptions: Sequence[Subscription] = (),
        *,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.engine = engine
        self._subs = {s.name: s for s in subscriptions}
        self._clock_ms = clock_ms
        # Finding the case a report joins and opening one if there is none is a read then a
        # write: one at a time in this process (and under an advisory lock on PostgreSQL, for
        # the other replicas), or two reports of one pothole racing would open two cases.
        self._report_lock = threading.Lock()

    # -- subscriptions ----------------------------------------------------------------

    def sync_subscriptions(self) -> None:
        """Make the store's subscriptions those configured: new ones enabled, removed ones disabled."""
        now = self._clock_ms()
        with self.engine.begin() as conn:
            known = {r.name: r for r in conn.execute(select(subscriptions))}
            for s in self._subs.values():
                if s.name not in known:
                    conn.execute(
                        insert(subscriptions).values(name=s.name, url=s.url, enabled=True, created_ms=now)
                    )
                elif known[s.name].url != s.url:
                    conn.execute(
                        update(subscriptions).where(subscriptions.c.name == s.name).values(url=s.url)
                    )
            for name, row in known.items():
                if name not in self._subs and row.enabled:
                    conn.execute(
                        update(subscriptions)
                        .where(subscriptions.c.name == name)
                        .values(enabled=False, disabled_reason="removed from the configuration")
                    )

    # -- conditions (the rules' side) -------------------------------------------------

    def record(self, c: Condition) -> Transition | None:
        """Open a case, add a recurrence to the open one, or note a clearing; None when
        there is nothing to do (this change was recorded before, or clears no open case)."""
        with self.engine.begin() as conn:
            if conn.execute(
                select(case_history.c.id).where(case_history.c.change_key == c.change_key)
            ).first():
                return None
            if c.kind == "opened":
                return self._open_or_recur(conn, c)
            return self._clear(conn, c)

    def _open_or_recur(self, conn: Connection, c: Condition) -> Transition:
        now = self._clock_ms()
        values: dict[str, Any] = {
            "rule_id": c.rule_id,
            "subject": c.subject,
            "source": c.source,
            "service": c.service,
            "severity": c.severity,
            "title": c.title,
            "status": "new",
            "is_open": True,
            "site": c.site,
            "district": c.district,
            "opened_ms": now,
            "updated_ms": now,
            "condition_ns": c.at_ns,
            "late": c.late,
            "forecast_ns": c.forecast_ns,
            "detail": c.detail,
        }
        case_id = _insert_open_case(conn, values)
        if case_id is not None:
            return self._write(conn, case_id, "opened", None, "new", "rules", c.detail, _condition_data(c), c)
        row = conn.execute(
            select(cases).where(cases.c.rule_id == c.rule_id, cases.c.subject == c.subject, cases.c.is_open)
        ).one()
        # A condition back while people work the case adds to it; back after they resolved
        # it, it reopens it for them.
        to_status = "new" if row.status == "resolved" else row.status
        conn.execute(
            update(cases)
            .where(cases.c.id == row.id)
            .values(
                occurrences=cases.c.occurrences + 1,
                cleared_ns=None,
                status=to_status,
                updated_ms=now,
                resolved_ms=None if to_status == "new" else cases.c.resolved_ms,
            )
        )
        return self._write(
            conn, row.id, "recurred", row.status, to_status, "rules", c.detail, _condition_data(c), c
        )

    def _clear(self, conn: Connection, c: Condition) -> Transition | None:
        row = conn.execute(
            select(cases).where(cases.c.rule_id == c.rule_id, cases.c.subject == c.subject, cases.c.is_open)
        ).first()
        if row is None:
            return None  # people closed it already; the clearing changes nothing
        conn.execute(
            update(cases).where(cases.c.id == row.id).values(cleared_ns=c.at_ns, updated_ms=self._clock_ms())
        )
        # The condition clearing is a note: people close cases, not the rules.
        return self._write(
            conn, row.id, "cleared", row.status, row.status, "rules", c.detail, _condition_data(c), c
        )

    # -- citizen reports --------------------------------------------------------------

    def report(self, r: CitizenReport, *, attach_within_m: float, attach_within_s: float) -> ReportOutcome:
        """Record a citizen report: it joins the nearest open case of its Open311 service
        within ``attach_within_m`` metres that changed within ``attach_within_s`` (a report
        without coordinates joins none), else it opens a case. Its author's details go to
        ``reporters`` and nowhere else."""
        now = self._clock_ms()
        token = secrets.token_urlsafe(16)
        actor = f"open311:{r.client}"
        with self._report_lock, self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_lock_key(r.rule_id))))
            joined = self._case_near(conn, r, now - int(attach_within_s * 1000), attach_within_m)
            if joined is None:
                case_id = _insert_open_case(conn, citizen_case(r, token, now))
                assert case_id is not None  # its subject is new: no open case can hold it
                from_status: str | None = None
                to_status = "new"
            else:
                case_id, from_status = joined
                to_status = "new" if from_status == "resolved" else from_status
            report_id = int(
                conn.execute(
                    insert(citizen_reports)
                    .values(
                        case_id=case_id,
                        token=token,
                        service_code=r.service_code,
                        client=r.client,
                        received_ms=now,
                        attached=joined is not None,
                        description=r.description,
                        address=r.address,
                        address_id=r.address_id,
                        latitude=r.latitude,
                        longitude=r.longitude,
                        media_url=r.media_url,
                        attributes=dict(r.attributes),
                    )
                    .returning(citizen_reports.c.id)
                ).scalar_one()
            )
            if r.reporter.given():
                p = r.reporter
                conn.execute(
                    insert(reporters).values(
                        report_id=report_id,
                        first_name=p.first_name,
                        last_name=p.last_name,
                        email=p.email,
                        phone=p.phone,
                        device_id=p.device_id,
                        account_id=p.account_id,
                        expires_ms=now + r.reporter_retention_ms,
                    )
                )
            data = {"report": report_id, "service_code": r.service_code}
            if joined is None:
                note = f"reported through Open311 ({r.service_code})"
                t = self._write(conn, case_id, "opened", None, "new", actor, note, data, None)
            else:
                # Another report of a known problem: an occurrence, as a condition back is; on a
                # case people resolved, it reopens it for them.
                conn.execute(
                    update(cases)
                    .where(cases.c.id == case_id)
                    .values(
                        occurrences=cases.c.occurrences + 1,
                        status=to_status,
                        updated_ms=now,
                        resolved_ms=None if to_status == "new" else cases.c.resolved_ms,
                    )
                )
                note = f"reported again through Open311 ({r.service_code})"
                t = self._write(conn, case_id, "recurred", from_status, to_status, actor, note, data, None)
        return ReportOutcome(
            report_id=report_id, case_id=case_id, token=token, attached=joined is not None, transition=t
        )

    def _case_near(
        self, conn: Connection, r: CitizenReport, since_ms: int, within_m: float
    ) -> tuple[int, str] | None:
        """The nearest open case of the report's rule within ``within_m`` that changed since
        ``since_ms``: (id, status), or None."""
        if r.latitude is None or r.longitude is None or within_m <= 0:
            return None
        lat, lon = r.latitude, r.longitude
        # A box around the point first (the database narrows it down), then the real distance.
        dlat = math.degrees(within_m / EARTH_RADIUS_M)
        dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
        rows = conn.execute(
            select(cases.c.id, cases.c.status, cases.c.latitude, cases.c.longitude)
            .where(
                cases.c.rule_id == r.rule_id,
                cases.c.is_open,
                cases.c.updated_ms >= since_ms,
                cases.c.latitude.between(lat - dlat, lat + dlat),
                cases.c.longitude.between(lon - dlon, lon + dlon),
            )
            .order_by(cases.c.updated_ms.desc())
            .limit(_ATTACH_CANDIDATES)
        ).all()
        best: tuple[float, int, str] | None = None
        for row in rows:
            d = distance_m(lat, lon, row.latitude, row.longitude)
            if d <= within_m and (best is None or d < best[0]):
                best = (d, int(row.id), str(row.status))
        return None if best is None else (best[1], best[2])

    def prune_reporters(self, now_ms: int | None = None) -> int:
        """Delete the reporters' personal data whose retention has passed; how many."""
        now = self._clock_ms() if now_ms is None else now_ms
        with self.engine.begin() as conn:
            return int(conn.execute(reporters.delete().where(reporters.c.expires_ms <= now)).rowcount)

    # -- people -----------------------------------------------------------------------

    def act(
        self,
        case_id: int,
        action: str,
        actor: str,
        *,
        note: str = "",
        assignee: str | None = None,
    ) -> Transition:
        """An operator's action on a case (``OPERATOR_ACTIONS``), attributed to ``actor``."""
        if action not in OPERATOR_ACTIONS:
            raise CaseError(f"unknown action {action!r}; expected one of {', '.join(OPERATOR_ACTIONS)}")
        if action == "assign" and not assignee:
            raise CaseError("assign needs an assignee")
        allowed, to_status, event_action = OPERATOR_ACTIONS[action]
        now = self._clock_ms()
        with self.engine.begin() as conn:
            row = conn.execute(select(cases).where(cases.c.id == case_id)).first()
            if row is None:
                raise CaseNotFoundError(f"no case {case_id}")
            if row.status not in allowed:
                froms = ", ".join(sorted(allowed))
                raise ActionNotAllowedError(
                    f"case {case_id} is {row.status}: cannot {action} (allowed from {froms})"
                )
            new_status = to_status or row.status
            values: dict[str, Any] = {
                "status": new_status,
                "updated_ms": now,
                "is_open": new_status != "closed",
            }
            if action == "acknowledge":
                values["acknowledged_ms"] = now
            if action == "assign":
                values["assignee"] = assignee
                values["acknowledged_ms"] = row.acknowledged_ms or now
            if action == "resolve":
                values["resolved_ms"] = now
            if action == "close":
                values["closed_ms"] = now
            if action == "reopen":
                values.update(resolved_ms=None, closed_ms=None)
                if (
                    row.status == "closed"
                    and conn.execute(
                        select(cases.c.id).where(
                            cases.c.rule_id == row.rule_id, cases.c.subject == row.subject, cases.c.is_open
                        )
                    ).first()
                ):
                    raise CaseConflictError(
                        f"case {case_id}: another case is open for {row.rule_id} / {row.subject}"
                    )
            # Optimistic: the status we checked must still be the status we change.
            done = conn.execute(
                update(cases).where(cases.c.id == case_id, cases.c.status == row.status).values(**values)
            )
            if done.rowcount != 1:
                raise CaseConflictError(f"case {case_id} changed meanwhile; look again")
            data: dict[str, Any] = {"assignee": assignee} if assignee else {}
            return self._write(conn, case_id, event_action, row.status, new_status, actor, note, data, None)

    def merge(self, case_id: int, into: int, actor: str, *, note: str = "") -> Transition:
        """Close ``case_id`` as a duplicate of ``into`` (which stays as it is, with a note)."""
        if case_id == into:
            raise CaseError("a case cannot be merged into itself")
        now = self._clock_ms()
        with self.engine.begin() as conn:
            src = conn.execute(select(cases).where(cases.c.id == case_id)).first()
            dst = conn.execute(select(cases).where(cases.c.id == into)).first()
            if src is None or dst is None:
                raise CaseNotFoundError(f"no case {case_id if src is None else into}")
            if src.status not in OPEN or dst.status not in OPEN:
                raise ActionNotAllowedError("both cases must be open to merge")
            done = conn.execute(
                update(cases)
                .where(cases.c.id == case_id, cases.c.status == src.status)
                .values(status="closed", is_open=False, closed_ms=now, updated_ms=now, merged_into=into)
            )
            if done.rowcount != 1:
                raise CaseConflictError(f"case {case_id} changed meanwhile; look again")
            conn.execute(
                update(cases)
                .where(cases.c.id == into)
                .values(occurrences=cases.c.occurrences + src.occurrences)
            )
            self._write(
                conn,
                into,
                "noted",
                dst.status,
                dst.status,
                actor,
                f"case {case_id} merged into this one",
                {"merged": case_id},
                None,
            )
            return self._write(
                conn, case_id, "merged", src.status, "closed", actor, note, {"into": into}, None
            )

    def escalate(self, targets: Mapping[str, tuple[float, float]]) -> list[Transition]:
        """Escalate open cases past their service's targets: ``targets[service] = (ack_s,
        resolve_s)``. Step 1: not acknowledged in time; step 2: not resolved in time. Each
        step happens once per case."""
        now = self._clock_ms()
        made: list[Transition] = []
        for service, (ack_s, resolve_s) in targets.items():
            for step, seconds, statuses in ((1, ack_s, {"new"}), (2, resolve_s, WORKING)):
                with self.engine.begin() as conn:
                    due = conn.execute(
                        select(cases).where(
                            cases.c.service == service,
                            cases.c.is_open,
                            cases.c.status.in_(statuses),
                            cases.c.escalation < step,
                            cases.c.opened_ms <= now - int(seconds * 1000),
                        )
                    ).all()
                    for row in due:
                        done = conn.execute(
                            update(cases)
                            .where(cases.c.id == row.id, cases.c.escalation < step)
                            .values(escalation=step, updated_ms=now)
                        )
                        if done.rowcount != 1:
                            continue  # another replica escalated it first
                        what = "not acknowledged" if step == 1 else "not resolved"
                        note = f"{what} within {seconds:.0f} s (service {service})"
                        made.append(
                            self._write(
                                conn,
                                row.id,
                                "escalated",
                                row.status,
                                row.status,
                                "system",
                                note,
                                {"step": step},
                                None,
                            )
                        )
        return made

    def forecast_outcome(self, case_id: int, outcome: str, note: str) -> Transition | None:
        """Record whether the case's forecast came true (once; None if it was known already)."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(cases)
                .where(cases.c.id == case_id, cases.c.forecast_outcome.is_(None))
                .values(forecast_outcome=outcome, updated_ms=self._clock_ms())
            )
            if done.rowcount != 1:
                return None
            status = conn.execute(select(cases.c.status).where(cases.c.id == case_id)).scalar_one()
            what = "came true" if outcome == "came_true" else "did not come true"
            return self._write(
                conn,
                case_id,
                "noted",
                status,
                status,
                "rules",
                f"the forecast {what}: {note}",
                {"forecast_outcome": outcome},
                None,
            )

    # -- reading ----------------------------------------------------------------------

    def get(self, case_id: int) -> RowMapping | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(cases).where(cases.c.id == case_id)).mappings().first()
            return row

    def history(self, case_id: int) -> list[RowMapping]:
        with self.engine.connect() as conn:
            q = select(case_history).where(case_history.c.case_id == case_id).order_by(case_history.c.id)
            return list(conn.execute(q).mappings())

    def list_cases(
        self,
        *,
        status: str | None = None,
        service: str | None = None,
        district: str | None = None,
        open_only: bool = True,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RowMapping]:
        q = select(cases)
        if open_only:
            q = q.where(cases.c.is_open)
        if status:
            q = q.where(cases.c.status == status)
        if service:
            q = q.where(cases.c.service == service)
        if district:
            q = q.where(cases.c.district == district)
        q = q.order_by(cases.c.id.desc()).limit(min(limit, 1000)).offset(offset)
        with self.engine.connect() as conn:
            return list(conn.execute(q).mappings())

    def counts(self) -> dict[str, int]:
        """Open cases per status."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(cases.c.status, func.count()).where(cases.c.is_open).group_by(cases.c.status)
            )
            return {r[0]: int(r[1]) for r in rows}

    # -- the one writer of history, events and deliveries -----------------------------

    def _write(
        self,
        conn: Connection,
        case_id: int,
        action: str,
        from_status: str | None,
        to_status: str,
        actor: str,
        note: str,
        data: Mapping[str, Any],
        condition: Condition | None,
    ) -> Transition:
        now = self._clock_ms()
        history_id = int(
            conn.execute(
                insert(case_history)
                .values(
                    case_id=case_id,
                    at_ms=now,
                    actor=actor,
                    action=action,
                    from_status=from_status,
                    to_status=to_status,
                    note=note,
                    data=dict(data),
                    change_key=condition.change_key if condition else None,
                )
                .returning(case_history.c.id)
            ).scalar_one()
        )
        case = conn.execute(select(cases).where(cases.c.id == case_id)).mappings().one()
        event_id = str(uuid.uuid4())
        event_type = f"case.{action}"
        seq = int(
            conn.execute(
                insert(events)
                .values(
                    id=event_id,
                    type=event_type,
                    case_id=case_id,
                    history_id=history_id,
                    time_ms=now,
                    service=case["service"],
                    district=case["district"],
                    severity=case["severity"],
                    data=_event_data(case, action, from_status, to_status, actor, note, data),
                )
                .returning(events.c.seq)
            ).scalar_one()
        )
        enabled = set(conn.execute(select(subscriptions.c.name).where(subscriptions.c.enabled)).scalars())
        for sub in self._subs.values():
            if sub.name in enabled and sub.wants(
                event_type, case["service"], case["district"], case["severity"]
            ):
                conn.execute(
                    insert(deliveries).values(
                        subscription=sub.name, event_seq=seq, status="pending", next_ms=now, created_ms=now
                    )
                )
        return Transition(case_id, action, from_status, to_status, event_id, history_id)


def _insert_open_case(conn: Connection, values: Mapping[str, Any]) -> int | None:
    """INSERT the case unless an open one holds its (rule, subject): the new id, or None."""
    dialect = conn.dialect.name
    ins: Any
    if dialect == "postgresql":
        ins = postgresql.insert(cases)
    elif dialect == "sqlite":
        ins = sqlite.insert(cases)
    else:  # pragma: no cover - the store runs on the two
        raise RuntimeError(f"unsupported database {dialect}")
    stmt = (
        ins.values(**values)
        .on_conflict_do_nothing(index_elements=["rule_id", "subject"], index_where=cases.c.is_open)
        .returning(cases.c.id)
    )
    row = conn.execute(stmt).first()
    return None if row is None else int(row[0])


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def _condition_data(c: Condition) -> dict[str, Any]:
    d: dict[str, Any] = {"condition_ns": c.at_ns, "late": c.late}
    if c.value is not None:
        d["value"] = c.value
    if c.forecast_ns is not None:
        d["forecast_ns"] = c.forecast_ns
    return d


def _event_data(
    case: RowMapping,
    action: str,
    from_status: str | None,
    to_status: str,
    actor: str,
    note: str,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The event's ``data``: the transition, and the case as it is after it."""
    return {
        "action": action,
        "from_status": from_status,
        "to_status": to_status,
        "actor": actor,
        "note": note,
        **{k: v for k, v in extra.items() if v is not None},
        "case": {
            "id": case["id"],
            "rule": case["rule_id"],
            "subject": case["subject"],
            "source": case["source"],
            "service": case["service"],
            "severity": case["severity"],
            "title": case["title"],
            "status": case["status"],
            "site": case["site"],
            "district": case["district"],
            "assignee": case["assignee"],
            "occurrences": case["occurrences"],
            "late": case["late"],
        },
    }


__all__ = ["EVENT_TYPE_PREFIX", "CaseStore"]
