"""The pipeline's rule, with no broker and no database: a batch is acknowledged to the broker
only after the outbox's commit returned, and never while the commit fails (OutboxWriteError).

Fakes stand in for the intake and the outbox (the seams are ``pipeline.Intake`` and
``pipeline.CommitSink``) and write every call into one shared log, so the order is checked.
"""

from __future__ import annotations

import queue
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import orjson
import pytest

from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.topics import telemetry_topic
from citygate.contract.validation import Validator
from citygate.errors import OutboxWriteError
from citygate.gateway.intake import IncomingMessage
from citygate.gateway.outbox import CommitResult, DeadLetter, NewReading
from citygate.gateway.pipeline import Pipeline
from tests.waiting import wait_until

NOW_MS = 1_700_000_000_000
NOW = NOW_MS * 1_000_000
DEVICE = "aq-1"
AQ = {"pm2_5": 12.5, "pm10": 20.1, "no2": 14.2, "o3": 30.0, "co": 0.4, "temperature": 18.2, "humidity": 55.0}


class FakeIntake:
    def __init__(self, log: list[str]) -> None:
        self.messages: queue.Queue[IncomingMessage] = queue.Queue()
        self.log = log
        self.acked: list[int] = []
        self.published: list[dict[str, list[int]]] = []

    def ack(self, messages: Iterable[IncomingMessage]) -> int:
        mids = [m.mid for m in messages]
        self.log.append(f"ack {mids}")
        self.acked.extend(mids)
        return len(mids)

    def publish_acks(self, handled: Mapping[str, list[int]]) -> None:
        self.log.append("publish_acks")
        self.published.append(dict(handled))


class FakeOutbox:
    """Records each commit; raises OutboxWriteError for the first ``fail`` calls (or always)."""

    def __init__(self, log: list[str], fail: int = 0, on_fail: object = None) -> None:
        self.log = log
        self.fail = fail
        self.on_fail = on_fail
        self.stored: list[NewReading] = []

    def commit(
        self,
        readings: Sequence[NewReading],
        deadletters: Sequence[DeadLetter] = (),
        *,
        now_ns: int | None = None,
        free_disk: int | None = None,
        counters: Mapping[str, int] | None = None,
    ) -> CommitResult:
        if self.fail:
            self.fail -= 1
            self.log.append("commit failed")
            if callable(self.on_fail):
                self.on_fail()
            raise OutboxWriteError("disk full (fake)")
        self.log.append("commit returned")
        self.stored.extend(readings)
        committed: dict[str, list[int]] = {}
        for r in readings:
            if r.seq is not None:
                committed.setdefault(r.device_id, []).append(r.seq)
        return CommitResult(stored=len(readings), refused=0, committed=committed)


def message(seq: int, mid: int, *, ahead_ms: int = 0, clock_trusted: bool = True) -> IncomingMessage:
    payload = orjson.dumps({"ts": NOW_MS + ahead_ms, "seq": seq, "readings": AQ})
    return IncomingMessage(telemetry_topic(DEVICE), payload, mid, 1, 1, NOW, False, clock_trusted)


def make_pipeline(tmp_path: Path, intake: FakeIntake, outbox: FakeOutbox) -> Pipeline:
    inventory = Inventory().with_devices(
        DeviceRecord(device_id=DEVICE, profile="air_quality", profile_version=1)
    )
    return Pipeline(
        intake=intake,
        outbox=outbox,
        validator=Validator(ProfileRegistry(), inventory),
        inventory_path=tmp_path / "inventory.json",  # never there: no reload
        commit_max_readings=100,
        commit_max_delay_s=0.01,
        ack_interval_s=0.0,
        clock=lambda: NOW,
    )


def test_a_batch_is_acked_only_after_its_commit_returned(tmp_path: Path) -> None:
    log: list[str] = []
    intake, outbox = FakeIntake(log), FakeOutbox(log)
    pipeline = make_pipeline(tmp_path, intake, outbox)
    pipeline.process([message(1, mid=11), message(2, mid=12)])
    assert log == ["commit returned", "ack [11, 12]"]
    assert [r.seq for r in outbox.stored] == [1, 2]


def test_a_failing_commit_is_retried_and_the_ack_waits_for_it(tmp_path: Path) -> None:
    log: list[str] = []
    intake, outbox = FakeIntake(log), FakeOutbox(log, fail=1)
    pipeline = make_pipeline(tmp_path, intake, outbox)
    pipeline.process([message(1, mid=11)])
    assert log == ["commit failed", "commit returned", "ack [11]"]
    assert pipeline.commit_failures == 1


def test_a_batch_whose_commit_never_succeeds_is_never_acked(tmp_path: Path) -> None:
    log: list[str] = []
    intake = FakeIntake(log)
    pipeline: Pipeline
    # The commit fails until the pipeline is told to stop (asked from inside the failing commit,
    # so the retry's wait returns at once): it gives up with the batch not acked.
    outbox = FakeOutbox(log, fail=10**9, on_fail=lambda: pipeline.request_stop())
    pipeline = make_pipeline(tmp_path, intake, outbox)
    with pytest.raises(OutboxWriteError):
        pipeline.process([message(1, mid=11)])
    assert log == ["commit failed"]
    assert intake.acked == [] and intake.published == []


def test_the_thread_commits_then_acks_then_confirms_to_the_device(tmp_path: Path) -> None:
    log: list[str] = []
    intake, outbox = FakeIntake(log), FakeOutbox(log)
    pipeline = make_pipeline(tmp_path, intake, outbox)
    pipeline.start()
    try:
        assert pipeline.alive()
        intake.messages.put(message(7, mid=70))
        wait_until(lambda: intake.published, message=lambda: f"the end-to-end ack published, log {log}")
    finally:
        pipeline.stop()
    assert not pipeline.alive()
    assert log[:3] == ["commit returned", "ack [70]", "publish_acks"]
    assert intake.published[0] == {DEVICE: [7]}


def future_message(seq: int, mid: int, *, clock_trusted: bool) -> IncomingMessage:
    """A reading an hour ahead of the gateway's clock (rejected: timestamp_in_future)."""
    return message(seq, mid, ahead_ms=3_600_000, clock_trusted=clock_trusted)


def test_a_rejection_for_time_is_not_confirmed_when_the_stamp_was_the_unchecked_clock(tmp_path: Path) -> None:
    """The cloud's first answer can come between a message's stamp and its judgement: the
    stamp is still the gateway's unchecked clock, so the rejection must not be confirmed (the
    device would drop a good reading). CI saw it: the reading confirmed, never stored."""
    intake, outbox = FakeIntake([]), FakeOutbox([])
    pipeline = make_pipeline(tmp_path, intake, outbox)
    pipeline.process([future_message(5, mid=50, clock_trusted=False)])
    assert intake.acked == [50]  # the MQTT message is done with: dead-lettered
    assert pipeline.acks.due(float("inf")) == {}, "the device was told to drop the reading"


def test_a_rejection_for_time_is_confirmed_when_the_stamp_was_the_checked_clock(tmp_path: Path) -> None:
    intake, outbox = FakeIntake([]), FakeOutbox([])
    pipeline = make_pipeline(tmp_path, intake, outbox)
    pipeline.process([future_message(5, mid=50, clock_trusted=True)])
    assert pipeline.acks.due(float("inf")) == {DEVICE: [5]}
