"""The evaluator pass of the service layer on a real store: checkpoints, a batch that commits
after a higher id was taken, and a crash between checkpoints (nothing recorded twice)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import insert, select

from citygate.contract.profiles import ProfileRegistry
from citygate.contract.readings import new_reading
from citygate.service.layer import ServiceLayer, unpack_state
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


def test_the_evaluator_does_not_yield_to_a_busy_ingest_that_leaves_the_lock_free(
    settings: ServiceSettings,
) -> None:
    """A steady city rate keeps ingest busy but uses a few per cent of the interpreter: an
    evaluator that yielded there fell half a minute behind 5,000 readings/s."""
    svc = layer(settings)
    svc._busy, svc._share = (lambda: True), (lambda: 1.0)
    for i in range(1, 4):
        feed(svc, i, f"dev-{i}", 10, 150.0)
    svc.evaluate_once(T0, checkpoint=False)
    assert svc.stats.yielded_s == 0.0
    assert actions(svc) == ["opened"] * 3
    svc.engine.dispose()


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


def test_a_pass_that_evaluated_nothing_saves_nothing(settings: ServiceSettings) -> None:
    svc = layer(settings.model_copy(update={"checkpoint_every_s": 0.001, "checkpoint_max_s": 60.0}))
    feed(svc, 1, "dev-a", 10, 150.0)
    svc.evaluate_once(T0, checkpoint=True)
    assert svc.stats.checkpoints == 1
    time.sleep(0.002)  # the interval passes (the clock, not synchronisation)
    svc.evaluate_once(T0 + S)
    svc.evaluate_once(T0 + 2 * S)
    assert svc.stats.checkpoints == 1  # the same state but for a watermark a second on
    svc.evaluate_once(T0 + 70 * S)  # the reading saved was at T0 + 10 s
    assert svc.stats.checkpoints == 2  # the saved watermark lags by at most checkpoint_max_s
    feed(svc, 2, "dev-a", 75, 150.0)
    svc.evaluate_once(T0 + 75 * S)
    time.sleep(0.002)
    svc.evaluate_once(T0 + 75 * S)
    assert svc.stats.checkpoints == 3  # a batch evaluated: saved at the next quiet pass
    svc.engine.dispose()


def _state_row(svc: ServiceLayer) -> tuple[bytes | None, object]:
    from citygate.service.schema import evaluator_state

    with svc.engine.connect() as conn:
        row = conn.execute(select(evaluator_state.c.packed, evaluator_state.c.snapshot)).one()
    return row.packed, row.snapshot


PM_HOURLY_RULE = """
[rules.pm_hourly]
title = "PM2.5 hourly average high"
service = "environment"
severity = "warning"
when = "avg(pm2_5, 1h) > 25"
clear = "avg(pm2_5, 1h) < 20"
"""


def test_the_checkpoint_saves_the_state_compressed(settings: ServiceSettings) -> None:
    rules = settings.rules_dirs[0] / "air.v1.toml"
    rules.write_text(rules.read_text() + PM_HOURLY_RULE)
    svc = layer(settings)
    for i in range(1, 401):  # a window of 400 points: the bulk of a real state
        feed(svc, i, "dev-a", i, 10.0 + (i % 7))
    while svc._taken_through < 400:
        svc.evaluate_once(T0, checkpoint=False)
    svc.evaluate_once(T0, checkpoint=True)
    packed, snapshot = _state_row(svc)
    assert snapshot is None and packed is not None
    state = unpack_state(packed)
    as_json = orjson.dumps(state)
    assert len(packed) * 3 < len(as_json)  # compressed: under a third of the JSON
    assert svc.stats.state_bytes == len(packed)
    assert orjson.loads(as_json) == orjson.loads(orjson.dumps(svc._evaluator.snapshot()))  # type: ignore[union-attr]
    svc.engine.dispose()
    again = layer(settings)  # a restart restores it: the window goes on with its 400 points
    again.evaluate_once(T0, checkpoint=False)
    assert orjson.loads(orjson.dumps(again._evaluator.snapshot())) == orjson.loads(as_json)  # type: ignore[union-attr]
    again.engine.dispose()


def test_the_feed_stores_a_readings_batch_compressed(settings: ServiceSettings) -> None:
    """Ingest's write for the rules is a tenth of the batch's JSON; the evaluator reads it, and
    bodies written uncompressed before (the ``feed`` helper above writes those) alike."""
    svc = layer(settings)
    readings = [
        new_reading(f"dev-{i % 50}", "air_quality", 1, "air_quality", T0 + i * S, i, {"pm2_5": 150.0})
        for i in range(1000)
    ]
    assert svc.feed.append_readings("gw", readings)
    with svc.engine.connect() as conn:
        (body,) = conn.execute(select(reading_feed.c.body)).one()
    as_json = orjson.dumps([(r.device_id, r.profile, r.ts_ns, r.values) for r in readings])
    assert len(body) * 5 < len(as_json)
    svc.evaluate_once(T0 + 2000 * S, checkpoint=True)
    assert actions(svc) == ["opened"] * 50  # one case per device: every reading was read back
    svc.engine.dispose()


def test_a_state_saved_as_json_before_migration_0004_is_restored(settings: ServiceSettings) -> None:
    from citygate.service.db import downgrade
    from citygate.service.schema import evaluator_state

    first = layer(settings)
    feed(first, 1, "dev-a", 10, 150.0)
    first.evaluate_once(T0, checkpoint=True)
    assert actions(first) == ["opened"]
    packed, _ = _state_row(first)
    assert packed is not None
    downgrade(first.engine, "0003")  # the store as the code before 0004 left it: JSON ...
    with first.engine.connect() as conn:
        (old,) = conn.execute(select(evaluator_state.c.snapshot)).one()
    assert old == unpack_state(packed)  # ... which the downgrade wrote back from the packed state
    first.engine.dispose()
    second = layer(settings)  # migrates to head again; the JSON row is read as it is
    feed(second, 2, "dev-a", 20, 10.0)
    second.evaluate_once(T0, checkpoint=True)
    assert actions(second) == ["opened", "cleared"]  # the open condition was restored, not lost
    packed, snapshot = _state_row(second)
    assert packed is not None and snapshot is None
    second.engine.dispose()


@pytest.mark.parametrize("share", [0.05, 0.9, 1.0])
def test_while_ingest_wants_the_interpreter_a_pass_takes_one_batch(
    settings: ServiceSettings, share: float
) -> None:
    from citygate.service.db import migrate

    # Share 1: no pause, so the test waits for nothing; what it checks is how much a pass takes.
    svc = ServiceLayer(
        settings.model_copy(update={"evaluator_share_busy": 1.0}),
        ProfileRegistry(),
        lambda _d: None,
        busy=lambda: True,
        share=lambda: share,
    )
    migrate(svc.engine)
    for i in range(1, 4):
        feed(svc, i, f"dev-{i}", 10, 150.0)
    svc.evaluate_once(T0, checkpoint=False)
    # Ingest wants some of the time: one batch (taking 200 at once held the interpreter lock for
    # seconds); the rest waits in the feed for the next passes. Busy but idle: all.
    assert svc.stats.batches == (1 if share < 1 else 3)
    svc.evaluate_once(T0, checkpoint=False)
    svc.evaluate_once(T0, checkpoint=False)
    assert svc.stats.batches == 3
    assert actions(svc) == ["opened"] * 3
    svc.engine.dispose()


@pytest.mark.parametrize("others", [0.0, 2.0])
def test_the_evaluator_of_service_run_yields_to_a_busy_machine_only(
    settings: ServiceSettings, others: float
) -> None:
    """In its own process there is no ingest to ask: on a small machine the cloud, InfluxDB and
    the store beside it are what it makes room for (niceness alone did not: bench/RESULTS.md)."""
    from citygate.service.db import migrate
    from citygate.service.machine_load import SAMPLE_S, MachineLoad

    clock = [0.0]
    busy = [0.0]
    machine = MachineLoad(
        full_load=0.5,
        min_share=0.5,
        busy_s=lambda: busy[0],
        own_s=lambda: 0.0,
        cpus=2,
        clock=lambda: clock[0],
    )
    for _ in range(50):  # the others used ``others`` of the two cores for ten seconds
        clock[0] += SAMPLE_S
        busy[0] += others * SAMPLE_S
        machine.others()
    svc = ServiceLayer.own_process(settings, ProfileRegistry(), lambda _d: None, machine=machine)
    migrate(svc.engine)
    for i in range(1, 4):
        feed(svc, i, f"dev-{i}", 10, 150.0)
    svc.evaluate_once(T0, checkpoint=False)
    assert svc.stats.batches == (1 if others else 3)  # busy: a batch a pass, and a pause
    assert (svc.stats.yielded_s > 0) is bool(others)
    svc.evaluate_once(T0, checkpoint=False)
    svc.evaluate_once(T0, checkpoint=False)
    assert actions(svc) == ["opened"] * 3  # later, never not at all
    svc.engine.dispose()


def test_service_run_takes_its_machine_load_rule_from_the_settings(settings: ServiceSettings) -> None:
    from citygate.service.machine_load import MachineLoad

    svc = ServiceLayer.own_process(
        settings.model_copy(update={"machine_full_load": 0.5, "evaluator_share_busy": 0.2}),
        ProfileRegistry(),
        lambda _d: None,
    )
    machine = getattr(svc._share, "__self__", None)
    assert isinstance(machine, MachineLoad)
    assert (machine.full_load, machine.min_share) == (0.5, 0.2)
    svc.engine.dispose()
