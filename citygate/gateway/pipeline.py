"""Validation and group commit: messages in, durable readings out, then acks.

One thread. It takes up to ``commit_max_readings`` messages or waits at most
``commit_max_delay_s`` after the first, validates each against its device's
profile, commits readings and dead letters in one transaction, and only then
acknowledges the messages to the broker and records the devices' highest
committed sequence numbers for end-to-end confirmation.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import structlog

from citygate.contract.inventory import Inventory
from citygate.contract.topics import device_from_telemetry_topic
from citygate.contract.validation import Reading, Validator
from citygate.contract.wire import ts_to_wire
from citygate.errors import InventoryError
from citygate.gateway.intake import IncomingMessage, MqttIntake
from citygate.gateway.outbox import DeadLetter, NewReading, Outbox

log = structlog.get_logger("citygate.gateway.pipeline")


def wire_body(r: Reading) -> bytes:
    """The reading as it travels to the cloud (citygate.contract.wire.WireReading)."""
    return orjson.dumps(
        {"device_id": r.device_id, "ts": ts_to_wire(r.ts_ns), "seq": r.seq, "readings": r.values}
    )


@dataclass
class PendingAcks:
    """Highest committed seq per device, published every ack_interval_s (coalesced)."""

    interval_s: float
    _pending: dict[str, int] = field(default_factory=dict)
    _last_flush: float = 0.0

    def add(self, committed: dict[str, int]) -> None:
        for dev, seq in committed.items():
            if seq > self._pending.get(dev, -1):
                self._pending[dev] = seq

    def due(self, now: float) -> dict[str, int]:
        """What to publish now (everything pending when ``now`` is infinite)."""
        if not self._pending or now - self._last_flush < self.interval_s:
            return {}
        out, self._pending = self._pending, {}
        self._last_flush = now
        return out


class Pipeline:
    """The committer thread."""

    def __init__(
        self,
        *,
        intake: MqttIntake,
        outbox: Outbox,
        validator: Validator,
        inventory_path: Path,
        commit_max_readings: int,
        commit_max_delay_s: float,
        ack_interval_s: float,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.intake = intake
        self.outbox = outbox
        self.validator = validator
        self.inventory_path = inventory_path
        self.max_readings = commit_max_readings
        self.max_delay = commit_max_delay_s
        self.acks = PendingAcks(ack_interval_s)
        self.on_commit = on_commit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="citygate-pipeline", daemon=True)
        self._inventory_mtime = self._mtime()
        self.commits = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the group in hand (commit + ack), then stop."""
        self._stop.set()
        self._thread.join(timeout)

    def _mtime(self) -> float:
        try:
            return self.inventory_path.stat().st_mtime
        except OSError:
            return 0.0

    def _maybe_reload_inventory(self) -> None:
        mtime = self._mtime()
        if mtime == self._inventory_mtime:
            return
        try:
            inventory = Inventory.load(self.inventory_path)
        except InventoryError as e:
            log.error("inventory changed but does not load; keeping the previous one", error=str(e))
            self._inventory_mtime = mtime
            return
        self.validator = self.validator.with_inventory(inventory)
        self._inventory_mtime = mtime
        log.info("inventory reloaded", devices=len(inventory))

    def _gather(self) -> list[IncomingMessage]:
        q = self.intake.messages
        try:
            first = q.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.max_delay
        while len(batch) < self.max_readings:
            try:
                batch.append(q.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(q.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def process(self, batch: list[IncomingMessage]) -> None:
        """Validate, commit, then ack: the order is the guarantee."""
        readings: list[NewReading] = []
        dead: list[DeadLetter] = []
        validate = self.validator.validate
        device_of = device_from_telemetry_topic
        for m in batch:
            device_id = device_of(m.topic)
            if device_id is None:
                dead.append(
                    DeadLetter(m.received_ns, None, "bad_topic", f"unexpected topic {m.topic!r}", m.payload)
                )
                continue
            result = validate(device_id, m.payload, m.received_ns)
            if isinstance(result, Reading):
                readings.append(NewReading(device_id, result.seq, m.received_ns, wire_body(result)))
            else:
                dead.append(
                    DeadLetter(m.received_ns, device_id, result.reason.value, result.detail, m.payload)
                )
        committed = self.outbox.commit(readings, dead)
        # Durable now: acknowledge to the broker, then confirm end to end.
        self.intake.ack(batch)
        self.acks.add(committed.committed_seq)
        self.commits += 1
        self.on_commit()

    def _run(self) -> None:
        last_inventory_check = time.monotonic()
        while True:
            batch = self._gather()
            if batch:
                self.process(batch)
            now = time.monotonic()
            due = self.acks.due(now)
            if due:
                self.intake.publish_acks(due)
            if now - last_inventory_check > 2.0:
                self._maybe_reload_inventory()
                last_inventory_check = now
            if self._stop.is_set() and not batch:
                final = self.acks.due(float("inf"))
                if final:
                    self.intake.publish_acks(final)
                return
