"""The service layer in one cloud replica: the rules' evaluator, the dispatcher, escalation.

:class:`ServiceLayer` owns the store's engine and three threads:

- the evaluator (one per store, by lease: a replica takes over when the holder stops
  renewing): takes feed batches, evaluates them in device time, records the condition
  changes as cases, then saves its state and deletes the batches in one transaction;
- the dispatcher's lanes (every replica; their claims are leased per delivery);
- escalation (every replica; each step is a conditional UPDATE, so it happens once).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from citygate.contract.inventory import DeviceRecord
from citygate.contract.profiles import ProfileRegistry
from citygate.service.case_model import Condition
from citygate.service.cases import CaseStore
from citygate.service.db import make_engine, migrate
from citygate.service.dispatcher import Dispatcher, DispatchSettings
from citygate.service.evaluator import ConditionChange, Evaluator, Observation
from citygate.service.feed import FeedBatch, ReadingFeed
from citygate.service.forecasts import ForecastWatch
from citygate.service.machine_load import MachineLoad
from citygate.service.rules import RuleSet, load_service_rules
from citygate.service.schema import evaluator_state, leases
from citygate.service.settings import ServiceSettings

log = logging.getLogger(__name__)

EVALUATOR = "evaluator"  # the lease's and the saved state's name
LEASE_S = 15.0
TAKE_BATCHES = 200  # feed batches per evaluation pass
YIELD_EVERY = 256  # readings evaluated between two looks at ingest
MAX_YIELD_S = 2.0  # the longest pause the evaluator makes for ingest between two passes
_NS = 1_000_000_000
# zlib level 1: about a fifth of the JSON's bytes at a tenth of a second per 50 MB (in C,
# without the interpreter lock); higher levels cost more time than the few bytes they save.
_PACK_LEVEL = 1


def pack_state(snapshot: dict[str, Any]) -> bytes:
    """The evaluator's snapshot as the store keeps it: compressed JSON. Its windows are most of
    it (megabytes of timestamps and values for thousands of devices) and compress well."""
    return zlib.compress(orjson.dumps(snapshot), _PACK_LEVEL)


def unpack_state(packed: bytes) -> dict[str, Any]:
    state = orjson.loads(zlib.decompress(packed))
    if not isinstance(state, dict):
        raise ValueError("the evaluator's saved state is not a JSON object")
    return state


DeviceLookup = Callable[[str], DeviceRecord | None]


@dataclass(slots=True)
class EvaluatorStats:
    passes: int = 0
    batches: int = 0
    readings: int = 0
    changes: int = 0
    checkpoints: int = 0
    state_bytes: int = 0  # the last checkpoint's packed state
    leader: bool = False
    lag_s: float = 0.0  # age of the oldest batch taken in the last pass
    yielded_s: float = 0.0  # paused for ingest (ServiceSettings.evaluator_share_busy)
    reporters_pruned: int = 0  # citizen reporters' personal data deleted past its retention
    errors: dict[str, int] = field(default_factory=dict)


class ServiceLayer:
    def __init__(
        self,
        settings: ServiceSettings,
        profiles: ProfileRegistry,
        devices: DeviceLookup,
        *,
        name: str | None = None,
        rules: RuleSet | None = None,
        busy: Callable[[], bool] | None = None,
        share: Callable[[], float] | None = None,
    ) -> None:
        """``busy``: True while ingest requests arrive in this process (the evaluator then
        defers its checkpoint); ``share``: the share of the time the evaluator may take now,
        below 1 when ingest wants the interpreter (citygate/cloud/ingest_activity.py; default:
        ``ServiceSettings.evaluator_share_busy`` while ``busy``, else 1)."""
        assert settings.store_url is not None  # ServiceSettings refuses enabled without it
        self.settings = settings
        # Unique per layer, not per process: two layers in one process (tests) are two replicas.
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.rules = rules if rules is not None else load_service_rules(settings, profiles)
        self._devices = devices
        self._busy = busy
        self._share = share if share is not None else self._share_while_busy
        self.engine = make_engine(settings.store_url)
        self.store = CaseStore(self.engine, settings.subscriptions)
        self.feed = ReadingFeed(self.engine, max_batches=settings.feed_max_batches)
        self.dispatcher = Dispatcher(
            self.engine,
            settings.subscriptions,
            policy=settings.url_policy(),  # every subscription's URL was checked at load
            name=self.name,
            settings=DispatchSettings(source=settings.event_source),
            cases=self.store,
        )
        self.stats = EvaluatorStats()
        self._evaluator: Evaluator | None = None
        self._unsaved: list[int] = []  # feed batches evaluated since the last checkpoint
        self._taken_through = 0  # the highest feed id evaluated since then
        self._checkpointed_at = time.monotonic()
        self._dirty = False  # batches evaluated or changes made since the last checkpoint
        self._saved_watermark: int | None = None  # the evaluator's watermark in the saved state
        self.forecasts = ForecastWatch(self.rules)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def own_process(
        cls,
        settings: ServiceSettings,
        profiles: ProfileRegistry,
        devices: DeviceLookup,
        *,
        machine: MachineLoad | None = None,
    ) -> ServiceLayer:
        """The layer of `citygate service run` (runner = "separate"): no ingest in this
        process, so its evaluator yields to what the machine's other processes use
        (citygate/service/machine_load.py)."""
        if machine is None:
            machine = MachineLoad(
                full_load=settings.machine_full_load, min_share=settings.evaluator_share_busy
            )
        return cls(settings, profiles, devices, share=machine.evaluator_share)

    # -- lifecycle --------------------------------------------------------------------

    def open_store(self) -> None:
        """Migrate the store and sync the subscriptions (all a cloud replica needs when the
        workers run in their own process)."""
        migrate(self.engine)
        self.store.sync_subscriptions()

    def start(self) -> None:
        """The store, then the evaluator, the dispatcher and escalation."""
        self.open_store()
        self._stop.clear()
        self.dispatcher.start()
        for target, tname in ((self._evaluate_loop, "rules-evaluator"), (self._escalate_loop, "escalation")):
            t = threading.Thread(target=target, name=tname, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the workers (if started), checkpoint, release the lease, close the store."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        if self._evaluator is not None and self.stats.leader:
            # A clean stop re-evaluates nothing; with the store down, the next evaluator
            # re-evaluates from the last checkpoint.
            with contextlib.suppress(OperationalError):
                self._checkpoint(self._evaluator)
        self.dispatcher.stop(timeout)
        self._release_lease()
        self.engine.dispose()

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads) and self.dispatcher.alive()

    def wake(self) -> None:
        """A batch was appended: evaluate now rather than at the next tick."""
        self._wake.set()

    # -- the evaluator ----------------------------------------------------------------

    def _evaluate_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._hold_lease():
                    self.evaluate_once()
                else:
                    self._evaluator = None  # another replica evaluates; reload its state on takeover
            except OperationalError as e:  # the store is down or restarting: keep trying
                self._count("store_unavailable")
                log.warning("rules evaluator: store unavailable: %s", str(e).splitlines()[0][:200])
                self._evaluator = None
            self._wake.wait(self.settings.evaluate_every_s)
            self._wake.clear()

    def _share_while_busy(self) -> float:
        busy = self._busy is not None and self._busy()
        return self.settings.evaluator_share_busy if busy else 1.0

    def _yield_to_ingest(self, spent_s: float) -> None:
        """While ingest wants the interpreter, pause so that this work was at most the share
        of the time it leaves (the readings wait in the feed, durably; ingest never waits on them)."""
        share = self._share()
        if share >= 1.0:
            return
        pause = min(spent_s * (1.0 / share - 1.0), MAX_YIELD_S)
        if pause > 0:
            self.stats.yielded_s += pause
            self._stop.wait(pause)

    def evaluate_once(self, now_ns: int | None = None, *, checkpoint: bool | None = None) -> int:
        """One pass: evaluate the batches not yet seen, record the changes as they come, and
        every ``checkpoint_every_s`` once readings stop arriving, at the latest every
        ``checkpoint_max_s`` (or when ``checkpoint``), save the state and delete the
        batches evaluated since the last checkpoint. Returns the number of condition changes."""
        ev = self._evaluator or self._load_evaluator()
        self._evaluator = ev
        # While ingest wants the interpreter, one batch a pass, and its reading and decoding
        # count in the evaluator's share: 200 batches at once were seconds under the
        # interpreter lock, which ingest waited for (bench/RESULTS.md, "Ingest before the rules").
        limit = 1 if self._share() < 1.0 else TAKE_BATCHES
        t0 = time.monotonic()
        batches = self.feed.take(limit, after_id=self._taken_through)
        self._yield_to_ingest(time.monotonic() - t0)
        changes = 0
        for b in batches:
            changes += self._observe(ev, b)
            self._unsaved.append(b.id)
            self._taken_through = max(self._taken_through, b.id)
        for ch in ev.advance(now_ns if now_ns is not None else time.time_ns()):
            changes += self._apply(ch)
        self._dirty = self._dirty or bool(batches) or changes > 0
        since = time.monotonic() - self._checkpointed_at
        quiet = not batches and (self._busy is None or not self._busy())
        due = since >= self.settings.checkpoint_max_s or (since >= self.settings.checkpoint_every_s and quiet)
        if checkpoint if checkpoint is not None else (due and self._needs_saving(ev)):
            self._checkpoint(ev)
        s = self.stats
        s.passes += 1
        s.batches += len(batches)
        s.readings += sum(len(b.items) for b in batches if b.kind == "readings")
        s.changes += changes
        s.lag_s = (time.time_ns() // 1_000_000 - batches[0].received_ms) / 1000 if batches else 0.0
        if changes:
            self.dispatcher.wake()
        if batches and len(batches) == limit:
            self._wake.set()  # more waiting: go again at once
        return changes

    def _needs_saving(self, ev: Evaluator) -> bool:
        """Whether the state differs from the saved one by more than the clock. A pass that
        evaluated nothing moves only the watermark (to ``now``); saving the whole state for that
        (megabytes: bench/RESULTS.md, "A checkpoint of nothing") held the interpreter lock in the
        middle of ingest bursts. So the saved watermark lags by at most ``checkpoint_max_s``, as
        the rest of the state may after a crash."""
        if self._dirty:
            return True
        wm, saved = ev.watermark_ns, self._saved_watermark
        if wm is None:
            return False
        return saved is None or wm - saved >= self.settings.checkpoint_max_s * _NS

    def _checkpoint(self, ev: Evaluator) -> None:
        """The state and the deletion of the batches it has seen, in one transaction. Then the
        next pass reads the feed from its start again: a batch that committed after a higher
        id was taken (concurrent ingest transactions) is still there, and is evaluated then."""
        packed = pack_state(ev.snapshot())
        now_ms = time.time_ns() // 1_000_000
        row = {"snapshot": None, "packed": packed, "updated_ms": now_ms}
        with self.engine.begin() as conn:
            done = conn.execute(
                update(evaluator_state).where(evaluator_state.c.name == EVALUATOR).values(**row)
            )
            if done.rowcount == 0:
                conn.execute(insert(evaluator_state).values(name=EVALUATOR, **row))
            for i in range(0, len(self._unsaved), 500):
                ReadingFeed.done(conn, self._unsaved[i : i + 500])
        self._unsaved.clear()
        self._taken_through = 0
        self._checkpointed_at = time.monotonic()
        self._dirty = False
        self._saved_watermark = ev.watermark_ns
        self.stats.checkpoints += 1
        self.stats.state_bytes = len(packed)

    def _apply(self, ch: ConditionChange) -> int:
        """Record one change now (so that the readings after it in the same pass see its
        case: a forecast's outcome may be in the same backlog)."""
        t = self.store.record(self._condition(ch))
        if t is not None and ch.kind == "opened" and ch.forecast_at_ns is not None:
            self.forecasts.watch(t.case_id, ch.rule_id, ch.subject, ch.forecast_at_ns)
        return 1

    def _load_evaluator(self) -> Evaluator:
        """The saved state; the batches after it are read again from the feed's start."""
        self._unsaved.clear()
        self._taken_through = 0
        self._checkpointed_at = time.monotonic()
        lateness = int(self.settings.lateness_s * _NS)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(evaluator_state.c.packed, evaluator_state.c.snapshot).where(
                    evaluator_state.c.name == EVALUATOR
                )
            ).first()
        self.forecasts = ForecastWatch(self.rules)
        self.forecasts.load(self.store)
        snap = None
        if row is not None:  # packed since migration 0004; JSON in rows written before it
            snap = unpack_state(row.packed) if row.packed is not None else row.snapshot
        if snap is None:
            ev = Evaluator(self.rules, lateness_ns=lateness)
        else:
            ev = Evaluator.restore(self.rules, snap, lateness_ns=lateness)
        self._dirty = False
        self._saved_watermark = ev.watermark_ns
        return ev

    def _observe(self, ev: Evaluator, b: FeedBatch) -> int:
        """Evaluate one feed batch, recording its changes as they come; returns their number."""
        if b.kind == "heartbeat":
            at_ns, backlog_age_s = b.items
            return sum(self._apply(ch) for ch in ev.heartbeat(b.gateway_id, int(at_ns), backlog_age_s))
        n = 0
        t0 = time.monotonic()
        for i, (device_id, profile, ts_ns, values) in enumerate(b.items, 1):
            if i % YIELD_EVERY == 0:
                # Often, not per pass or batch: a pass is seconds of work, and a thread that
                # holds the interpreter lock for long stalls ingest's I/O threads.
                self._yield_to_ingest(time.monotonic() - t0)
                t0 = time.monotonic()
            rec = self._devices(device_id)
            obs = Observation(
                device_id=device_id,
                profile=profile,
                ts_ns=int(ts_ns),
                fields=values,
                site=rec.site if rec else None,
                district=rec.district if rec else None,
                gateway_id=b.gateway_id,
            )
            for ch in ev.observe(obs):
                n += self._apply(ch)
            for o in self.forecasts.observe(obs):
                self.store.forecast_outcome(o.case_id, o.outcome, o.note)
        self._yield_to_ingest(time.monotonic() - t0)
        return n

    def _condition(self, ch: ConditionChange) -> Condition:
        rule = self.rules.get(ch.rule_id)
        rec = self._devices(ch.subject)
        return Condition(
            kind=ch.kind,
            rule_id=ch.rule_id,
            subject=ch.subject,
            service=ch.service,
            severity=ch.severity,
            title=rule.title if rule else ch.rule_id,
            at_ns=ch.at_ns,
            detail=ch.detail,
            value=ch.value,
            late=ch.late,
            forecast_ns=ch.forecast_at_ns,
            site=rec.site if rec else None,
            district=rec.district if rec else None,
        )

    # -- the lease --------------------------------------------------------------------

    def _hold_lease(self) -> bool:
        now = time.time_ns() // 1_000_000
        until = now + int(LEASE_S * 1000)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(leases)
                .where(leases.c.name == EVALUATOR, (leases.c.holder == self.name) | (leases.c.until_ms < now))
                .values(holder=self.name, until_ms=until)
            )
            held = done.rowcount == 1
        if not held:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(leases).values(name=EVALUATOR, holder=self.name, until_ms=until))
                held = True
            except IntegrityError:
                held = False  # another replica holds it
        if held and not self.stats.leader:
            self._evaluator = None  # taking over: start from the saved state
        self.stats.leader = held
        return held

    def _release_lease(self) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(leases)
                    .where(leases.c.name == EVALUATOR, leases.c.holder == self.name)
                    .values(until_ms=0)
                )
        except OperationalError:
            pass  # the store is down; the lease expires by itself

    # -- escalation and retention -------------------------------------------------------------------

    def _escalate_loop(self) -> None:
        targets = {k: (t.acknowledge_s, t.resolve_s) for k, t in self.settings.targets.items()}
        while not self._stop.wait(self.settings.escalate_every_s):
            try:
                if targets and self.store.escalate(targets):
                    self.dispatcher.wake()
                now = time.time_ns() // 1_000_000
                self.dispatcher.prune(
                    attempts_older_than_ms=now - int(self.settings.attempts_retention_s * 1000),
                    events_older_than_ms=now - int(self.settings.events_retention_s * 1000),
                )
                # Citizen reporters' personal data: each row carries its own expiry (set from
                # [cloud.open311] when the report came in), so this needs no setting of its own.
                self.stats.reporters_pruned += self.store.prune_reporters(now)
            except OperationalError:
                self._count("store_unavailable")

    def _count(self, what: str) -> None:
        self.stats.errors[what] = self.stats.errors.get(what, 0) + 1
