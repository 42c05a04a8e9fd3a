"""Cases on SQLite and on a real PostgreSQL: one case per condition under racing writers, the
lifecycle and its history, and one event (and its deliveries) written with every transition."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, select

from citygate.service.case_model import CaseConflictError, CaseError, Condition
from citygate.service.cases import CaseStore
from citygate.service.db import current_revision, head_revision, make_engine, migrate
from citygate.service.schema import case_history, cases, deliveries, events, metadata
from citygate.service.subscriptions import Subscription

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def bin_full(at_ns: int, subject: str = "bin-1", kind: str = "opened") -> Condition:
    return Condition(
        kind=kind,  # type: ignore[arg-type]
        rule_id="waste_bin.bin_full",
        subject=subject,
        service="waste",
        severity="warning",
        title="Bin full",
        at_ns=at_ns,
        detail="fill_level 91 > 85",
        value=91.0,
        district="north",
    )


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(engine: Engine, clock: Clock) -> Iterator[CaseStore]:
    subs = [
        Subscription(
            name="workorders", url="https://wo.example/hook", secrets=(SECRET,), services=("waste",)
        ),
        Subscription(
            name="flood-sirens", url="https://sirens.example/hook", secrets=(SECRET,), services=("flood",)
        ),
        Subscription(
            name="critical-only", url="https://pager.example/hook", secrets=(SECRET,), min_severity="critical"
        ),
    ]
    s = CaseStore(engine, subs, clock_ms=clock)
    s.sync_subscriptions()
    yield s


def count(engine: Engine, table: object, *where: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())  # type: ignore[arg-type]


def test_migrations_create_exactly_the_schema(store_url: str) -> None:
    e = make_engine(store_url)
    assert current_revision(e) is None
    migrate(e)
    migrate(e)  # current: a no-op
    assert current_revision(e) == head_revision()
    with e.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    e.dispose()


def test_a_condition_opens_one_case_and_its_return_adds_to_it(store: CaseStore, engine: Engine) -> None:
    t1 = store.record(bin_full(1_000))
    assert t1 is not None and t1.action == "opened" and t1.to_status == "new"
    t2 = store.record(bin_full(2_000))
    assert t2 is not None and t2.action == "recurred" and t2.case_id == t1.case_id
    case = store.get(t1.case_id)
    assert case is not None and case["occurrences"] == 2 and case["status"] == "new"
    assert count(engine, cases) == 1


def test_the_same_change_recorded_twice_is_one_transition(store: CaseStore, engine: Engine) -> None:
    assert store.record(bin_full(1_000)) is not None
    assert store.record(bin_full(1_000)) is None
    assert count(engine, case_history) == 1 and count(engine, events) == 1


def test_racing_writers_make_one_case(store_url: str, clock: Clock) -> None:
    writers = 8
    engines = [make_engine(store_url) for _ in range(writers)]
    migrate(engines[0])
    stores = [CaseStore(e, clock_ms=clock) for e in engines]
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            barrier.wait()
            stores[i].record(bin_full(1_000 + i))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    e0 = engines[0]
    assert count(e0, cases) == 1
    actions = [h["action"] for h in stores[0].history(1)]
    assert sorted(actions) == ["opened"] + ["recurred"] * (writers - 1)
    assert stores[0].get(1)["occurrences"] == writers  # type: ignore[index]
    for e in engines:
        e.dispose()


def test_clearing_is_a_note_and_people_close(store: CaseStore) -> None:
    t = store.record(bin_full(1_000))
    assert t is not None
    c = store.record(bin_full(5_000, kind="cleared"))
    assert c is not None and c.action == "cleared" and c.to_status == "new"
    assert store.get(t.case_id)["cleared_ns"] == 5_000  # type: ignore[index]
    assert store.get(t.case_id)["is_open"]  # type: ignore[index]
    assert store.record(bin_full(6_000, subject="bin-unknown", kind="cleared")) is None


def test_lifecycle_is_history_with_actor_and_note(store: CaseStore, clock: Clock) -> None:
    t = store.record(bin_full(1_000))
    assert t is not None
    cid = t.case_id
    clock.ms += 60_000
    store.act(cid, "acknowledge", "alice@city", note="on it")
    store.act(cid, "assign", "alice@city", assignee="crew-7")
    store.act(cid, "start", "crew-7")
    store.act(cid, "resolve", "crew-7", note="emptied")
    store.act(cid, "close", "alice@city")
    rows = store.history(cid)
    assert [(r["action"], r["from_status"], r["to_status"], r["actor"]) for r in rows] == [
        ("opened", None, "new", "rules"),
        ("acknowledged", "new", "acknowledged", "alice@city"),
        ("assigned", "acknowledged", "assigned", "alice@city"),
        ("started", "assigned", "in_progress", "crew-7"),
        ("resolved", "in_progress", "resolved", "crew-7"),
        ("closed", "resolved", "closed", "alice@city"),
    ]
    assert rows[1]["note"] == "on it" and rows[2]["data"] == {"assignee": "crew-7"}
    case = store.get(cid)
    assert case is not None and not case["is_open"] and case["acknowledged_ms"] == clock.ms
    # Closed: the condition returning opens a new case.
    t2 = store.record(bin_full(9_000))
    assert t2 is not None and t2.action == "opened" and t2.case_id != cid


def test_actions_not_allowed_are_refused_and_change_nothing(store: CaseStore) -> None:
    t = store.record(bin_full(1_000))
    assert t is not None
    with pytest.raises(CaseError, match="cannot start"):
        store.act(t.case_id, "start", "bob")
    with pytest.raises(CaseError, match="unknown action"):
        store.act(t.case_id, "explode", "bob")
    with pytest.raises(CaseError, match="no case"):
        store.act(999, "acknowledge", "bob")
    with pytest.raises(CaseError, match="assignee"):
        store.act(t.case_id, "assign", "bob")
    assert [r["action"] for r in store.history(t.case_id)] == ["opened"]


def test_reopen_refused_while_another_case_is_open(store: CaseStore) -> None:
    first = store.record(bin_full(1_000))
    assert first is not None
    store.act(first.case_id, "close", "bob", note="false alarm")
    second = store.record(bin_full(2_000))
    assert second is not None and second.case_id != first.case_id
    with pytest.raises(CaseConflictError, match="another case is open"):
        store.act(first.case_id, "reopen", "bob")
    store.act(second.case_id, "close", "bob")
    assert store.act(first.case_id, "reopen", "bob").to_status == "new"


def test_a_condition_back_after_resolution_reopens_for_people(store: CaseStore) -> None:
    t = store.record(bin_full(1_000))
    assert t is not None
    store.act(t.case_id, "resolve", "crew-7")
    back = store.record(bin_full(3_000))
    assert back is not None and back.action == "recurred" and back.from_status == "resolved"
    assert back.to_status == "new"


def test_merge_closes_the_duplicate(store: CaseStore) -> None:
    a = store.record(bin_full(1_000, subject="bin-1"))
    b = store.record(bin_full(1_000, subject="bin-2"))
    assert a is not None and b is not None
    store.merge(b.case_id, a.case_id, "alice")
    merged = store.get(b.case_id)
    assert merged is not None and merged["status"] == "closed" and merged["merged_into"] == a.case_id
    assert store.get(a.case_id)["occurrences"] == 2  # type: ignore[index]
    with pytest.raises(CaseError):
        store.merge(a.case_id, a.case_id, "alice")


def test_escalation_once_per_step(store: CaseStore, clock: Clock) -> None:
    t = store.record(bin_full(1_000))
    assert t is not None
    targets = {"waste": (600.0, 3600.0)}
    assert store.escalate(targets) == []
    clock.ms += 601_000
    made = store.escalate(targets)
    assert [m.action for m in made] == ["escalated"] and store.escalate(targets) == []
    clock.ms += 3_600_000
    assert len(store.escalate(targets)) == 1
    assert store.get(t.case_id)["escalation"] == 2  # type: ignore[index]


def test_every_transition_writes_one_event_and_its_deliveries(store: CaseStore, engine: Engine) -> None:
    t = store.record(bin_full(1_000))
    assert t is not None
    store.act(t.case_id, "acknowledge", "alice")
    with engine.connect() as conn:
        evs = conn.execute(select(events).order_by(events.c.seq)).mappings().all()
        dels = conn.execute(select(deliveries)).mappings().all()
    assert [e["type"] for e in evs] == ["case.opened", "case.acknowledged"]
    assert len({e["id"] for e in evs}) == 2
    assert evs[1]["data"]["actor"] == "alice" and evs[1]["data"]["case"]["status"] == "acknowledged"
    # "workorders" wants waste; "flood-sirens" only flood; "critical-only" only critical.
    assert sorted((d["subscription"], d["event_seq"]) for d in dels) == [
        ("workorders", evs[0]["seq"]),
        ("workorders", evs[1]["seq"]),
    ]


def test_a_subscription_removed_from_the_configuration_is_disabled(engine: Engine, clock: Clock) -> None:
    sub = Subscription(name="old", url="https://old.example/h", secrets=(SECRET,))
    CaseStore(engine, [sub], clock_ms=clock).sync_subscriptions()
    now = CaseStore(engine, [], clock_ms=clock)
    now.sync_subscriptions()
    now.record(bin_full(1_000))
    assert count(engine, deliveries) == 0
