"""The service layer end to end in a real cloud: a gateway's batch -> InfluxDB -> the rules ->
a case -> a signed CloudEvent at a receiver (judged by the cloudevents SDK and the
standardwebhooks verifier). On SQLite and on PostgreSQL; a PostgreSQL restart mid-run loses
no transition and opens no case twice."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.http import from_http
from standardwebhooks.webhooks import Webhook

from citygate.servers.influxdb import LocalInfluxDB
from citygate.servers.postgres import LocalPostgres
from citygate.service.settings import ServiceSettings
from citygate.service.subscriptions import Subscription
from citygate.testing.rules import PM_SPIKE_RULES
from citygate.testing.webhook_receiver import WebhookReceiver
from tests.cloud.conftest import RunningCloud, aq_values, post_batch, reading, unique_ts_ns
from tests.waiting import wait_until

pytestmark = pytest.mark.servers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def service_cloud(
    cloud_factory: Callable[..., RunningCloud],
    influxdb: LocalInfluxDB,
    tmp_path: Path,
    store_url: str,
    receiver: WebhookReceiver,
    rules_text: str = PM_SPIKE_RULES,
) -> RunningCloud:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "air.v1.toml").write_text(rules_text)
    db = f"svc_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(db)
    service = ServiceSettings(
        enabled=True,
        store_url=store_url,
        rules_dirs=[rules],
        shipped_rules=False,
        evaluate_every_s=0.1,
        checkpoint_every_s=0.2,
        subscriptions=[Subscription(name="city", url=receiver.url, secrets=(SECRET,))],
        webhook_allow_http_loopback=True,
    )
    return cloud_factory(influx_url=influxdb.url, influx_db=db, service=service)


def pm(value: float, ts_ns: int) -> dict[str, Any]:
    v = aq_values()
    v["pm2_5"] = value
    return reading("dev-a", ts_ns=ts_ns, values=v)


def judged(receiver: WebhookReceiver, n: int) -> list[Any]:
    events = []
    for r in receiver.wait_for(n, timeout=30):
        Webhook(SECRET).verify(r.body, r.headers)
        events.append(from_http(r.headers, r.body))
    return sorted(events, key=lambda e: e["sequence"])


def feed_empty(cloud: RunningCloud) -> bool:
    service = cloud.app.state.cloud.service
    return service is not None and service.feed.depth() == 0 and service.stats.passes > 0


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_reading_over_the_line_opens_a_case_and_the_city_hears_of_it(
    cloud_factory: Callable[..., RunningCloud],
    influxdb: LocalInfluxDB,
    tmp_path: Path,
    receiver: WebhookReceiver,
    request: pytest.FixtureRequest,
    store: str,
) -> None:
    if store == "sqlite":
        url = f"sqlite:///{tmp_path}/service.db"
    else:
        pg: LocalPostgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"e2e_{uuid.uuid4().hex[:8]}")
    cloud = service_cloud(cloud_factory, influxdb, tmp_path, url, receiver)
    gw = cloud.gateway()
    t1 = unique_ts_ns()
    t0 = t1 - 60 * 10**9
    batch = [pm(12.0, t0), pm(150.0, t1)]
    assert post_batch(gw, batch).status_code == 200
    opened = judged(receiver, 1)[0]
    assert opened["type"] == "org.citygate.case.opened"
    assert opened.data["case"]["rule"] == "air_quality.pm_spike"
    assert opened.data["case"]["subject"] == "dev-a" and opened.data["case"]["district"] == "centre"
    assert opened.data["condition_ns"] == t1 and opened.data["value"] == 150.0
    # The gateway sends the same batch again (its ack was lost): nothing happens twice.
    assert post_batch(gw, batch).status_code == 200
    wait_until(lambda: feed_empty(cloud), message="the feed evaluated")
    assert post_batch(gw, [pm(10.0, t1 + 60 * 10**9)]).status_code == 200
    events = judged(receiver, 2)
    assert [e["type"] for e in events] == ["org.citygate.case.opened", "org.citygate.case.cleared"]
    wait_until(lambda: feed_empty(cloud), message="the feed evaluated")
    assert len(receiver.requests) == 2
    store_ = cloud.app.state.cloud.service.store
    (case,) = store_.list_cases()
    assert case["cleared_ns"] == t1 + 60 * 10**9 and case["status"] == "new"


def test_a_reading_the_database_refused_never_reaches_the_rules(
    cloud_factory: Callable[..., RunningCloud],
    influxdb: LocalInfluxDB,
    tmp_path: Path,
    receiver: WebhookReceiver,
) -> None:
    """The rules' copy of a batch is encoded while InfluxDB writes it; a point InfluxDB then
    refuses (answered write_rejected, never stored) is not in what the rules judge."""
    cloud = service_cloud(cloud_factory, influxdb, tmp_path, f"sqlite:///{tmp_path}/service.db", receiver)
    db = cloud.settings.influx_db
    # Someone else wrote "battery" as an integer into this measurement's shard before.
    influxdb.write(db, f"air_quality,device_id=legacy battery=5i {unique_ts_ns()}".encode())
    t1 = unique_ts_ns()
    spike = pm(150.0, t1)
    spike["readings"]["battery"] = 80.0  # a float: refused, and with it the spike
    resp = post_batch(cloud.gateway(), [pm(12.0, t1 - 60 * 10**9), spike])
    assert resp.status_code == 200, resp.text
    assert [r["reason"] for r in resp.json()["rejected"]] == ["write_rejected"]
    wait_until(lambda: feed_empty(cloud), message="the feed evaluated")
    service = cloud.app.state.cloud.service
    assert service.stats.readings == 1  # the stored reading only
    assert service.store.list_cases() == [] and receiver.requests == []


def test_postgresql_restarted_mid_run_loses_nothing_and_opens_nothing_twice(
    cloud_factory: Callable[..., RunningCloud],
    influxdb: LocalInfluxDB,
    tmp_path: Path,
    receiver: WebhookReceiver,
) -> None:
    pg = LocalPostgres(tmp_path / "pg")
    pg.start()
    try:
        url = pg.create_database("city")
        cloud = service_cloud(cloud_factory, influxdb, tmp_path, url, receiver)
        gw = cloud.gateway()
        t = unique_ts_ns()
        assert post_batch(gw, [pm(150.0, t)]).status_code == 200
        judged(receiver, 1)
        pg.kill()
        # The store is down: the batch is not answered 200 (the gateway keeps it) ...
        down = post_batch(gw, [pm(10.0, t + 10**9)])
        assert down.status_code == 503 and down.headers["retry-after"]
        pg.start()
        # ... and when it is back the gateway's retry is evaluated once.
        wait_until(lambda: post_batch(gw, [pm(10.0, t + 10**9)]).status_code == 200, timeout=60)
        events = judged(receiver, 2)
        assert [e["type"] for e in events] == ["org.citygate.case.opened", "org.citygate.case.cleared"]
        wait_until(lambda: feed_empty(cloud), message="the feed evaluated")
        assert len(cloud.app.state.cloud.service.store.list_cases(open_only=False)) == 1
        assert len(receiver.requests) == 2
    finally:
        pg.remove()


def test_a_day_of_backlog_drained_at_once_opens_what_the_readings_say_marked_late(
    cloud_factory: Callable[..., RunningCloud],
    influxdb: LocalInfluxDB,
    tmp_path: Path,
    receiver: WebhookReceiver,
) -> None:
    cloud = service_cloud(cloud_factory, influxdb, tmp_path, f"sqlite:///{tmp_path}/s.db", receiver)
    gw = cloud.gateway()
    # A day held at the gateway: a reading every 10 minutes, two spikes, each over by noon.
    step = 600 * 10**9
    start = unique_ts_ns() - 86_400 * 10**9
    values = [12.0] * 144
    for i in (30, 31, 32, 100, 101):
        values[i] = 150.0
    day = [pm(v, start + i * step) for i, v in enumerate(values)]
    for i in range(0, len(day), 40):  # drained as fast as the gateway can send
        assert post_batch(gw, day[i : i + 40]).status_code == 200
    events = judged(receiver, 4)
    assert [e["type"].removeprefix("org.citygate.case.") for e in events] == [
        "opened",
        "cleared",
        "recurred",
        "cleared",
    ]
    assert [e.data["condition_ns"] for e in events] == [start + i * step for i in (30, 33, 100, 102)]
    assert all(e.data["late"] for e in events)
    (case,) = cloud.app.state.cloud.service.store.list_cases()
    assert case["occurrences"] == 2 and case["late"]


def test_two_replicas_on_one_store_one_case_each_event_delivered_once(
    cloud_factory: Callable[..., RunningCloud],
    influxdb: LocalInfluxDB,
    tmp_path: Path,
    receiver: WebhookReceiver,
    postgres: LocalPostgres,
) -> None:
    url = postgres.create_database(f"replicas_{uuid.uuid4().hex[:8]}")
    a = service_cloud(cloud_factory, influxdb, tmp_path, url, receiver)
    b = service_cloud(cloud_factory, influxdb, tmp_path, url, receiver)
    t = unique_ts_ns()
    spikes = [pm(150.0, t), pm(10.0, t + 10**9), pm(160.0, t + 2 * 10**9)]
    # A gateway failing over between replicas sends the same batch to both.
    for cloud in (a, b):
        assert post_batch(cloud.gateway(), spikes).status_code == 200
    events = judged(receiver, 3)
    assert [e["type"].removeprefix("org.citygate.case.") for e in events] == ["opened", "cleared", "recurred"]
    leaders = [c.app.state.cloud.service.stats.leader for c in (a, b)]
    assert leaders.count(True) == 1  # one evaluator per store
    wait_until(lambda: a.app.state.cloud.service.feed.depth() == 0, message="the feed evaluated")
    assert len(a.app.state.cloud.service.store.list_cases(open_only=False)) == 1
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 3


FORECAST = """\
profile = "air_quality"
version = 1

[rules.pm_rising]
title = "PM2.5 will pass 100 within 2 hours"
service = "environment"
severity = "info"
when = "forecast(pm2_5, 2h) > 100"
window = "1h"
clear = "pm2_5 < 20"
"""


def test_a_forecast_case_learns_whether_it_came_true(
    cloud_factory: Callable[..., RunningCloud],
    influxdb: LocalInfluxDB,
    tmp_path: Path,
    receiver: WebhookReceiver,
) -> None:
    store_url = f"sqlite:///{tmp_path}/s.db"
    cloud = service_cloud(cloud_factory, influxdb, tmp_path, store_url, receiver, rules_text=FORECAST)
    gw = cloud.gateway()
    step = 600 * 10**9
    start = unique_ts_ns() - 6 * 3600 * 10**9
    # dev-a rises 10 an interval and keeps rising past 100; dev-b rises as fast, then levels off at 60.
    rising = [pm(min(30.0 + 10 * i, 250.0), start + i * step) for i in range(24)]
    levels = [min(30.0 + 10 * i, 60.0) for i in range(24)]  # 4 h: past the forecast and its grace
    flat = [
        reading("dev-b", ts_ns=start + i * step, values={**aq_values(), "pm2_5": v})
        for i, v in enumerate(levels)
    ]
    for r in zip(rising, flat, strict=True):
        assert post_batch(gw, list(r)).status_code == 200
    wait_until(lambda: feed_empty(cloud), message="the feed evaluated")
    store = cloud.app.state.cloud.service.store
    outcomes = {c["subject"]: c["forecast_outcome"] for c in store.list_cases()}
    assert outcomes == {"dev-a": "came_true", "dev-b": "did_not"}
    notes = [
        h["note"] for h in store.history(next(c["id"] for c in store.list_cases() if c["subject"] == "dev-a"))
    ]
    assert any("the forecast came true" in n for n in notes)


def test_workers_in_their_own_process_survive_kill_9_and_ingest_never_waits(
    cloud_factory: Callable[..., RunningCloud],
    influxdb: LocalInfluxDB,
    tmp_path: Path,
    receiver: WebhookReceiver,
) -> None:
    """runner = "separate": the cloud only feeds; `citygate service run` evaluates and delivers.
    Killed (-9) and started again, it loses no transition and repeats none."""
    import subprocess
    import sys

    from citygate.config import toml_section

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "air.v1.toml").write_text(PM_SPIKE_RULES)
    db = f"svc_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(db)
    service = {
        "enabled": True,
        "runner": "separate",
        "store_url": f"sqlite:///{tmp_path}/s.db",
        "rules_dirs": [str(rules)],
        "shipped_rules": False,
        "evaluate_every_s": 0.1,
        "checkpoint_every_s": 0.2,
        "subscriptions": [{"name": "city", "url": receiver.url, "secrets": [SECRET]}],
        "webhook_allow_http_loopback": True,
    }
    cloud = cloud_factory(influx_url=influxdb.url, influx_db=db, service=ServiceSettings(**service))
    s = cloud.settings
    cfg = tmp_path / "service.toml"
    cfg.write_text(
        toml_section(
            "cloud",
            {
                "tls_cert": str(s.tls_cert),
                "tls_key": str(s.tls_key),
                "client_ca": str(s.client_ca),
                "client_crl": str(s.client_crl),
                "inventory": str(s.inventory),
                "log_level": "warning",
                "service": service,
            },
        )
    )

    def workers() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "citygate", "service", "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "service.log").open("ab"),
        )

    gw = cloud.gateway()
    t = unique_ts_ns()
    proc = workers()
    try:
        assert post_batch(gw, [pm(150.0, t)]).status_code == 200
        judged(receiver, 1)
        proc.kill()
        proc.wait(10)
        # No workers at all: ingest answers as before, the feed keeps the batch.
        assert post_batch(gw, [pm(10.0, t + 10**9)]).status_code == 200
        assert len(receiver.requests) == 1
        proc = workers()
        events = judged(receiver, 2)
        assert [e["type"] for e in events] == ["org.citygate.case.opened", "org.citygate.case.cleared"]
        wait_until(lambda: cloud.app.state.cloud.service.feed.depth() == 0, message="the feed evaluated")
        assert len(receiver.requests) == 2
        assert len(cloud.app.state.cloud.service.store.list_cases(open_only=False)) == 1
    finally:
        proc.kill()
        proc.wait(10)
