"""The evaluator pass of the service layer on a real store: checkpoints, a batch that commits
after a higher id was taken, and a crash between checkpoints (nothing recorded twice)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import insert

from citygate.contract.profiles import ProfileRegistry
from citygate.service.layer import ServiceLayer
from citygate.service.schema import case_history, reading_feed
from citygate.service.settings import ServiceSettings
from citygate.testing.rules import PM_SPIKE_RULES
from tests.waiting import wait_until

S = 10**9
T0 = 1_700_000_000 * S


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> ServiceSettings:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "air.v1.toml").write_text(PM_SPIKE_RULES)
    return ServiceSettings(enabled=True, store_url=store_url, rules_dirs=[rules], shipped_rules=False)


def layer(settings: ServiceSettings) -> ServiceLayer:
    from citygate.service.db import migrate

    svc = ServiceLayer(settings, ProfileRegistry(), lambda _d: None)
    migrate(svc.engine)
    return svc


def feed(svc: ServiceLayer, batch_id: int, device: str, ts_s: int, pm: float) -> None:
    body = orjson.dumps([[device, "air_quality", T0 + ts_s * S, {"pm2_5": pm}]])
    with svc.engine.begin() as conn:
        conn.execute(
            insert(reading_feed).values(
                id=batch_id, kind="readings", gateway_id="gw", received_ms=0, count=1, body=body
            )
        )


def actions(svc: ServiceLayer) -> list[str]:
    with svc.engine.connect() as conn:
        return [r.action for r in conn.execute(case_history.select().order_by(case_history.c.id))]


def test_a_batch_committed_behind_a_taken_id_is_evaluated_after_the_checkpoint(
    settings: ServiceSettings,
) -> None:
    svc = layer(settings)
    feed(svc, 5, "dev-a", 10, 150.0)
    svc.evaluate_once(T0, checkpoint=False)
    feed(svc, 3, "dev-b", 5, 150.0)  # a concurrent ingest transaction that committed later
    svc.evaluate_once(T0, checkpoint=False)
    assert actions(svc) == ["opened"]  # id 3 is below what was taken: not seen yet ...
    svc.evaluate_once(T0, checkpoint=True)
    svc.evaluate_once(T0, checkpoint=False)
    assert actions(svc) == ["opened", "opened"]  # ... and evaluated once the feed is read again
    assert svc.feed.depth() == 1  # dev-b's batch waits for the next checkpoint
    svc.evaluate_once(T0, checkpoint=True)
    assert svc.feed.depth() == 0
    svc.engine.dispose()


def test_a_crash_between_checkpoints_re_evaluates_and_records_nothing_twice(
    settings: ServiceSettings,
) -> None:
    first = layer(settings)
    feed(first, 1, "dev-a", 10, 150.0)
    first.evaluate_once(T0, checkpoint=True)
    feed(first, 2, "dev-a", 20, 10.0)
    feed(first, 3, "dev-a", 30, 160.0)
    first.evaluate_once(T0, checkpoint=False)
    assert actions(first) == ["opened", "cleared", "recurred"]
    first.engine.dispose()  # killed: batches 2 and 3 evaluated, not checkpointed
    second = layer(settings)
    second.evaluate_once(T0, checkpoint=True)
    assert actions(second) == ["opened", "cleared", "recurred"]
    assert second.feed.depth() == 0
    second.engine.dispose()


@pytest.mark.parametrize("busy", [True, False])
def test_the_evaluator_yields_to_ingest_only_while_ingest_is_busy(
    settings: ServiceSettings, busy: bool
) -> None:
    svc = ServiceLayer(settings, ProfileRegistry(), lambda _d: None, busy=lambda: busy)
    svc.start()
    try:
        feed(svc, 1, "dev-a", 10, 150.0)
        svc.wake()
        wait_until(lambda: "opened" in actions(svc), timeout=30, message="the case opened")
        wait_until(lambda: svc.stats.passes >= 2, timeout=30, message="a second pass")
        # Yielding delays the rules; it never skips a reading (the case opened either way).
        assert (svc.stats.yielded_s > 0) is busy
    finally:
        svc.stop()


def test_the_checkpoint_waits_while_readings_arrive_up_to_its_maximum(settings: ServiceSettings) -> None:
    svc = layer(settings.model_copy(update={"checkpoint_every_s": 0.001, "checkpoint_max_s": 3600.0}))
    feed(svc, 1, "dev-a", 10, 150.0)
    time.sleep(0.002)  # the interval passes (the clock, not synchronisation)
    svc.evaluate_once(T0)
    assert svc.stats.checkpoints == 0  # a batch came in this pass: its write waits
    svc.evaluate_once(T0)
    assert svc.stats.checkpoints == 1  # nothing new: now
    overdue = layer(settings.model_copy(update={"checkpoint_every_s": 0.001, "checkpoint_max_s": 0.001}))
    feed(overdue, 2, "dev-b", 10, 150.0)
    time.sleep(0.002)
    overdue.evaluate_once(T0)
    assert overdue.stats.checkpoints == 1  # past checkpoint_max_s it does not wait
