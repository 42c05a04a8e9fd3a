"""CaseStore.report on SQLite and on a real PostgreSQL: a citizen report opens a case with its
history and event, or joins the nearest open case of its service (distance and time), and its
author's details live apart, only until they expire."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, func, select

from citygate.service.cases import CaseStore
from citygate.service.db import make_engine, migrate
from citygate.service.reports import CitizenReport, Reporter, ReportOutcome, distance_m
from citygate.service.schema import case_history, cases, citizen_reports, deliveries, events, reporters
from citygate.service.subscriptions import Subscription
from tests.open311.conftest import CENTRE
from tests.service.conftest import fresh_store_url

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EMAIL = "ann.smith@example.org"
DAY_MS = 86_400_000
NEAR = 20.0  # metres
WEEK_S = 7 * 86400.0


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    e = make_engine(fresh_store_url(request.param, request, tmp_path))
    migrate(e)
    yield e
    e.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(engine: Engine, clock: Clock) -> CaseStore:
    subs = [
        Subscription(
            name="roads-team", url="https://roads.example/hook", secrets=(SECRET,), services=("roads",)
        )
    ]
    s = CaseStore(engine, subs, clock_ms=clock)
    s.sync_subscriptions()
    return s


def pothole(
    lat: float = CENTRE[0], lon: float = CENTRE[1], code: str = "pothole", **kw: object
) -> CitizenReport:
    values: dict[str, object] = {
        "service_code": code,
        "service": "roads",
        "severity": "warning",
        "title": "Pothole",
        "client": "fixmystreet",
        "description": "Deep",
        "latitude": lat,
        "longitude": lon,
        "reporter": Reporter(first_name="Ann", last_name="Smith", email=EMAIL, phone="+49 30 1234"),
        "reporter_retention_ms": 30 * DAY_MS,
    }
    values.update(kw)
    return CitizenReport(**values)  # type: ignore[arg-type]


def north_of(lat: float, metres: float) -> float:
    return lat + metres / 111_195.0


def report(
    store: CaseStore, r: CitizenReport, within_m: float = NEAR, within_s: float = WEEK_S
) -> ReportOutcome:
    return store.report(r, attach_within_m=within_m, attach_within_s=within_s)


def count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_distance_is_the_great_circle() -> None:
    assert distance_m(*CENTRE, *CENTRE) == 0
    assert distance_m(CENTRE[0], CENTRE[1], north_of(CENTRE[0], 100), CENTRE[1]) == pytest.approx(
        100, abs=0.5
    )
    assert distance_m(0, 0, 0, 1) == pytest.approx(111_195, rel=1e-3)


def test_a_report_opens_a_citizen_case_with_its_history_event_and_delivery(
    store: CaseStore, engine: Engine
) -> None:
    out = report(store, pothole())
    assert not out.attached and out.transition.action == "opened" and len(out.token) >= 16
    case = store.get(out.case_id)
    assert case is not None
    assert (case["source"], case["rule_id"], case["service"], case["status"]) == (
        "citizen",
        "citizen.pothole",
        "roads",
        "new",
    )
    assert (case["latitude"], case["longitude"]) == CENTRE and case["detail"] == "Deep"
    (h,) = store.history(out.case_id)
    assert h["actor"] == "open311:fixmystreet" and h["data"]["report"] == out.report_id
    assert (
        count(engine, events) == 1 and count(engine, deliveries) == 1
    )  # the dispatcher sends it like any other
    with engine.connect() as conn:
        row = conn.execute(select(citizen_reports)).mappings().one()
    assert row["case_id"] == out.case_id and row["token"] == out.token and row["attached"] is False


def test_a_report_near_an_open_case_joins_it(store: CaseStore, engine: Engine, clock: Clock) -> None:
    first = report(store, pothole())
    clock.ms += 3_600_000
    again = report(store, pothole(lat=north_of(CENTRE[0], NEAR - 5)))
    assert again.attached and again.case_id == first.case_id and again.token != first.token
    assert again.transition.action == "recurred"
    case = store.get(first.case_id)
    assert case is not None and case["occurrences"] == 2 and case["updated_ms"] == clock.ms
    assert [h["action"] for h in store.history(first.case_id)] == ["opened", "recurred"]
    assert count(engine, cases) == 1 and count(engine, citizen_reports) == 2 and count(engine, events) == 2


def test_the_nearest_open_case_wins(store: CaseStore) -> None:
    a = report(store, pothole())
    b = report(store, pothole(lat=north_of(CENTRE[0], 30)), within_m=10)  # too far from a: its own case
    assert not b.attached
    joined = report(store, pothole(lat=north_of(CENTRE[0], 22)))  # 22 m from a, 8 m from b
    assert joined.case_id == b.case_id and a.case_id != b.case_id


@pytest.mark.parametrize("why", ["far", "other_service", "too_long_ago", "closed", "no_coordinates"])
def test_a_report_opens_its_own_case_when_none_is_close_enough(
    store: CaseStore, clock: Clock, why: str
) -> None:
    first = report(store, pothole())
    r = pothole()
    if why == "far":
        r = pothole(lat=north_of(CENTRE[0], NEAR + 5))
    elif why == "other_service":
        r = pothole(code="streetlight")
    elif why == "too_long_ago":
        clock.ms += int(WEEK_S * 1000) + 1
    elif why == "closed":
        store.act(first.case_id, "close", "ops")
    else:
        r = pothole(latitude=None, longitude=None, address="Unter den Linden 1")
    second = report(store, r)
    assert not second.attached and second.case_id != first.case_id


def test_a_report_on_a_resolved_case_reopens_it(store: CaseStore) -> None:
    first = report(store, pothole())
    store.act(first.case_id, "resolve", "ops")
    again = report(store, pothole())
    assert again.case_id == first.case_id
    assert (again.transition.from_status, again.transition.to_status) == ("resolved", "new")
    case = store.get(first.case_id)
    assert case is not None and case["status"] == "new" and case["resolved_ms"] is None


def test_personal_data_is_stored_apart_and_deleted_when_it_expires(
    store: CaseStore, engine: Engine, clock: Clock
) -> None:
    out = report(store, pothole())
    anonymous = report(store, pothole(lat=north_of(CENTRE[0], 500), reporter=Reporter()))
    with engine.connect() as conn:
        (who,) = conn.execute(select(reporters)).mappings()
        everything_else = [
            orjson.dumps(
                [{str(k): v for k, v in r.items()} for r in conn.execute(select(t)).mappings()], default=str
            )
            for t in (cases, case_history, events, citizen_reports)
        ]
    assert who["report_id"] == out.report_id and who["email"] == EMAIL and who["first_name"] == "Ann"
    assert who["expires_ms"] == clock.ms + 30 * DAY_MS
    assert not anonymous.attached  # and it left no reporters row
    for dump in everything_else:  # the case, its history, its events and the report itself
        assert EMAIL.encode() not in dump and b"Smith" not in dump and b"1234" not in dump
    clock.ms += 30 * DAY_MS - 1
    assert store.prune_reporters() == 0
    clock.ms += 1
    assert store.prune_reporters() == 1
    assert count(engine, reporters) == 0
    assert count(engine, citizen_reports) == 2 and store.get(out.case_id) is not None  # the report stays


def test_reports_racing_at_one_place_make_one_case(store: CaseStore, engine: Engine) -> None:
    writers = 6
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            barrier.wait()
            report(store, pothole())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(engine, cases) == 1 and count(engine, citizen_reports) == writers
    (case,) = store.list_cases()
    assert case["occurrences"] == writers
