"""The fleet runner: thousands of simulated devices in one asyncio process.

Each device is one MQTT connection (its own mTLS identity, client id = device id): a
:class:`~citygate.simulators.link.DeviceLink` from ``Fleet(link_factory=...)``, by default the
factory of ``FleetSettings.client``. That defaults to ``"aiomqtt"`` (aiomqtt 2.x over paho), as
does ``citygate sim run --client``; the demo stack's ``SimRun`` defaults to ``"lite"``
(:mod:`.mqtt_lite`: batched writes, a callback per PUBACK, ~6x faster), which the benchmarks
and most chaos scenarios use.

Each device runs two coroutines: a producer that measures on schedule into the device's
memory (:class:`~citygate.simulators.device.DeviceCore`) whether or not it is connected, and
a connection loop that connects, resends what is held, reads the gateway's acks and
reconnects with jittered exponential backoff.

Choices made for scale (see docs/SIMULATOR.md for measurements):

- connections ramp up over ``ramp_s`` with jitter, and at most
  ``connect_concurrency`` TLS handshakes run at once; after a broker restart the
  full-jitter backoff (uniform in [0, min(max, base * 2^n)]) spreads the reconnects;
- an SSL context is built per connection attempt in a worker thread (loading a
  key costs ~0.5 ms) and lives only as long as its connection, so memory grows
  with connected devices, not with attempts;
- each device has at most ``inflight`` unanswered publishes, so a slow broker
  slows the device (which keeps measuring into its bounded memory) instead of
  growing queues without bound.
"""

from __future__ import annotations

import asyncio
import math
import random
import ssl
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from citygate.contract.acks import decode_ack
from citygate.contract.profiles import DeviceProfile
from citygate.contract.topics import ack_topic, status_topic, telemetry_topic
from citygate.contract.validation import ValidationLimits
from citygate.simulators.device import DeviceCore, bad_payload, encode
from citygate.simulators.faults import FAULT_CODES, REJECTED_PAYLOADS, DevicePlan, FaultKind, Reboot
from citygate.simulators.ledger import LedgerWriter, RecordKind
from citygate.simulators.link import (
    CLIENTS,
    ClientKind,
    DeviceLink,
    LinkClosedError,
    LinkError,
    LinkFactory,
    LinkOptions,
    Will,
    classify,
)
from citygate.simulators.link_factory import link_factory as link_factory_for
from citygate.simulators.progress import FleetStats
from citygate.simulators.signals import DeviceSignal, WeatherCache

WRONG_TOPIC_SEQ_BASE = 1 << 40  # seqs of payloads sent on another device's topic

_Token = tuple[int | None, float]  # what a send carries to its on_sent: (seq or None for a oneshot, t0)


@dataclass(frozen=True, slots=True)
class SimDevice:
    """One device of the fleet and its identity on disk."""

    device_id: str
    profile: DeviceProfile
    cert: Path
    key: Path
    plan: DevicePlan = field(default_factory=DevicePlan)
    refused: FaultKind | None = None  # a certificate fault: the broker must refuse it


@dataclass(frozen=True, slots=True)
class FleetSettings:
    host: str
    port: int
    ca: Path  # trusted for the broker's server certificate (the infrastructure CA)
    interval_s: float | None = None  # per device; None: each profile's expected interval
    rate: float | None = None  # total readings/s over the fleet (overrides interval_s)
    duration_s: float | None = None
    count: int | None = None  # readings per device
    seed: int = 1
    confirm: bool = True
    resend_after_s: float = 10.0
    memory: int = 1000
    ramp_s: float | None = None  # None: devices / 250 s
    connect_concurrency: int = 8
    inflight: int = 16
    keepalive: int = 60
    publish_timeout_s: float = 15.0
    connect_timeout_s: float = 10.0
    drain_s: float = 10.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    utc_offset_h: float = 1.0
    status: bool = True  # retained online/offline on devices/{id}/status
    client: ClientKind = "aiomqtt"

    def __post_init__(self) -> None:
        if self.client not in CLIENTS:  # the type says so, a caller's string may not
            raise ValueError(f"client must be one of {', '.join(CLIENTS)}, got {self.client!r}")

    def interval_for(self, profile: DeviceProfile, devices: int) -> float:
        if self.rate:
            return devices / self.rate
        return self.interval_s if self.interval_s else float(profile.expected_interval_s)


class Fleet:
    """Runs the devices; ``await run()`` returns when every device has finished."""

    def __init__(
        self,
        settings: FleetSettings,
        devices: Sequence[SimDevice],
        *,
        ledger: LedgerWriter | None = None,
        stats: FleetStats | None = None,
        link_factory: LinkFactory | None = None,
    ) -> None:
        self.settings = settings
        # Injected like Telegraf's ClientFactory (a test's fake); by default the settings' client.
        self.link_factory = link_factory or link_factory_for(settings.client)
        self.devices = list(devices)
        self.ledger = ledger
        self.stats = stats or FleetStats()
        self.stats.devices = len(self.devices)
        self.stats.refused_devices = sum(1 for d in self.devices if d.refused is not None)
        for d in self.devices:
            for kind, n in d.plan.planned().items():
                self.stats.faults_planned[kind.value] += n
            if d.refused is not None:
                self.stats.faults_planned[d.refused.value] += 1
        self.weather = WeatherCache(settings.seed, settings.utc_offset_h)
        self.t0 = 0.0
        self.ramp_s = 0.0
        self.stopping = False
        self._ca_pem = settings.ca.read_text()
        self._runners: list[_DeviceRunner] = []
        self._producers_left = 0

    def stop(self) -> None:
        """Stop producing now; the devices drain (up to ``drain_s``) and disconnect."""
        self.stopping = True
        for r in self._runners:
            r.wake()

    def ssl_context(self, device: SimDevice) -> ssl.SSLContext:
        """A client context with the device's key; runs in a worker thread."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=self._ca_pem)
        ctx.load_cert_chain(device.cert, device.key)
        return ctx

    def producer_done(self) -> None:
        self._producers_left -= 1
        if self._producers_left <= 0:
            for r in self._runners:
                if r.device.refused is not None:
                    r.finish()

    async def run(self) -> FleetStats:
        loop = asyncio.get_running_loop()
        s = self.settings
        n = len(self.devices)
        ramp = s.ramp_s if s.ramp_s is not None else n / 250.0
        self.ramp_s = ramp
        self.connect_sem = asyncio.Semaphore(s.connect_concurrency)
        loop.set_default_executor(ThreadPoolExecutor(max_workers=s.connect_concurrency))
        self.t0 = loop.time()
        self.stats.started = time.monotonic()
        producing = sum(1 for d in self.devices if d.refused is None)
        self._producers_left = producing
        for i, d in enumerate(self.devices):
            rng = random.Random(f"{s.seed}:{d.device_id}")  # noqa: S311 - jitter, not crypto
            start = self.t0 + ramp * (i + rng.random()) / max(1, n)
            self._runners.append(_DeviceRunner(self, d, i, start, rng, max(1, producing)))
        if not producing:
            self.producer_done()
        loop.set_exception_handler(self._loop_exception)
        flusher = loop.create_task(self._housekeeping())
        try:
            await asyncio.gather(*(r.run() for r in self._runners))
        finally:
            flusher.cancel()
            self.stats.finished_s = time.monotonic() - self.stats.started
            if self.ledger is not None:
                self.ledger.flush()
        return self.stats

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.stats.sample_rss()
            if self.ledger is not None:
                self.ledger.flush()

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        """aiomqtt schedules add_writer/add_reader thread-safely; when the connection closed in
        between, the callback meets a closed descriptor. Harmless: count it, do not print it."""
        exc = context.get("exception")
        if isinstance(exc, OSError | KeyError | ValueError):
            self.stats.errors["closed_socket_callback"] += 1
            return
        loop.default_exception_handler(context)


def _wake_future(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _DeviceRunner:
    """One device: its producer and its connection loop."""

    def __init__(
        self, fleet: Fleet, device: SimDevice, position: int, start_at: float, rng: random.Random, n: int
    ) -> None:
        s = fleet.settings
        self.fleet = fleet
        self.device = device
        self.s = s
        self.stats = fleet.stats
        self.rng = rng
        self.start_at = start_at
        self.interval = s.interval_for(device.profile, n)
        # In rate mode, spread first readings evenly over one interval so the fleet's rate is smooth.
        self.phase = self.interval * ((position + 0.5) / n if s.rate else rng.random())
        self.topic = telemetry_topic(device.device_id)
        self.link: DeviceLink | None = None  # while connected and subscribed
        self.inflight = 0
        self.oneshots: deque[tuple[str, bytes]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._produced_all = False
        self._finished = False
        self._finished_event = asyncio.Event()
        self._offline_counted: set[int] = set()
        self._session_boot = 0  # the device's boot when its current connection was made
        self.ledger_idx = -1
        resume_seq, resume_ts, resume_boot = 0, -1, 0
        ledger = fleet.ledger
        if ledger is not None and device.refused is None:
            p = device.profile
            self.ledger_idx = ledger.device(device.device_id, p.measurement, p.name, p.version)
            rp = ledger.resume.get(device.device_id)
            if rp is not None:
                resume_seq, resume_ts, resume_boot = rp.next_seq, rp.last_ts_ms, rp.boot
        self.core = DeviceCore(
            device.device_id,
            memory=s.memory,
            confirm=s.confirm,
            resend_after_s=s.resend_after_s,
            next_seq=resume_seq,
            last_ts_ms=resume_ts,
            # A rebooted device's clock goes back among its earlier timestamps: it tracks them too.
            track_recent=FaultKind.CLOCK_SKEW in device.plan.payload.values() or bool(device.plan.reboots),
        )
        self.core.boot = resume_boot
        self.signal = DeviceSignal(
            device.device_id, device.profile, seed=s.seed, interval_s=self.interval, weather=fleet.weather
        )
        limits = ValidationLimits()
        skew_s = device.plan.skew_ms / 1000.0
        # A skewed clock within what the gateway accepts still gives expected readings.
        self.skew_expected = -limits.max_past_s + 60 < skew_s < limits.max_future_s - 30

    # -- waiting -------------------------------------------------------------------------

    def wake(self) -> None:
        if self._waiter is not None:
            _wake_future(self._waiter)

    def finish(self) -> None:
        self._finished = True
        self._finished_event.set()
        self.wake()

    async def _sleep_until(self, when: float) -> None:
        """Sleep until ``when`` (loop time) or until woken; no task is created."""
        loop = asyncio.get_running_loop()
        if when <= loop.time():
            await asyncio.sleep(0)  # still yield: a loop around a past time must not starve the others
            return
        fut: asyncio.Future[None] = loop.create_future()
        self._waiter = fut
        handle = loop.call_at(when, _wake_future, fut) if math.isfinite(when) else None
        try:
            await fut
        finally:
            if handle is not None:
                handle.cancel()
            self._waiter = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self.start_at - loop.time()))
        if self.device.refused is not None:
            await self._connections()
            return
        producer = loop.create_task(self._produce())
        try:
            await self._connections()
        finally:
            if not producer.done():
                producer.cancel()
            self._record_held()

    def _record_held(self) -> None:
        held = self.core.held_readings()
        self.stats.held_at_end += len(held)
        ledger = self.fleet.ledger
        if ledger is not None:
            boot = self.core.boot
            for k in held:
                ledger.add(RecordKind.HELD, self.ledger_idx, k.seq, k.ts_ms, boot=boot)

    # -- production ------------------------------------------------------------------------------

    async def _produce(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.s
        fleet = self.fleet
        end_t = math.inf if s.duration_s is None else fleet.t0 + s.duration_s
        # Rate mode is a load test: the load starts once the connection ramp is over, so
        # that TLS handshakes and the publishing load do not compete for the CPU.
        first = fleet.t0 + fleet.ramp_s if s.rate else self.start_at
        next_t = first + self.phase
        bursts = deque(self.device.plan.bursts)
        reboots = deque(self.device.plan.reboots)
        payload_faults = self.device.plan.payload
        n = 0
        try:
            while not fleet.stopping and (s.count is None or n < s.count) and next_t < end_t:
                now = loop.time()
                burst_at = self.start_at + bursts[0][0] if bursts else math.inf
                reboot_at = self.start_at + reboots[0].at_s if reboots else math.inf
                wake_at = min(next_t, burst_at, reboot_at)
                # A resend is a reason to wake only if it can go out now: with the in-flight window
                # full (a connection that died under load, not yet noticed) waking for it would spin
                # without ever yielding, and the dead connection would never be noticed.
                if self.link is not None and self.inflight < s.inflight:
                    wake_at = min(wake_at, self.core.next_resend_at())
                if wake_at > now:
                    await self._sleep_until(wake_at)
                    now = loop.time()
                else:
                    await asyncio.sleep(0)  # never a loop turn without a yield
                if reboot_at <= now and reboot_at < end_t:
                    rb = reboots.popleft()
                    self._reboot(rb)
                    up = self.start_at + rb.up_s
                    while next_t < up:  # down: no readings made
                        next_t += self.interval
                    continue
                if burst_at <= now and burst_at < end_t:
                    _, size = bursts.popleft()
                    self.stats.faults[FaultKind.BURST.value] += 1
                    for _ in range(size):
                        self._reading(None, -1)
                if next_t <= now:
                    self._reading(payload_faults.get(n), n)
                    n += 1
                    next_t += self.interval
                self._flush()
        finally:
            self._produced_all = True
            fleet.stats.production_s = max(
                fleet.stats.production_s or 0.0, time.monotonic() - fleet.stats.started
            )
            fleet.producer_done()
        # Drain: give the held readings their chance to be confirmed, then finish. Resends are
        # only due on a connection (readings a device never sent are "due" since it started).
        deadline = loop.time() + s.drain_s
        while not self._drained() and loop.time() < deadline:
            wake_at = min(deadline, loop.time() + 0.5)
            if self.link is not None:
                wake_at = min(wake_at, self.core.next_resend_at())
            await self._sleep_until(wake_at)
            self._flush()
        self.finish()

    def _drained(self) -> bool:
        return self.core.held == 0 and not self.oneshots and self.inflight == 0

    def _reboot(self, rb: Reboot) -> None:
        """The device restarts (the connection loop takes it offline for ``rb.down_s``): what it
        held unconfirmed is gone, recorded as dropped in the boot it belonged to."""
        self.stats.faults[FaultKind.REBOOT.value] += 1
        boot = self.core.boot
        lost = self.core.reboot(rb.behind_ms)
        self.oneshots.clear()
        self.stats.dropped += len(lost)
        ledger = self.fleet.ledger
        if ledger is not None:
            for k in lost:
                ledger.add(RecordKind.DROPPED, self.ledger_idx, k.seq, k.ts_ms, boot=boot)

    def _reading(self, kind: FaultKind | None, n: int) -> None:
        """Make reading number ``n`` of this run, with its fault if one is planned."""
        core = self.core
        stats = self.stats
        ledger = self.fleet.ledger
        plan = self.device.plan
        skew = plan.skew_ms if kind is FaultKind.CLOCK_SKEW else 0
        ts = core.stamp(core.clock_ms(time.time_ns() // 1_000_000), skew)
        boot = core.boot
        values = self.signal.values(ts - skew)
        if kind is not None:
            stats.faults[kind.value] += 1
        if kind in REJECTED_PAYLOADS:
            assert kind is not None
            seq = core.take_seq()
            core.counters.faulty += 1
            stats.faulty += 1
            if ledger is not None:
                ledger.add(RecordKind.FAULTY, self.ledger_idx, seq, ts, FAULT_CODES[kind], boot)
            self.oneshots.append((self.topic, bad_payload(kind, seq, ts, values, self.device.profile)))
            return
        kept, dropped = core.produce(ts, values)
        stats.produced += 1
        if ledger is not None:
            if kind is FaultKind.CLOCK_SKEW and not self.skew_expected:
                ledger.add(RecordKind.FAULTY, self.ledger_idx, kept.seq, ts, FAULT_CODES[kind], boot)
            else:
                ledger.add(RecordKind.PRODUCED, self.ledger_idx, kept.seq, ts, boot=boot)
            for d in dropped:
                ledger.add(RecordKind.DROPPED, self.ledger_idx, d.seq, d.ts_ms, boot=boot)
        stats.dropped += len(dropped)
        if kind is FaultKind.DUPLICATE:
            self.oneshots.append((self.topic, kept.payload))
        elif kind is FaultKind.WRONG_TOPIC and plan.wrong_topic_target is not None:
            seq = WRONG_TOPIC_SEQ_BASE + n
            if ledger is not None:
                ledger.add(RecordKind.WRONG_TOPIC, self.ledger_idx, seq, ts, FAULT_CODES[kind])
            self.oneshots.append((telemetry_topic(plan.wrong_topic_target), encode(seq, ts, values)))

    # -- sending ------------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Send what is due, within the in-flight window."""
        link = self.link
        if link is None or not link.is_connected:  # lost, and the session has not noticed yet
            return
        room = self.s.inflight - self.inflight
        send = link.send
        perf = time.perf_counter
        while self.oneshots and room > 0:
            topic, payload = self.oneshots.popleft()
            send(topic, payload, (None, perf()))
            self.inflight += 1
            room -= 1
        if room <= 0:
            return
        stats = self.stats
        topic = self.topic
        for k in self.core.take_due(asyncio.get_running_loop().time(), limit=room):
            if k.sends == 1:
                stats.sent += 1
            else:
                stats.resent += 1
            send(topic, k.payload, (k.seq, perf()))
            self.inflight += 1

    def _sent(self, token: _Token, exc: BaseException | None) -> None:
        """The link's ``on_sent``: the PUBACK (exc None) or the failure of one send."""
        seq, t0 = token
        self.inflight -= 1
        stats = self.stats
        if exc is None:
            stats.on_puback(time.perf_counter() - t0)
            if seq is None:
                stats.oneshots += 1
            else:
                before = self.core.counters.confirmed
                self.core.on_puback(seq)
                stats.confirmed += self.core.counters.confirmed - before
        elif not isinstance(exc, LinkClosedError):  # closed by us: resent on the next link, not a failure
            stats.errors["publish_failed"] += 1
            if seq is not None:
                self.core.on_send_failed(seq)
        if self.link is not None:
            self._flush()
        if self._produced_all and self._drained():
            self.wake()

    def _on_message(self, topic: str, payload: bytes) -> None:
        """The link's ``on_message``: the only subscription is the device's ack topic."""
        if self._session_boot != self.core.boot:
            return  # the ack of a reading from before a reboot, on its way out: it is not this one
        stats = self.stats
        ranges = decode_ack(payload)
        if ranges is None:
            stats.errors["bad_ack"] += 1
            return
        stats.acks_received += 1
        stats.confirmed += self.core.on_ack(ranges)
        if self._produced_all and self._drained():
            self.wake()

    # -- connection -----------------------------------------------------------------------------------

    async def _connections(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.s
        attempt = 0
        first = True
        while not self._finished:
            off_end = self._offline_until(loop.time())
            if off_end is not None:
                await self._sleep_until(off_end)
                continue
            refused = self.device.refused
            if refused is not None and first:
                self.stats.faults[refused.value] += 1  # the attempt with the bad certificate
            try:
                link = await self._connect()
            except (LinkError, OSError) as e:
                self.stats.connect_failures += 1
                self.stats.errors[classify(e)] += 1
                first = first and refused is None
                attempt += 1
                delay = self.rng.uniform(0.0, min(s.backoff_max_s, s.backoff_base_s * 2 ** min(attempt, 16)))
                await self._sleep_until(loop.time() + delay)
                continue
            attempt = 0
            if refused is not None:
                self.stats.errors["bad_certificate_accepted"] += 1
            self.stats.on_connect(first)
            first = False
            try:
                await self._session(link)
            finally:
                self.stats.connected -= 1
                self.link = None
                self.core.on_disconnect()

    def _offline_until(self, now: float) -> float | None:
        """The end (loop time) of the offline period (or reboot) at ``now``, counting each
        offline period once (the producer counts reboots)."""
        for i, (start, end) in enumerate(self.device.plan.offline):
            if self.start_at + start <= now < self.start_at + end:
                if i not in self._offline_counted:
                    self._offline_counted.add(i)
                    self.stats.faults[FaultKind.OFFLINE.value] += 1
                return self.start_at + end
        for rb in self.device.plan.reboots:
            if self.start_at + rb.at_s <= now < self.start_at + rb.up_s:
                return self.start_at + rb.up_s
        return None

    def _next_offline_start(self, now: float) -> float | None:
        plan = self.device.plan
        starts = [self.start_at + a for a, _ in plan.offline if self.start_at + a > now]
        starts += [self.start_at + rb.at_s for rb in plan.reboots if self.start_at + rb.at_s > now]
        return min(starts) if starts else None

    async def _connect(self) -> DeviceLink:
        loop = asyncio.get_running_loop()
        s = self.s
        device_id = self.device.device_id
        options = LinkOptions(
            client_id=device_id,
            on_message=self._on_message,
            on_sent=self._sent,
            keepalive=s.keepalive,
            will=Will(status_topic(device_id), b"offline") if s.status else None,
            inflight=s.inflight,
            connect_timeout_s=s.connect_timeout_s,
            publish_timeout_s=s.publish_timeout_s,
        )
        async with self.fleet.connect_sem:
            ctx = await loop.run_in_executor(None, self.fleet.ssl_context, self.device)
            link = self.fleet.link_factory(options)
            await link.connect(s.host, s.port, ctx)
        return link

    async def _session(self, link: DeviceLink) -> None:
        """Announce, subscribe, send until the link is lost, the device finishes or goes offline."""
        loop = asyncio.get_running_loop()
        device_id = self.device.device_id
        graceful = False
        tasks: list[asyncio.Task[object]] = []
        self._session_boot = self.core.boot
        try:
            if self.s.status:
                await link.publish(status_topic(device_id), b"online", retain=True)
            if self.s.confirm and self.device.refused is None:
                await link.subscribe(ack_topic(device_id))
            self.link = link
            self._flush()
            closed: asyncio.Task[object] = loop.create_task(link.wait_closed())
            tasks = [closed, loop.create_task(self._finished_event.wait())]
            off = self._next_offline_start(loop.time())
            if off is not None:
                tasks.append(loop.create_task(asyncio.sleep(off - loop.time())))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            graceful = closed not in done
            if not graceful:
                self.stats.errors["disconnected"] += 1
        except LinkError:
            self.stats.errors["session_error"] += 1
        finally:
            self.link = None
            for t in tasks:
                t.cancel()
            await self._close(link, graceful=graceful)

    async def _close(self, link: DeviceLink, *, graceful: bool) -> None:
        """Say ``offline`` when leaving for good, then disconnect; errors count only if graceful."""
        if graceful and self.s.status and self._finished:
            try:
                await link.publish(status_topic(self.device.device_id), b"offline", retain=True)
            except LinkError:
                self.stats.errors["disconnect_error"] += 1
                graceful = False  # counted once; the close below still releases the connection
        try:
            await link.close()
        except LinkError:
            if graceful:
                self.stats.errors["disconnect_error"] += 1
