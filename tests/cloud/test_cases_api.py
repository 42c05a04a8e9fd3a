"""The operators' cases API against a real cloud (uvicorn, mTLS) with the service layer on.

Cases are seeded straight into the cloud's SQLite store; the API lists, shows and changes
them, and every change is attributed to the operator token's name, never to anything in
the body. Subscriptions: their state and delivery counts, the delivery log, and replay.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from citygate.cloud.cases import Action, CaseStatus
from citygate.contract.rfc3339 import parse_rfc3339_ns
from citygate.service.case_model import OPERATOR_ACTIONS, STATUSES
from citygate.service.subscriptions import Subscription
from citygate.testing.webhook_receiver import WebhookReceiver
from tests.cloud.conftest import OPERATOR_TOKEN, READER_TOKEN
from tests.cloud.service_cloud import SECRET, condition, seed, service_cloud
from tests.waiting import wait_until

pytestmark = pytest.mark.servers

ALICE_TOKEN = "alice-" + "a" * 32
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/cases", None),
    ("GET", "/v1/cases/1", None),
    ("POST", "/v1/cases/1/actions", {"action": "acknowledge"}),
    ("POST", "/v1/cases/1/merge", {"into": 2}),
    ("GET", "/v1/subscriptions", None),
    ("GET", "/v1/subscriptions/workorders/deliveries", None),
    ("POST", "/v1/subscriptions/workorders/replay", {"since": "2026-01-01T00:00:00Z"}),
]


def _is_time(s: str | None) -> bool:
    return s is not None and parse_rfc3339_ns(s) is not None


def _call(client: Any, method: str, path: str, body: dict[str, Any] | None) -> Any:
    return client.request(method, path, json=body) if body is not None else client.request(method, path)


@pytest.fixture
def cloud_and_store(cloud_factory: Any, tmp_path: Path) -> Any:
    operators = {"ops": SecretStr(OPERATOR_TOKEN), "alice": SecretStr(ALICE_TOKEN)}
    return service_cloud(cloud_factory, tmp_path, operator_tokens=operators)


def test_the_api_knows_the_stores_statuses_and_actions() -> None:
    assert set(CaseStatus.__args__) == set(STATUSES)  # type: ignore[attr-defined]
    assert set(Action.__args__) == set(OPERATOR_ACTIONS)  # type: ignore[attr-defined]


def test_list_filter_show_and_work_a_case(cloud_and_store: Any) -> None:
    cloud, store = cloud_and_store
    a, b, c = seed(
        store,
        condition("bin-1"),
        condition("bin-2"),
        condition("gauge-1", rule_id="water_level.high", service="flood", district="south", title="High"),
    )
    op = cloud.operator()

    r = op.get("/v1/cases")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["id"] for x in body["cases"]] == [c, b, a]  # newest first
    assert body["counts"] == {"new": 3} and body["limit"] == 100 and body["offset"] == 0
    first = body["cases"][-1]
    assert first["rule"] == "waste_bin.bin_full" and first["subject"] == "bin-1" and first["open"] is True
    assert first["status"] == "new" and first["district"] == "north" and first["site"] == "market square"
    assert (
        _is_time(first["opened_at"]) and _is_time(first["condition_at"]) and first["acknowledged_at"] is None
    )
    assert "opened_ms" not in first and "condition_ns" not in first
    assert first["opened_at"].endswith("Z")

    def ids(**params: Any) -> list[int]:
        r = op.get("/v1/cases", params=params)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["cases"]]

    assert ids(service="waste") == [b, a]
    assert ids(district="south") == [c]
    assert ids(service="waste", district="south") == []
    assert ids(status="acknowledged") == []
    assert ids(limit=1) == [c] and ids(limit=1, offset=1) == [b]

    # Acknowledge: the transition and the case after it.
    r = op.post(f"/v1/cases/{a}/actions", json={"action": "acknowledge", "note": "on my way"})
    assert r.status_code == 200, r.text
    t, case = r.json()["transition"], r.json()["case"]
    assert t["case_id"] == a and t["action"] == "acknowledged"
    assert (t["from_status"], t["to_status"]) == ("new", "acknowledged") and t["event_id"]
    assert case["status"] == "acknowledged" and _is_time(case["acknowledged_at"])
    assert ids(status="acknowledged") == [a]

    r = op.post(f"/v1/cases/{a}/actions", json={"action": "assign", "assignee": "crew-7"})
    assert r.status_code == 200 and r.json()["case"]["assignee"] == "crew-7", r.text
    assert (
        op.post(f"/v1/cases/{a}/actions", json={"action": "resolve"}).json()["case"]["status"] == "resolved"
    )
    r = op.post(f"/v1/cases/{a}/actions", json={"action": "close", "note": "emptied"})
    assert r.status_code == 200, r.text
    assert r.json()["case"]["open"] is False and _is_time(r.json()["case"]["closed_at"])
    assert ids() == [c, b]  # open ones only by default
    assert ids(open="false") == [c, b, a]
    assert op.get("/v1/cases").json()["counts"] == {"new": 2}

    # The case with its history, oldest first: the rules opened it, "ops" worked it.
    r = op.get(f"/v1/cases/{a}")
    assert r.status_code == 200, r.text
    history = r.json()["history"]
    assert [(h["actor"], h["action"], h["to_status"]) for h in history] == [
        ("rules", "opened", "new"),
        ("ops", "acknowledged", "acknowledged"),
        ("ops", "assigned", "assigned"),
        ("ops", "resolved", "resolved"),
        ("ops", "closed", "closed"),
    ]
    assert history[1]["note"] == "on my way" and history[4]["note"] == "emptied"
    assert history[2]["data"] == {"assignee": "crew-7"}
    assert all(_is_time(h["at"]) for h in history)
    assert r.json()["case"]["id"] == a


def test_the_actor_is_the_tokens_name_never_the_body(cloud_and_store: Any) -> None:
    cloud, store = cloud_and_store
    (a,) = seed(store, condition())
    alice = cloud.client(cloud.cloud_pki.gateway(), token=ALICE_TOKEN)
    r = alice.post(f"/v1/cases/{a}/actions", json={"action": "acknowledge", "actor": "mallory"})
    assert r.status_code == 422, r.text  # unknown keys are refused, not ignored
    r = alice.post(f"/v1/cases/{a}/actions", json={"action": "note", "note": "seen it"})
    assert r.status_code == 200, r.text
    assert [(h["actor"], h["note"]) for h in store.history(a)][-1] == ("alice", "seen it")
    assert "mallory" not in str(alice.get(f"/v1/cases/{a}").json())


def test_actions_the_status_does_not_allow_are_409(cloud_and_store: Any) -> None:
    cloud, store = cloud_and_store
    (a,) = seed(store, condition())
    op = cloud.operator()
    assert op.post(f"/v1/cases/{a}/actions", json={"action": "acknowledge"}).status_code == 200
    for action in ("acknowledge", "reopen"):
        r = op.post(f"/v1/cases/{a}/actions", json={"action": action})
        assert r.status_code == 409, r.text
        assert r.json()["error"] == "action_not_allowed"
        assert "is acknowledged: cannot" in r.json()["detail"]
    assert store.get(a)["status"] == "acknowledged"  # type: ignore[index]


def test_unknown_cases_are_404(cloud_and_store: Any) -> None:
    cloud, store = cloud_and_store
    (a,) = seed(store, condition())
    op = cloud.operator()
    for r in (
        op.get("/v1/cases/999"),
        op.post("/v1/cases/999/actions", json={"action": "acknowledge"}),
        op.post("/v1/cases/999/merge", json={"into": a}),
        op.post(f"/v1/cases/{a}/merge", json={"into": 999}),
    ):
        assert r.status_code == 404, r.text
        assert r.json() == {"error": "no_such_case", "detail": "no case 999"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("actions", {"action": "dance"}),
        ("actions", {}),
        ("actions", {"action": "note", "note": "x" * 2001}),
        ("actions", {"action": "assign"}),
        ("actions", {"action": "assign", "assignee": ""}),
        ("actions", {"action": "acknowledge", "assignee": "crew-7"}),
        ("actions", {"action": "note", "note": 5}),
        ("actions", {"action": "note", "extra": 1}),
        ("merge", {}),
        ("merge", {"into": "two"}),
        ("merge", {"into": 2, "note": "x" * 2001}),
        ("merge", {"into": 2, "actor": "mallory"}),
    ],
)
def test_bad_bodies_are_422(cloud_and_store: Any, path: str, body: dict[str, Any]) -> None:
    cloud, store = cloud_and_store
    a, _ = seed(store, condition("bin-1"), condition("bin-2"))
    r = cloud.operator().post(f"/v1/cases/{a}/{path}", json=body)
    assert r.status_code == 422, (body, r.text)
    assert [h["action"] for h in store.history(a)] == ["opened"]


def test_bad_queries_are_422(cloud_and_store: Any) -> None:
    cloud, _ = cloud_and_store
    op = cloud.operator()
    for params in ({"limit": 1001}, {"limit": 0}, {"offset": -1}, {"status": "bogus"}, {"open": "maybe"}):
        assert op.get("/v1/cases", params=params).status_code == 422, params
    assert op.get("/v1/cases/not-a-number").status_code == 422
    assert op.get("/v1/cases", params={"limit": 1000}).status_code == 200


def test_merge_closes_the_duplicate_into_the_other(cloud_and_store: Any) -> None:
    cloud, store = cloud_and_store
    a, b = seed(store, condition("bin-1"), condition("bin-2"))
    op = cloud.operator()
    r = op.post(f"/v1/cases/{b}/merge", json={"into": a, "note": "same bin, two sensors"})
    assert r.status_code == 200, r.text
    t, case = r.json()["transition"], r.json()["case"]
    assert t["action"] == "merged" and t["to_status"] == "closed"
    assert case["id"] == b and case["merged_into"] == a and case["open"] is False
    into = op.get(f"/v1/cases/{a}").json()
    assert into["case"]["occurrences"] == 2 and into["case"]["status"] == "new"
    assert (into["history"][-1]["actor"], into["history"][-1]["note"]) == (
        "ops",
        f"case {b} merged into this one",
    )
    merged = op.get(f"/v1/cases/{b}").json()["history"][-1]
    assert (merged["actor"], merged["note"], merged["data"]) == ("ops", "same bin, two sensors", {"into": a})

    r = op.post(f"/v1/cases/{a}/merge", json={"into": a})
    assert r.status_code == 422 and r.json()["error"] == "bad_action", r.text
    r = op.post(f"/v1/cases/{b}/merge", json={"into": a})  # closed already
    assert r.status_code == 409 and r.json()["error"] == "action_not_allowed", r.text


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_operators_only(cloud_and_store: Any, method: str, path: str, body: dict[str, Any] | None) -> None:
    cloud, store = cloud_and_store
    seed(store, condition("bin-1"), condition("bin-2"))
    anonymous = cloud.client(cloud.cloud_pki.gateway())
    r = _call(anonymous, method, path, body)
    assert r.status_code == 401 and r.json()["error"] == "no_token", r.text
    assert r.headers["www-authenticate"] == "Bearer"
    wrong = cloud.client(cloud.cloud_pki.gateway(), token="x" * 40)
    assert _call(wrong, method, path, body).status_code == 401
    r = _call(cloud.client(cloud.cloud_pki.gateway(), token=READER_TOKEN), method, path, body)
    assert r.status_code == 403 and r.json()["error"] == "not_operator", r.text
    assert [h["action"] for h in store.history(1)] == ["opened"]


def test_without_the_service_layer_every_endpoint_says_so(cloud_factory: Any) -> None:
    cloud = cloud_factory()
    op, anonymous = cloud.operator(), cloud.client(cloud.cloud_pki.gateway())
    for method, path, body in ENDPOINTS:
        r = _call(op, method, path, body)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"] == "service_layer_off" and "[cloud.service]" in r.json()["detail"]
        assert _call(anonymous, method, path, body).status_code == 401, path  # auth first


def test_subscriptions_deliveries_and_replay(cloud_factory: Any, tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        sub = Subscription(name="workorders", url=receiver.url + "/hook", secrets=(SECRET,))
        cloud, store = service_cloud(cloud_factory, tmp_path, subscriptions=[sub])
        op = cloud.operator()
        (a,) = seed(store, condition())  # one event: case.opened
        assert op.post(f"/v1/cases/{a}/actions", json={"action": "acknowledge"}).status_code == 200

        def subs() -> list[dict[str, Any]]:
            r = op.get("/v1/subscriptions")
            assert r.status_code == 200, r.text
            got: list[dict[str, Any]] = r.json()["subscriptions"]
            return got

        wait_until(lambda: subs()[0]["deliveries"]["delivered"] == 2, timeout=20, message="two deliveries")
        (s,) = subs()
        assert s == {
            "name": "workorders",
            "url": receiver.url + "/hook",
            "enabled": True,
            "configured": True,
            "disabled_reason": None,
            "failing_since": None,
            "deliveries": {"pending": 0, "delivered": 2, "expired": 0, "gone": 0},
        }
        assert len(receiver.wait_for(2)) == 2

        r = op.get("/v1/subscriptions/workorders/deliveries")
        assert r.status_code == 200, r.text
        attempts = r.json()["attempts"]
        assert [x["outcome"] for x in attempts] == ["delivered", "delivered"]
        assert attempts[0]["id"] > attempts[1]["id"] and all(x["http_status"] == 204 for x in attempts)
        assert all(_is_time(x["at"]) for x in attempts)
        assert (
            len(op.get("/v1/subscriptions/workorders/deliveries", params={"limit": 1}).json()["attempts"])
            == 1
        )

        # Replay: everything since an hour ago is sent again, with the same ids.
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        r = op.post("/v1/subscriptions/workorders/replay", json={"since": since})
        assert r.status_code == 200, r.text
        assert r.json() == {"subscription": "workorders", "since": since, "replayed": 2}
        got = receiver.wait_for(4, timeout=20)
        assert {q.headers["webhook-id"] for q in got[2:]} == {q.headers["webhook-id"] for q in got[:2]}
        future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
        assert op.post("/v1/subscriptions/workorders/replay", json={"since": future}).json()["replayed"] == 0

        for bad in (
            {"since": "yesterday"},
            {"since": "2026-01-01T00:00:00"},
            {},
            {"since": "2026-01-01T00:00:00Z", "x": 1},
        ):
            assert op.post("/v1/subscriptions/workorders/replay", json=bad).status_code == 422, bad
        for r in (
            op.get("/v1/subscriptions/nobody/deliveries"),
            op.post("/v1/subscriptions/nobody/replay", json={"since": since}),
        ):
            assert r.status_code == 404 and r.json()["error"] == "no_such_subscription", r.text
        assert op.get("/v1/subscriptions/workorders/deliveries", params={"limit": 1001}).status_code == 422
