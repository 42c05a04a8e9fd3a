"""The forwarder: outbox -> cloud in batches, deleting rows only after a 2xx.

Batches hold at most ``batch_max_readings`` and wait at most
``batch_max_delay_s`` for more. Live data goes first: each batch starts with
readings received within ``live_window_s`` and fills up with the oldest backlog,
so fresh readings reach the cloud within seconds while a backlog drains at
the pace the cloud accepts (one batch in flight; 429/503 ``Retry-After`` is
honoured; ``drain_max_rate`` caps it further). Within each lane rows go in
arrival order, which is each device's order.

Failures: no answer or 5xx -> jittered exponential backoff, the same rows are
sent again (the cloud's writes are idempotent); 4xx for the whole batch ->
the batch is split until the reading at fault is alone, and that reading is
judged like a per-reading refusal; 401/403 -> retried with backoff and logged
loudly (an authentication problem must not cost data).

A reading the cloud refuses is dead-lettered only if the gateway, judging it
again now with its own inventory and profiles as of when it received it,
would refuse it too. Any other refusal means the cloud and the gateway
disagree (inventory, profiles, window, database): the reading was confirmed
to its device, so it is held in the outbox and tried again every
``held_retry_s``, and at once when the cloud's ``contract_version`` changes
(docs/GATEWAY.md, "Held readings").
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from citygate.contract.readings import Rejection
from citygate.errors import OutboxWriteError
from citygate.gateway.cloud_client import PostOutcome
from citygate.gateway.outbox import DeadLetter, Hold, Outbox, StoredReading
from citygate.gateway.settings import GatewaySettings, setting_default
from citygate.gateway.worker import Worker

log = structlog.get_logger("citygate.gateway.forwarder")

_AUTH_STATUSES = frozenset({401, 403})
_RETRY_STATUSES = frozenset({408, 425, 429})
_HELD_CHECK_S = 5.0  # how often to look for held readings that are due (a cheap indexed query)
_REASON_CHARS = re.compile(r"[^a-z0-9_]")


def reason_label(cloud_reason: str) -> str:
    """The cloud's reason as a counter label: ``cloud_<reason>``, [a-z0-9_], at most 40 chars."""
    return ("cloud_" + _REASON_CHARS.sub("_", cloud_reason.lower()))[:40]


@dataclass(frozen=True, slots=True)
class ForwarderConfig:
    """The forwarder's share of the gateway settings (the defaults are theirs)."""

    batch_max_readings: int = setting_default("batch_max_readings")
    batch_max_delay_s: float = setting_default("batch_max_delay_s")
    live_window_s: float = setting_default("live_window_s")
    backoff_initial_s: float = setting_default("backoff_initial_s")
    backoff_max_s: float = setting_default("backoff_max_s")
    drain_max_rate: float = setting_default("drain_max_rate")  # readings/s of backlog; 0 = no cap
    held_retry_s: float = setting_default("held_retry_s")  # held readings are tried again this often

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> ForwarderConfig:
        return cls(
            batch_max_readings=settings.batch_max_readings,
            batch_max_delay_s=settings.batch_max_delay_s,
            live_window_s=settings.live_window_s,
            backoff_initial_s=settings.backoff_initial_s,
            backoff_max_s=settings.backoff_max_s,
            drain_max_rate=settings.drain_max_rate,
            held_retry_s=settings.held_retry_s,
        )


class Backoff:
    """Exponential backoff with "equal jitter" (each delay drawn from the upper half of the
    current cap, so it never collapses to zero); a server's Retry-After is a floor."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def next_delay(self, retry_after: float | None = None) -> float:
        cap = min(self.maximum, self.initial * (2 ** min(self.failures, 30)))
        self.failures += 1
        delay = self._rng.uniform(cap / 2, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.maximum * 5))
        return delay

    def reset(self) -> None:
        self.failures = 0


class BatchPoster(Protocol):
    """What the forwarder needs from the cloud client
    (:class:`~citygate.gateway.cloud_client.CloudClient`)."""

    @property
    def timeout_s(self) -> float:
        """httpx's timeout: it bounds each phase of a request (connect, write, each read)."""
        ...

    def post_batch(self, batch_id: str, bodies: list[bytes]) -> PostOutcome:
        """POST one batch of readings in wire form; what the cloud said (never raises)."""
        ...

    def close(self) -> None: ...


class Forwarder(Worker):
    stop_timeout_s = 30.0  # the batch in flight: its answer decides what is deleted

    def __init__(
        self,
        outbox: Outbox,
        client: BatchPoster,
        config: ForwarderConfig,
        clock: Callable[[], int] = time.time_ns,
        recheck: Callable[[StoredReading], Rejection | None] = lambda r: None,
    ) -> None:
        super().__init__("citygate-forwarder")
        self.outbox = outbox
        self.recheck = recheck  # the gateway's own verdict on a reading the cloud refused
        self._clock = clock  # the time received_ns was stamped with
        self.client = client
        self.config = config
        self.backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        self._wake = threading.Event()
        self._split = config.batch_max_readings  # shrinks while bisecting a rejected batch
        self._drain_tokens = 0.0
        self._drain_at = time.monotonic()
        self.last_status: int | None = None
        self.last_error: str | None = None
        self.batches_ok = 0
        self.batches_failed = 0
        self.cloud_reachable = False
        self.on_batch: Callable[[int], None] = lambda n: None
        self._next_held_check = 0.0  # monotonic; 0 = now
        self._contract_lock = threading.Lock()
        self.contract_version: str | None = None

    # -- lifecycle -------------------------------------------------------------------

    def stop(self, timeout: float | None = None) -> None:
        """Finish the batch in flight (its answer decides what is deleted), then stop."""
        super().stop(timeout)

    def _wake_for_stop(self) -> None:
        self._wake.set()  # an idle loop waits for a commit, not for the stop event

    def notify(self) -> None:
        """Called by the pipeline after each commit."""
        self._wake.set()

    def observe_contract_version(self, version: str | None) -> None:
        """The cloud's inventory and profiles as of its last answer (ingest or heartbeat): when
        they change, what the gateway holds is tried again at once."""
        if version is None:
            return
        with self._contract_lock:
            if version == self.contract_version:
                return
            self.contract_version = version
        try:
            n = self.outbox.retry_held_now()
        except OutboxWriteError as e:
            log.error("could not schedule held readings for a retry", error=str(e))
            return
        if n:
            log.info("cloud contract changed; retrying held readings now", held=n, contract_version=version)
        self._next_held_check = 0.0
        self._wake.set()

    # -- batch selection ----------------------------------------------------------------

    def _next_batch(self) -> list[StoredReading]:
        cfg = self.config
        limit = self._split
        now_ns = self._clock()
        first_live = self.outbox.first_id_received_after(now_ns - int(cfg.live_window_s * 1e9))
        live = self.outbox.oldest(limit, after_id=first_live - 1) if first_live is not None else []
        room = limit - len(live)
        backlog: list[StoredReading] = []
        if room > 0:
            candidates = self.outbox.oldest(room)
            backlog = [r for r in candidates if first_live is None or r.id < first_live]
            backlog = backlog[: self._drain_allowance(len(backlog))]
        return live + backlog

    def _drain_allowance(self, wanted: int) -> int:
        rate = self.config.drain_max_rate
        if rate <= 0:
            return wanted
        now = time.monotonic()
        self._drain_tokens = min(rate, self._drain_tokens + (now - self._drain_at) * rate)
        self._drain_at = now
        n = min(wanted, int(self._drain_tokens))
        self._drain_tokens -= n
        return n

    def _ready(self, batch: list[StoredReading]) -> bool:
        """Send now, or wait a little for a fuller batch?"""
        if len(batch) >= self._split or self._stop.is_set():
            return True
        oldest = min(r.received_ns for r in batch)
        return self._clock() - oldest >= int(self.config.batch_max_delay_s * 1e9)

    # -- the loop -----------------------------------------------------------------------

    def _loop(self) -> None:
        # httpx's timeout bounds each phase (connect, write, each read), not the request
        request_bound = 4 * self.client.timeout_s
        while not self._stop.is_set():
            self.progress.within(request_bound)  # reading the outbox: no wait of its own
            delay = self._send_held()
            if delay > 0:
                self._back_off(delay)
                continue
            batch = self._next_batch()
            if not batch:
                self.outbox.settle_if_due()  # idle: record the last deliveries
                self.progress.within(self.config.batch_max_delay_s)
                self._wake.wait(self.config.batch_max_delay_s)
                self._wake.clear()
                continue
            if not self._ready(batch):
                self.progress.within(0.02)
                self._stop.wait(0.02)
                continue
            self.outbox.lease(r.id for r in batch)
            self.progress.within(request_bound)
            delay = self.send(batch)
            if delay > 0:
                self._back_off(delay)

    def _back_off(self, delay: float) -> None:
        log.info(
            "forward failed; backing off",
            delay_s=round(delay, 2),
            status=self.last_status,
            error=self.last_error,
        )
        self.progress.within(delay)
        self._stop.wait(delay)

    def _send_held(self) -> float:
        """Send one batch of held readings if some are due (looked for every few seconds, or
        at once after a contract change); the wait before the next attempt, as :meth:`send`."""
        now = time.monotonic()
        if now < self._next_held_check:
            return 0.0
        batch = self.outbox.held_due(self._split, self._clock())
        # A full batch: more may be due, look again after the next live batch.
        self._next_held_check = now if len(batch) >= self._split else now + _HELD_CHECK_S
        if not batch:
            # An operator's discard (another process) changes the held rows' size: count it again.
            self.outbox.refresh_held_bytes()
            return 0.0
        self.outbox.lease_held(r.id for r in batch)
        return self.send(batch, held=True)

    def send(self, batch: list[StoredReading], *, held: bool = False) -> float:
        """Send one batch (of held readings if ``held``); returns how long to wait before the
        next attempt (0 = go on)."""
        batch_id = uuid.uuid4().hex
        outcome = self.client.post_batch(batch_id, [r.wire() for r in batch])
        self.last_status = outcome.status
        if outcome.ok and outcome.result is not None:
            try:
                self._confirmed(batch, outcome, held)
            except OutboxWriteError as e:
                # Delivered but not recorded (disk full?): it goes again later; the database keeps
                # one point per (series, time), so a second delivery is not a duplicate.
                log.error("could not record a delivered batch; it will be sent again", error=str(e))
                return self.backoff.next_delay(None)
            return 0.0
        self.batches_failed += 1
        self.last_error = outcome.error
        status = outcome.status
        if status is None or status >= 500 or status in _RETRY_STATUSES:
            self.cloud_reachable = status is not None
            return self.backoff.next_delay(outcome.retry_after_s)
        if status in _AUTH_STATUSES:
            log.error(
                "the cloud refused this gateway's certificate; holding data and retrying",
                status=status,
                detail=outcome.error,
            )
            return self.backoff.next_delay(outcome.retry_after_s)
        # Another 4xx: something in this batch is unacceptable as a whole.
        if len(batch) > 1:
            self._split = max(1, len(batch) // 2)
            if held:
                self._next_held_check = 0.0  # bisect the held batch without waiting
            return 0.0
        try:
            self._settle(batch, [(0, f"http_{status}", (outcome.error or "")[:1000])], held)
        except OutboxWriteError as e:
            log.error("could not record a refused reading; will retry", error=str(e))
            return self.backoff.next_delay(None)
        return 0.0

    def _confirmed(self, batch: list[StoredReading], outcome: PostOutcome, held: bool) -> None:
        assert outcome.result is not None
        # First: a contract change makes what was held before due; what this answer holds
        # was judged by the new contract already.
        self.observe_contract_version(outcome.result.contract_version)
        self._settle(batch, [(r.index, r.reason, r.detail) for r in outcome.result.rejected], held)
        self.backoff.reset()
        self._split = self.config.batch_max_readings
        self.batches_ok += 1
        self.cloud_reachable = True
        self.last_error = None
        self.on_batch(len(batch))

    def _settle(self, batch: list[StoredReading], refusals: list[tuple[int, str, str]], held: bool) -> None:
        """Record the cloud's answer: stored rows go, refusals are dead-lettered or held."""
        dead: list[tuple[int, DeadLetter]] = []
        holds: list[Hold] = []
        seen: set[int] = set()
        now = time.time_ns()
        for index, reason, detail in refusals:
            # The cloud's answer names each rejected reading by its index, once; an index out of
            # range or repeated would make the outbox's counters wrong, so it is ignored.
            if not 0 <= index < len(batch) or index in seen:
                continue
            seen.add(index)
            r = batch[index]
            label = reason_label(reason)
            own = self.recheck(r)
            if own is None:  # the gateway would take it: the two disagree, keep it
                holds.append(Hold(r.id, label, detail))
                continue
            why = f"{detail} (the gateway refuses it too: {own.reason.value}: {own.detail})"
            dead.append((r.id, DeadLetter(now, r.device_id, label, why[:1000], r.wire())))
        retry_ns = self._clock() + int(self.config.held_retry_s * 1e9)
        ids = [r.id for r in batch]
        if held:
            self.outbox.settle_held(ids, dead, holds, retry_ns=retry_ns)
        else:
            self.outbox.confirm(ids, [d for _, d in dead], holds, retry_ns=retry_ns)
        if holds:
            log.warning(
                "cloud refused readings the gateway would take; held",
                held=len(holds),
                reasons=sorted({h.reason for h in holds}),
                retry_in_s=self.config.held_retry_s,
            )
        if dead:
            log.warning("cloud refused readings; dead-lettered", dead_lettered=len(dead))
