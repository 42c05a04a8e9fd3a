"""Validation and group commit: messages in, durable readings out, then acks.

One thread. It gathers messages until they fill ``commit_fill_bytes`` (whole
pages: at a high rate that takes milliseconds), or the first has waited
``commit_max_delay_s`` (at city rates: the latency budget buys fewer, fuller
commits, and fewer flash writes), or ``commit_max_readings`` are in hand. It
validates each against its device's profile, commits readings and dead letters
in one transaction, and only then acknowledges the messages to the broker and
records the devices' committed sequence numbers for end-to-end confirmation.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import orjson
import structlog

from citygate.contract.filestamp import file_stamp
from citygate.contract.inventory import Inventory
from citygate.contract.readings import Reading, Rejection, RejectReason
from citygate.contract.topics import device_from_telemetry_topic
from citygate.contract.validation import Validator
from citygate.contract.wire import stored_body
from citygate.errors import InventoryError, OutboxWriteError
from citygate.gateway.dedup import RecentSeqs
from citygate.gateway.intake import IncomingMessage
from citygate.gateway.outbox import CommitResult, DeadLetter, NewReading
from citygate.gateway.worker import Worker

log = structlog.get_logger("citygate.gateway.pipeline")


_NOT_CONFIRMED = frozenset({RejectReason.UNKNOWN_DEVICE, RejectReason.UNKNOWN_PROFILE})
# Judged against the gateway's clock, which may be the wrong one (IncomingMessage.clock_trusted).
_TIME_REASONS = frozenset({RejectReason.TIMESTAMP_IN_FUTURE, RejectReason.TIMESTAMP_TOO_OLD})
# Dead-letter reason of a telemetry message the broker delivered from its retained store.
RETAINED = "retained"


def seq_of(payload: bytes) -> int | None:
    """The seq of a rejected JSON-form payload, if it has a usable one (rejection path only)."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    seq = doc.get("seq") if isinstance(doc, dict) else None
    return seq if type(seq) is int and seq >= 0 else None


def recheck(validator: Validator, body: bytes, received_ns: int) -> Rejection | None:
    """The gateway's own verdict, now, on a stored reading (its wire form) as of when it was
    received: the rejection the gateway would make, or None if it would take it. A refusal
    by the cloud that the gateway would not make is not final (docs/GATEWAY.md, "Held readings")."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Rejection(RejectReason.MALFORMED_JSON, "the stored wire form is not JSON")
    if not isinstance(doc, dict) or not isinstance(device_id := doc.pop("device_id", None), str):
        return Rejection(RejectReason.BAD_SHAPE, "the stored wire form has no device_id")
    doc.pop("received_ms", None)
    result = validator.validate_obj(device_id, doc, received_ns)
    return result if isinstance(result, Rejection) else None


PAGE = 4096  # a flash page, for the floor below
GATHER_SLICE_S = 0.05  # while a group waits out commit_max_delay_s, how often it looks for more


@dataclass
class CommitStats:
    """Commits so far, and the floor of what they had to write: each commit's stored payloads
    rounded up to whole 4 KiB pages (the bytes no design could avoid at this grouping)."""

    commits: int = 0
    readings: int = 0
    floor_bytes: int = 0

    def add(self, readings: list[NewReading]) -> None:
        self.commits += 1
        self.readings += len(readings)
        self.floor_bytes += -(-sum(len(r.body) for r in readings) // PAGE) * PAGE


@dataclass
class PendingAcks:
    """Seqs handled per device since the last ack, published every ack_interval_s as ranges."""

    interval_s: float
    _pending: dict[str, list[int]] = field(default_factory=dict)
    _last_flush: float = 0.0

    def add(self, handled: dict[str, list[int]]) -> None:
        for dev, seqs in handled.items():
            self._pending.setdefault(dev, []).extend(seqs)

    def due(self, now: float) -> dict[str, list[int]]:
        """What to publish now (everything pending when ``now`` is infinite)."""
        if not self._pending or now - self._last_flush < self.interval_s:
            return {}
        out, self._pending = self._pending, {}
        self._last_flush = now
        return out


class Intake(Protocol):
    """What the pipeline needs from the broker side (:class:`~citygate.gateway.intake.MqttIntake`)."""

    messages: queue.Queue[IncomingMessage]

    def ack(self, messages: Iterable[IncomingMessage]) -> int:
        """PUBACK messages whose readings are committed."""
        ...

    def publish_acks(self, handled: Mapping[str, list[int]]) -> None:
        """Confirm handled seqs to their devices (end to end)."""
        ...


class CommitSink(Protocol):
    """What the pipeline needs from the outbox (:class:`~citygate.gateway.outbox.Outbox`)."""

    def commit(
        self,
        readings: Sequence[NewReading],
        deadletters: Sequence[DeadLetter] = (),
        *,
        now_ns: int | None = None,
        free_disk: int | None = None,
        counters: Mapping[str, int] | None = None,
    ) -> CommitResult:
        """Store readings and dead letters in one durable transaction, or raise OutboxWriteError."""
        ...


class Pipeline(Worker):
    """The committer thread."""

    stop_timeout_s = 10.0

    def __init__(
        self,
        *,
        intake: Intake,
        outbox: CommitSink,
        validator: Validator,
        inventory_path: Path,
        commit_max_readings: int,
        commit_max_delay_s: float,
        commit_fill_bytes: int = 32768,
        ack_interval_s: float,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__("citygate-pipeline")
        self.intake = intake
        self.outbox = outbox
        self.validator = validator
        self.inventory_path = inventory_path
        self.max_readings = commit_max_readings
        self.max_delay = commit_max_delay_s
        self.fill_bytes = commit_fill_bytes
        self.acks = PendingAcks(ack_interval_s)
        self.recent = RecentSeqs()
        self.on_commit = on_commit
        self._clock = clock
        self._inventory_stamp = file_stamp(inventory_path)
        self._last_forced_check = 0.0
        self.commit_stats = CommitStats()
        self.commit_failures = 0
        self.last_error: str | None = None

    def stop(self, timeout: float | None = None) -> None:
        """Finish the group in hand (commit + ack), then stop."""
        super().stop(timeout)

    def would_refuse(self, body: bytes, received_ns: int) -> Rejection | None:
        """:func:`recheck` with the current inventory (any thread: the validator is replaced
        whole, never changed in place)."""
        return recheck(self.validator, body, received_ns)

    def _refresh_inventory(self) -> bool:
        """Re-read the inventory now if it changed (at most every 0.2 s). True if reloaded."""
        now = time.monotonic()
        if now - self._last_forced_check < 0.2:
            return False
        self._last_forced_check = now
        before = self.validator
        self._maybe_reload_inventory()
        return self.validator is not before

    def _maybe_reload_inventory(self) -> None:
        stamp = file_stamp(self.inventory_path)
        if stamp == self._inventory_stamp:
            return
        try:
            inventory = Inventory.load(self.inventory_path)
        except InventoryError as e:
            log.error("inventory changed but does not load; keeping the previous one", error=str(e))
            self._inventory_stamp = stamp
            return
        self.validator = self.validator.with_inventory(inventory)
        self._inventory_stamp = stamp
        log.info("inventory reloaded", devices=len(inventory))

    def _gather(self) -> list[IncomingMessage]:
        q = self.intake.messages
        try:
            first = q.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        size = len(first.payload)
        deadline = time.monotonic() + self.max_delay
        while len(batch) < self.max_readings and size < self.fill_bytes:
            try:
                m = q.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                # Sleep a slice, then take what came: waking for every message cost more than
                # the message at city rates (one reading per wake-up).
                if self._stop.wait(min(left, GATHER_SLICE_S)):
                    break
                continue
            batch.append(m)
            size += len(m.payload)
        return batch

    def process(self, batch: list[IncomingMessage]) -> None:
        """Validate, commit, then ack: the order is the guarantee."""
        readings: list[NewReading] = []
        dead: list[DeadLetter] = []
        handled: dict[str, list[int]] = {}  # rejected readings and resends whose seq we confirm too
        resends = 0
        ts_of: dict[tuple[str, int], int] = {}  # (device, seq) -> ts_ns of the readings to store
        validate = self.validator.validate
        device_of = device_from_telemetry_topic
        for m in batch:
            device_id = device_of(m.topic)
            if device_id is None:
                dead.append(
                    DeadLetter(m.received_ns, None, "bad_topic", f"unexpected topic {m.topic!r}", m.payload)
                )
                continue
            if m.retain:
                # A retained message is a broker artefact, not a reading in flight: the broker
                # replays it with the retain flag each time the agent subscribes (every start and
                # reconnect), and after a restart the resend check has forgotten it, so it was
                # stored again each time. The live copy (delivered without the flag) was judged
                # when it came; this one is dead-lettered, counted (rejected.retained) and not
                # stored. Nor confirmed: a device that never had its reading confirmed resends it,
                # and a resend without the flag is taken.
                dead.append(
                    DeadLetter(
                        m.received_ns,
                        device_id,
                        RETAINED,
                        "a retained message replayed by the broker; devices must publish telemetry "
                        "with retain=false",
                        m.payload,
                    )
                )
                continue
            result = validate(device_id, m.payload, m.received_ns)
            if (
                isinstance(result, Rejection)
                and result.reason in _NOT_CONFIRMED
                and self._refresh_inventory()
            ):
                validate = self.validator.validate  # a device registered a moment ago
                result = validate(device_id, m.payload, m.received_ns)
            if isinstance(result, Reading):
                if result.seq is not None and (device_id, result.seq, result.ts_ns) in self.recent:
                    # A resend of a reading already held (its confirmation was late): confirm it
                    # again instead of storing and forwarding it twice.
                    handled.setdefault(device_id, []).append(result.seq)
                    resends += 1
                    continue
                readings.append(NewReading(device_id, result.seq, m.received_ns, stored_body(result)))
                if result.seq is not None:
                    ts_of[device_id, result.seq] = result.ts_ns
                continue
            dead.append(DeadLetter(m.received_ns, device_id, result.reason.value, result.detail, m.payload))
            # An invalid reading is confirmed too (resending it cannot help); one from a
            # device the inventory does not know (yet) is not, so the device keeps it. Nor is
            # one rejected for its time while the gateway had only its own clock when it came
            # (no answer from the cloud since the start): after a power cut a Pi boots with a
            # stale clock, and the device resends the reading once the cloud's time is known.
            # The message's own flag, not the clock's state now: the cloud may have answered
            # between the stamp and this line, and the stamp is still the unchecked one.
            if (
                result.reason not in _NOT_CONFIRMED
                and (result.reason not in _TIME_REASONS or m.clock_trusted)
                and (seq := seq_of(m.payload)) is not None
            ):
                handled.setdefault(device_id, []).append(seq)
        committed = self._commit(readings, dead, {"resends_not_stored": resends} if resends else None)
        for device_id, seqs in committed.committed.items():
            self.recent.add(device_id, [(seq, ts_of[device_id, seq]) for seq in seqs])
        # Durable now: acknowledge to the broker, then confirm end to end.
        self.intake.ack(batch)
        self.acks.add(committed.committed)
        self.acks.add(handled)
        if readings:
            self.commit_stats.add(readings)
        self.on_commit()

    def _commit(
        self, readings: list[NewReading], dead: list[DeadLetter], counters: dict[str, int] | None
    ) -> CommitResult:
        """Commit, retrying while the outbox cannot write (disk full): nothing is acked before
        it is durable, so the devices' messages wait in the broker meanwhile."""
        delay = 0.2
        while True:
            try:
                return self.outbox.commit(readings, dead, now_ns=self._clock(), counters=counters)
            except OutboxWriteError as e:
                self.commit_failures += 1
                log.error("outbox commit failed; holding the batch and retrying", error=str(e), retry_s=delay)
                self.progress.within(delay)
                if self._stop.wait(delay):
                    raise  # stopping: not acked, so the broker delivers it again after the restart
                delay = min(delay * 2, 5.0)

    def _loop(self) -> None:
        last_inventory_check = time.monotonic()
        while True:
            self.progress.within(0.1 + self.max_delay)  # a gather; commits get the grace on top
            batch = self._gather()
            if batch:
                try:
                    self.process(batch)
                except OutboxWriteError:
                    log.error("stopped with a batch not committed (outbox cannot write); not acked")
                    return
            now = time.monotonic()
            stopping = self._stop.is_set()
            # Stopping: the batch in hand is committed and acked; what is still queued is not
            # acked, and the broker delivers it again after the restart.
            due = self.acks.due(float("inf") if stopping else now)
            if due:
                self.intake.publish_acks(due)
            if stopping:
                return
            if now - last_inventory_check > 2.0:
                self._maybe_reload_inventory()
                last_inventory_check = now
