"""Attacks and bad input (scenarios 10-14): nothing accepted that should not be; no crash; no 500.

Each scenario runs the whole system with a well-behaved fleet publishing
throughout, attacks it from outside (MQTT clients with their own or foreign
certificates, HTTPS clients against the cloud, a look at files, logs and
sockets), and ends with the simulator's audit: the good data must all arrive,
once, and nothing else may be stored.
"""

from __future__ import annotations

import datetime as dt
import gzip
import random
import socket
import ssl
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from citygate.certs.pki import CaName, CertFiles, CertKind, Pki
from citygate.certs.settings import PkiSettings
from citygate.chaos.forge import unclear_identity_certificates
from citygate.chaos.harness import ChaosContext, Scenario
from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import DeviceProfile, ProfileRegistry
from citygate.contract.topics import ack_topic, telemetry_topic
from citygate.contract.validation import Reading, Validator
from citygate.errors import ConfigError

# -- helpers -----------------------------------------------------------------------


def _record(device_id: str, gateway: str, profile: str = "noise") -> DeviceRecord:
    return DeviceRecord(
        device_id=device_id,
        profile=profile,
        profile_version=1,
        site="chaos",
        district="centre",
        gateways=(gateway,),
    )


def _pki(ctx: ChaosContext) -> Pki:
    assert ctx.stack is not None and ctx.stack.pki is not None
    return ctx.stack.pki


def _infra_ca(ctx: ChaosContext) -> Path:
    return _pki(ctx).ca_cert_path(CaName.INFRA)


def _valid_readings(profile: DeviceProfile) -> dict[str, float | int | bool | str]:
    """Values every required field accepts (middle of the range)."""
    out: dict[str, float | int | bool | str] = {}
    for name, spec in profile.fields.items():
        if not spec.required:
            continue
        lo = spec.min if spec.min is not None else 0
        hi = spec.max if spec.max is not None else lo + 10
        if spec.type == "float":
            out[name] = (float(lo) + float(hi)) / 2
        elif spec.type == "int":
            out[name] = (int(lo) + int(hi)) // 2
        elif spec.type == "bool":
            out[name] = True
        else:
            out[name] = "ok"
    return out


def _payload(profile: DeviceProfile, seq: int, ts_ms: int | None = None) -> bytes:
    ts = ts_ms if ts_ms is not None else time.time_ns() // 1_000_000
    return orjson.dumps({"ts": ts, "seq": seq, "readings": _valid_readings(profile)})


def _validator(ctx: ChaosContext) -> tuple[Validator, Inventory, ProfileRegistry]:
    registry = ProfileRegistry()
    inventory = Inventory.load(_pki(ctx).inventory_path)
    return Validator(registry, inventory), inventory, registry


def _profile_of(inventory: Inventory, registry: ProfileRegistry, device_id: str) -> DeviceProfile:
    rec = inventory[device_id]
    return registry.get(rec.profile, rec.profile_version)


@dataclass
class MqttPeer:
    """A paho MQTT client with a certificate, and what happened to it."""

    client: mqtt.Client | None
    connected: bool = False
    reason: str = "timeout"
    connects: int = 0
    disconnects: list[float] = field(default_factory=list)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def connect(
        cls,
        port: int,
        *,
        ca: Path,
        cert: CertFiles | None,
        client_id: str,
        timeout: float = 5.0,
        keep_trying: bool = False,
    ) -> MqttPeer:
        """Connect and wait for the outcome.

        ``keep_trying``: stay in paho's reconnect loop even if refused, as a device would.
        """
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True
        )
        client.tls_set(
            ca_certs=str(ca),
            certfile=str(cert.cert) if cert else None,
            keyfile=str(cert.key) if cert else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.reconnect_delay_set(1, 1)
        peer = cls(client)
        outcome = threading.Event()

        def on_connect(c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
            peer.connected = not rc.is_failure
            peer.reason = str(rc)
            if peer.connected:
                peer.connects += 1
            outcome.set()

        def on_disconnect(c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
            if not outcome.is_set():
                peer.reason = f"disconnected before CONNACK: {rc}"
            elif peer.connected:
                peer.disconnects.append(time.monotonic())
            peer.connected = False
            outcome.set()

        def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            with peer.lock:
                peer.messages.append((msg.topic, bytes(msg.payload)))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        try:
            client.connect("127.0.0.1", port, keepalive=30)
        except (ssl.SSLError, OSError) as e:
            peer.reason = f"{type(e).__name__}: {e}"
            peer.client = None
            return peer
        client.loop_start()
        outcome.wait(timeout)
        if not peer.connected and not keep_trying:
            client.loop_stop()
            peer.client = None
        return peer

    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> bool:
        if self.client is None:
            return False
        info = self.client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def subscribe(self, topic: str, timeout: float = 5.0) -> None:
        assert self.client is not None
        done = threading.Event()
        self.client.on_subscribe = lambda *_a: done.set()
        self.client.subscribe(topic, 1)
        done.wait(timeout)

    def received(self, pred: Callable[[str, bytes], bool]) -> int:
        with self.lock:
            return sum(1 for t, p in self.messages if pred(t, p))

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None


def _refused(peer: MqttPeer) -> bool:
    ok = not peer.connected
    peer.close()
    return ok


def _https(
    ctx: ChaosContext, cert: CertFiles | None, *, timeout: float = 15.0, readers: bool = False
) -> httpx.Client:
    """A client of the gateways' listener (what a gateway, or an impostor, talks to), or with
    ``readers`` of the readers' and operators' listener."""
    assert ctx.stack is not None
    sctx = ssl.create_default_context(cafile=str(_infra_ca(ctx)))
    if cert is not None:
        sctx.load_cert_chain(str(cert.cert), str(cert.key))
    url = ctx.stack.cloud_url if readers else ctx.stack.gateway_url
    return httpx.Client(base_url=url, verify=sctx, timeout=timeout, trust_env=False)


def _outcome(fn: Callable[[], httpx.Response]) -> int | str:
    """The status code, or ``refused`` when the TLS handshake or the connection was refused."""
    try:
        return fn().status_code
    except httpx.TransportError:
        return "refused"


def _influx_seqs(ctx: ChaosContext, measurement: str, device_id: str) -> list[int]:
    assert ctx.stack is not None and ctx.stack.influx is not None
    q = f'SELECT "seq" FROM "{measurement}" WHERE "device_id" = \'{device_id}\''  # noqa: S608 - our own ids
    doc = ctx.stack.influx.query(q, db="citygate")
    out: list[int] = []
    results = doc.get("results")
    for res in results if isinstance(results, list) else []:
        for series in res.get("series") or []:
            out += [int(row[1]) for row in series.get("values") or [] if row[1] is not None]
    return out


class RssPeak:
    """Samples the resident memory of processes in a thread; keeps the peak of each."""

    def __init__(self, pids: dict[str, int | None], every: float = 0.1) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items() if pid is not None}
        self.peak_mb: dict[str, float] = dict.fromkeys(self.procs, 0.0)
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-peak", daemon=True)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def now_mb(self, name: str) -> float:
        try:
            return float(self.procs[name].memory_info().rss) / 1e6
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            for name in self.procs:
                self.peak_mb[name] = max(self.peak_mb[name], self.now_mb(name))
            self._stop.wait(self.every)


def _rejected_total(ctx: ChaosContext) -> int:
    rejected = ctx.health().get("rejected") or {}
    assert isinstance(rejected, dict)
    return sum(int(v) for v in rejected.values())


def _readings_out(ctx: ChaosContext) -> int:
    return int(ctx.health().get("readings_out") or 0)


class Publisher:
    """A device thread publishing valid readings at a steady rate; keeps the seqs it sent."""

    def __init__(self, peer: MqttPeer, device_id: str, profile: DeviceProfile, rate: float) -> None:
        self.peer, self.device_id, self.profile, self.rate = peer, device_id, profile, rate
        self.sent: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pub-{device_id}", daemon=True)

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        seq = 0
        base_ms = time.time_ns() // 1_000_000
        while not self._stop.is_set():
            seq += 1
            payload = _payload(self.profile, seq, base_ms + seq)  # distinct device times
            if self.peer.publish(telemetry_topic(self.device_id), payload):
                self.sent.append(seq)
            self._stop.wait(1.0 / self.rate)


# -- 10. impersonation ----------------------------------------------------------------

FORGED_SEQ = 10**12


def _impersonation(ctx: ChaosContext) -> None:
    ctx.start_system()
    pki = _pki(ctx)
    victim_id, attacker_id = "victim-0001", "mallory-0001"
    pki.issue_devices([_record(victim_id, ctx.node.name), _record(attacker_id, ctx.node.name)])
    devices = ctx.count(50, 500)
    fleet = ctx.start_fleet(devices, ctx.size(200, 2000))
    validator, inventory, registry = _validator(ctx)
    port, ca = ctx.node.broker.device_port, _infra_ca(ctx)

    victim = MqttPeer.connect(port, ca=ca, cert=pki.files(CertKind.DEVICE, victim_id), client_id=victim_id)
    ctx.check("victim device connected with its own certificate", victim.connected, victim.reason)
    victim.subscribe(ack_topic(victim_id))
    noise = registry.get("noise", 1)
    publisher = Publisher(victim, victim_id, noise, rate=ctx.size(20, 50)).start()
    attacker = MqttPeer.connect(
        port, ca=ca, cert=pki.files(CertKind.DEVICE, attacker_id), client_id=attacker_id
    )
    ctx.check("attacker device connected with its own certificate", attacker.connected, attacker.reason)
    connects_before = int(fleet.stats().get("connects", 0))

    # Forged readings on another device's topic: the victim's and fleet devices'.
    rounds = ctx.count(3, 20)
    forged = would_store = 0
    fleet_ids = [f"sim-{i:05d}" for i in range(1, devices + 1)]
    for r in range(rounds):
        batch = ctx.count(50, 200)
        for i in range(batch):
            seq = FORGED_SEQ + r * batch + i
            target = victim_id if i % 2 == 0 else ctx.rng.choice(fleet_ids)
            payload = _payload(_profile_of(inventory, registry, target), seq)
            would_store += isinstance(validator.validate(target, payload), Reading)
            forged += attacker.publish(telemetry_topic(target), payload)
            attacker.publish(ack_topic(target), b"forged-ack")  # the acks a device trusts
        # Eavesdropping on everyone's telemetry.
        attacker.subscribe("devices/+/telemetry")
        attacker.subscribe(f"devices/{victim_id}/ack")
        # Taking over sessions by client id: the victim's and a fleet device's.
        for stolen in (victim_id, ctx.rng.choice(fleet_ids)):
            thief = MqttPeer.connect(
                port, ca=ca, cert=pki.files(CertKind.DEVICE, attacker_id), client_id=stolen
            )
            time.sleep(0.3)
            thief.close()
        ctx.sleep(ctx.size(1.0, 5.0))
    ctx.act(
        f"attacker {attacker_id}: {forged:,} forged readings on the victim's and fleet devices' topics, "
        f"forged acks, a wildcard subscription, {2 * rounds} client-id takeovers ({rounds} rounds)"
    )
    ctx.check(
        "the forged readings are valid (the gateway would store them if they got through)",
        would_store == forged,
        f"{would_store:,} of {forged:,}",
    )
    acks_mid = victim.received(lambda t, p: t == ack_topic(victim_id))
    ctx.sleep(ctx.size(3.0, 10.0))
    acks_end = victim.received(lambda t, p: t == ack_topic(victim_id))
    ctx.check(
        "victim never kicked off",
        not victim.disconnects and victim.connected,
        f"{len(victim.disconnects)} disconnects",
    )
    ctx.check(
        "victim's readings keep being confirmed after the attacks",
        acks_end > acks_mid,
        f"acks {acks_mid} -> {acks_end}",
    )
    ctx.check(
        "no forged ack reached the victim",
        victim.received(lambda t, p: p == b"forged-ack") == 0,
    )
    others = attacker.received(lambda t, p: t != ack_topic(attacker_id))
    ctx.check("attacker received nobody else's messages", others == 0, f"{others} messages")
    connects_after = int(fleet.stats().get("connects", 0))
    ctx.check(
        "no fleet device lost its session to a takeover",
        connects_after == connects_before,
        f"fleet connects {connects_before} -> {connects_after}",
    )
    publisher.stop()
    victim.close()
    attacker.close()
    ctx.act(f"victim {victim_id} published {len(publisher.sent):,} readings throughout")
    ctx.audit_fleets()
    stored = _influx_seqs(ctx, noise.measurement, victim_id)
    ctx.check(
        "victim's readings all stored, once",
        sorted(stored) == sorted(publisher.sent),
        f"sent {len(publisher.sent):,}, stored {len(stored):,}",
    )
    from_attacker = sum(1 for s in stored if s >= FORGED_SEQ)
    ctx.check(
        "nothing of the attacker's stored under the victim", from_attacker == 0, f"{from_attacker} forged"
    )
    ctx.check(
        "attacker stored nothing under its own name either (it sent nothing there)",
        not _influx_seqs(ctx, noise.measurement, attacker_id),
    )


# -- 11. certificates -----------------------------------------------------------------


def _certificates(ctx: ChaosContext) -> None:
    node = ctx.start_system()
    pki = _pki(ctx)
    now = dt.datetime.now(dt.UTC)
    mine = node.name
    pki.issue_devices([_record(d, mine) for d in ("cert-ok", "cert-revoked", "cert-live", "cert-live-ok")])
    pki.issue_device(_record("cert-expired", mine), not_before=now - dt.timedelta(days=10), days=1)
    foreign = Pki.init(PkiSettings(dir=ctx.dir / "foreign-pki"))
    foreign_gw = foreign.issue_gateway(node.name)
    foreign.issue_devices([_record("cert-ok", mine), _record("sim-00001", mine)])
    gw_b_name = "impostor-gw2"
    gw_b = pki.issue_gateway(gw_b_name)
    gw_revoked = pki.issue_gateway("revoked-gw3")
    gw_expired = pki.issue_gateway("expired-gw4", not_before=now - dt.timedelta(days=10), days=1)
    pki.revoke("revoked-gw3", kind=CertKind.GATEWAY, reason="keyCompromise")
    # A spare gateway certificate the city's CA issued but the cloud never registered.
    gw_spare = pki.issue_gateway("spare-gw5")
    Inventory.load(pki.inventory_path).without_gateway("spare-gw5").save(pki.inventory_path)
    unclear = unclear_identity_certificates(pki, ctx.dir / "unclear-certs", node.name, gw_b_name)
    # aiomqtt: the lite client's fleet did not finish its drain after a broker restart (see faults).
    ctx.start_fleet(ctx.count(50, 500), ctx.size(200, 2000), client="aiomqtt")
    port, ca = ctx.node.broker.device_port, _infra_ca(ctx)

    def dev(name: str, client_id: str | None = None, p: Pki = pki) -> MqttPeer:
        return MqttPeer.connect(port, ca=ca, cert=p.files(CertKind.DEVICE, name), client_id=client_id or name)

    control = dev("cert-ok")
    ctx.check("a valid device certificate is accepted (control)", _refused(control) is False, control.reason)
    pki.revoke("cert-revoked", reason="keyCompromise")
    ctx.node.broker.reload()
    ctx.act("revoked cert-revoked (never connected) and reloaded the broker (SIGHUP)")
    tries = ctx.count(3, 20)
    outcomes: dict[str, int] = {}
    attempts: list[tuple[str, Callable[[], MqttPeer]]] = [
        ("no certificate", lambda: MqttPeer.connect(port, ca=ca, cert=None, client_id="nocert")),
        ("foreign CA", lambda: dev("cert-ok", "foreign-1", foreign)),
        ("foreign CA, a fleet device's name", lambda: dev("sim-00001", "foreign-2", foreign)),
        ("expired", lambda: dev("cert-expired")),
        ("revoked", lambda: dev("cert-revoked")),
        (
            "gateway certificate on the device listener",
            lambda: MqttPeer.connect(
                port, ca=ca, cert=pki.files(CertKind.GATEWAY, ctx.node.name), client_id="gw-as-dev"
            ),
        ),
    ]
    for _ in range(tries):
        for name, attempt in attempts:
            outcomes[name] = outcomes.get(name, 0) + _refused(attempt())
    ctx.act(f"{tries} connection attempts each: {', '.join(outcomes)}")
    for name, refused in outcomes.items():
        ctx.check(f"broker refuses: {name}", refused == tries, f"{refused}/{tries} refused")

    # Revoked while connected: the CRL change restarts the broker (deploy/systemd/citygate-crl-reload.*).
    live = dev("cert-live")
    other = MqttPeer.connect(
        port,
        ca=ca,
        cert=pki.files(CertKind.DEVICE, "cert-live-ok"),
        client_id="cert-live-ok",
        keep_trying=True,
    )
    ctx.check("live devices connected", live.connected and other.connected, f"{live.reason}; {other.reason}")
    # The revoked device keeps trying to come back, as a real one would.
    live_reconnects = live.connects
    t0 = time.monotonic()
    pki.revoke("cert-live", reason="keyCompromise")
    ctx.node.broker.restart()
    ctx.act("revoked cert-live while connected; restarted the broker as citygate-crl-reload.service does")
    try:
        ctx.wait_for(
            lambda: bool(live.disconnects), timeout=30, what="revoked device disconnected", every=0.05
        )
        ctx.figure("revoked_to_disconnect_s", round(live.disconnects[0] - t0, 2))
        ctx.check("revoked device disconnected", True, f"{live.disconnects[0] - t0:.2f} s after revocation")
    except TimeoutError as e:
        ctx.check("revoked device disconnected", False, str(e))
    ctx.wait_for(lambda: other.connected, timeout=30, what="unrevoked device reconnected")
    ctx.sleep(ctx.size(3.0, 10.0))
    ctx.check(
        "revoked device cannot come back (it keeps trying)",
        live.connects == live_reconnects and not live.connected,
        f"{live.connects - live_reconnects} reconnects",
    )
    ctx.check("unrevoked device is back after the restart", other.connected)
    live.close()
    other.close()
    ctx.wait_for(
        lambda: _readings_out(ctx) > 0 and bool(ctx.health().get("broker_connected")),
        timeout=30,
        what="agent back on the broker",
    )

    # The cloud: only gateways, each only as itself.
    own = pki.files(CertKind.GATEWAY, node.name)
    hb = _heartbeat_body(ctx)

    def post_empty(c: httpx.Client) -> httpx.Response:
        body = gzip.compress(b'{"batch_id":"chaos-1","readings":[]}')
        return c.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})

    def naming_a(c: httpx.Client) -> httpx.Response:
        body = gzip.compress(orjson.dumps({"batch_id": "x1", "gateway_id": node.name, "readings": []}))
        return c.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})

    case = tuple[str, CertFiles | None, Callable[[httpx.Client], httpx.Response], set[int | str]]
    cases: list[case] = [
        ("device certificate", pki.files(CertKind.DEVICE, "cert-ok"), post_empty, {"refused"}),
        ("no certificate", None, post_empty, {401, 403, "refused"}),
        ("foreign-CA gateway certificate with A's name", foreign_gw, post_empty, {"refused"}),
        ("revoked gateway", gw_revoked, post_empty, {403, "refused"}),
        ("expired gateway", gw_expired, post_empty, {403, "refused"}),
        (
            "server certificate as a gateway",
            pki.files(CertKind.SERVER, "localhost"),
            post_empty,
            {403, "refused"},
        ),
        (
            "gateway A heartbeating as B",
            own,
            lambda c: c.post(f"/v1/gateways/{gw_b_name}/heartbeat", json=hb),
            {403},
        ),
        (
            "gateway B heartbeating as A",
            gw_b,
            lambda c: c.post(f"/v1/gateways/{node.name}/heartbeat", json=hb),
            {403},
        ),
        ("gateway B naming A in the batch", gw_b, naming_a, {422}),
        ("a spare gateway certificate never registered", gw_spare, post_empty, {403}),
    ]
    forbidden: set[int | str] = {403}
    cases += [
        (f"a CA-signed certificate with {label}", f, post_empty, forbidden) for label, f in unclear.items()
    ]
    statuses: list[int | str] = []
    rounds = ctx.count(2, 10)
    wrong: dict[str, list[int | str]] = {}
    for _ in range(rounds):
        for name, cert, fn, allowed in cases:
            with _https(ctx, cert) as c:
                got = _outcome(lambda c=c, fn=fn: fn(c))  # type: ignore[misc]
            statuses.append(got)
            if got not in allowed:
                wrong.setdefault(name, []).append(got)
    ctx.act(f"{len(statuses)} requests to the cloud with wrong identities ({rounds} rounds of {len(cases)})")
    for name, _cert, _fn, allowed in cases:
        ctx.check(
            f"cloud refuses: {name}",
            name not in wrong,
            f"got {wrong[name]}" if name in wrong else "answers: " + "/".join(sorted(map(str, allowed))),
        )
    with _https(ctx, gw_b) as c:
        who = post_empty(c)
    ctx.check(
        "the cloud names a gateway by its certificate",
        who.status_code == 200 and who.json().get("gateway_id") == gw_b_name,
        f"{who.status_code} {who.text[:120]}",
    )
    # Gateway B, registered and valid, posts readings of gateway A's devices (it wrote and
    # overwrote them before): every reading refused per reading, nothing stored.
    _, inventory, registry = _validator(ctx)
    victims = [d for d in inventory if d.startswith("sim-")][:20]
    base_ms = int(time.time() * 1000) - 3_600_000  # an hour back: no fleet reading there
    forged = [
        {
            "device_id": d,
            "ts": base_ms + i,
            "seq": FORGED_SEQ + i,
            "readings": _valid_readings(_profile_of(inventory, registry, d)),
        }
        for i, d in enumerate(victims)
    ]
    with _https(ctx, gw_b) as c:
        body = gzip.compress(orjson.dumps({"batch_id": "chaos-forged", "readings": forged}))
        answer = c.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
    doc = answer.json() if answer.status_code == 200 else {}
    reasons = {r["reason"] for r in doc.get("rejected", [])}
    ctx.check(
        "gateway B's readings of A's devices are refused per reading (not_assigned)",
        doc.get("accepted") == 0 and reasons == {"not_assigned"},
        f"{answer.status_code}: accepted {doc.get('accepted', '-')} of {len(forged)}, "
        f"reasons {sorted(reasons)}",
    )
    fives = [s for s in statuses if isinstance(s, int) and s >= 500]
    ctx.check("no 5xx from the cloud", not fives, f"{len(statuses)} requests, 5xx: {fives}")
    ctx.audit_fleets()


def _heartbeat_body(ctx: ChaosContext) -> dict[str, object]:
    """A well-formed heartbeat (the agent's own numbers)."""
    keys = (
        "agent_version",
        "uptime_s",
        "readings_in",
        "readings_out",
        "rejected",
        "dropped",
        "outbox_depth",
        "outbox_bytes",
        "disk_free_bytes",
        "rss_bytes",
        "cpu_percent",
        "broker_connected",
        "cert_days_left",
    )
    h = ctx.health()
    body = {k: h.get(k) for k in keys}
    body["rejected"] = body["rejected"] or {}
    body["dropped"] = body["dropped"] or {}
    return body


# -- 12. fuzz ------------------------------------------------------------------------

MB = 1024 * 1024


def _json_garbage(rng: random.Random, now_ms: int) -> object:
    """A payload document that must be refused: wrong shapes, types, ranges, times, fields."""
    good: dict[str, object] = {
        "ts": now_ms,
        "seq": rng.randrange(10**6),
        "readings": {"laeq": 55.0, "lamax": 70.0},
    }
    choices: list[Callable[[], object]] = [
        lambda: good | {"readings": {"laeq": rng.choice(["loud", True, None, [], {}, [55.0], {"v": 1}])}},
        lambda: good | {"readings": {"laeq": rng.choice([1e6, -5.0, 141.0, 19.99, 2**64 - 1])}},
        lambda: good | {"readings": {"laeq": 55.0, "lamax": 70.0, f"evil{rng.randrange(99)}": 1.0}},
        lambda: good | {"readings": {"lamax": 70.0}},  # a required field missing
        lambda: good | {"readings": rng.choice([[], "x", 5, None, True])},
        lambda: good | {"seq": rng.choice(["1", -1, 2**64 - 1, 1.5, [], {}, True])},
        lambda: good | {"ts": rng.choice(["yesterday", [], {}, True, 1e30, -1, "2024-13-45T99:00:00Z"])},
        lambda: good | {"ts": now_ms + rng.choice([86_400_000, 10**12])},  # the future
        lambda: good | {"ts": rng.choice([0, 1000, now_ms - 400 * 86_400_000])},  # long ago
        lambda: good | {"device_id": "someone-else"},
        lambda: rng.choice([None, 0, "str", [], {}, [1, 2], True, 1.5]),
        lambda: [{"n": "laeq", "v": rng.choice(["x", None, [], 1e6])}],  # SenML, bad
        lambda: [{"bn": 5}, {"n": 7}],
        lambda: {"readings": {"laeq": [[[[55.0]]]]}},
    ]
    return rng.choice(choices)()


def _mqtt_garbage(rng: random.Random, n: int, huge: list[int]) -> list[tuple[str, bytes]]:
    """(kind, payload): every kind of bad payload a device could send on its own topic."""
    now_ms = time.time_ns() // 1_000_000
    fixed: list[tuple[str, bytes]] = [
        ("nested arrays", b"[" * 4000 + b"]" * 4000),
        ("nested objects", b'{"a":' * 1500 + b"1" + b"}" * 1500),
        ("nested readings", b'{"ts":%d,"seq":1,"readings":{"laeq":%s}}' % (now_ms, b"[" * 200 + b"]" * 200)),
        ("NaN", b'{"ts":%d,"seq":2,"readings":{"laeq":NaN,"lamax":70.0}}' % now_ms),
        ("Infinity", b'{"ts":%d,"seq":3,"readings":{"laeq":Infinity,"lamax":70.0}}' % now_ms),
        ("-Infinity", b'{"ts":%d,"seq":4,"readings":{"laeq":-Infinity,"lamax":70.0}}' % now_ms),
        ("1e999", b'{"ts":%d,"seq":5,"readings":{"laeq":1e999,"lamax":70.0}}' % now_ms),
        ("invalid UTF-8 value", b'{"ts":%d,"seq":6,"readings":{"laeq":"\xff\xfe","lamax":70.0}}' % now_ms),
        ("invalid UTF-8 key", b'{"ts":%d,"seq":7,"readings":{"\xc3\x28":55.0,"lamax":70.0}}' % now_ms),
        ("empty", b""),
        ("null", b"null"),
        ("truncated", b'{"ts":%d,"seq":8,"readings":{"laeq":5' % now_ms),
        ("BOM", b'\xef\xbb\xbf{"ts":1,"seq":9}'),
    ]
    out = list(fixed)
    for size in huge:
        out.append((f"huge {size // 1024} KiB", b'{"ts":1,"seq":1,"readings":{"laeq":' + b"1" * size + b"}}"))
    while len(out) < n:
        kind = rng.random()
        if kind < 0.25:
            out.append(("random bytes", rng.randbytes(rng.randrange(1, 3000))))
        elif kind < 0.35:
            blob = bytearray(orjson.dumps(_json_garbage(rng, now_ms)))
            for _ in range(rng.randrange(1, 4)):  # flip a few bytes
                if blob:
                    blob[rng.randrange(len(blob))] = rng.randrange(256)
            out.append(("mutated JSON", bytes(blob)))
        else:
            out.append(("bad document", orjson.dumps(_json_garbage(rng, now_ms))))
    return out


def _cloud_garbage(
    rng: random.Random, n: int, bomb_bytes: int
) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """(kind, body, headers) for POST /v1/ingest: garbage bodies, bombs, bad headers."""
    gz = {"Content-Encoding": "gzip"}
    now_ms = time.time_ns() // 1_000_000
    zeros = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * MB
    bomb = b"".join(zeros.compress(chunk) for _ in range(bomb_bytes // MB)) + zeros.flush()
    yield f"gzip bomb ({bomb_bytes // MB} MiB of zeros)", bomb, gz
    for name, unit in (("[]", b"[],"), ("{}", b"{},"), ("1.5", b"1.5,")):
        k = (30 * MB) // len(unit)
        doc = b'{"batch_id":"bomb","readings":[' + unit * k + b"0]}"
        yield f"gzip JSON bomb ({k:,} x {name})", gzip.compress(doc, 6), gz
    yield "gzip of gzip", gzip.compress(gzip.compress(b'{"batch_id":"x","readings":[]}')), gz
    yield "deeply nested", b"[" * 200_000 + b"]" * 200_000, {}
    yield "NaN", b'{"batch_id":"n","readings":[{"device_id":"fuzz-0001","ts":1,"readings":{"laeq":NaN}}]}', {}
    yield "5 MiB identity", rng.randbytes(5 * MB), {}
    yield "too many readings", gzip.compress(b'{"batch_id":"many","readings":[' + b"{}," * 6000 + b"{}]}"), gz
    for enc in ("br", "deflate", "gzip, gzip", "x" * 2000, "compress", "GZIP"):
        yield (
            f"Content-Encoding {enc[:12]!r}",
            gzip.compress(b'{"batch_id":"e","readings":[]}'),
            {"Content-Encoding": enc},
        )
    yield "wrong content type", b'{"batch_id":"t","readings":[]}', {"Content-Type": "text/html"}
    yield "bad batch id", b'{"batch_id":"../../etc/passwd","readings":[]}', {}
    devices = ["fuzz-0001", "sim-00001", "nobody", "", "victim/../x", "a" * 300]
    while n > 0:
        n -= 1
        r = rng.random()
        if r < 0.2:
            yield "random bytes", rng.randbytes(rng.randrange(0, 4000)), rng.choice([{}, gz])
        elif r < 0.3:
            yield "gzip of random bytes", gzip.compress(rng.randbytes(rng.randrange(0, 4000))), gz
        else:
            readings: list[object] = []
            for _ in range(rng.randrange(1, 40)):
                item = _json_garbage(rng, now_ms)
                if isinstance(item, dict) and "device_id" not in item:
                    item["device_id"] = rng.choice(devices)
                readings.append(item)
            yield (
                "garbage readings",
                gzip.compress(orjson.dumps({"batch_id": f"f{n}", "readings": readings})),
                gz,
            )


def _fuzz(ctx: ChaosContext) -> None:
    node = ctx.start_system()
    pki = _pki(ctx)
    fuzz_id = "fuzz-0001"
    pki.issue_devices([_record(fuzz_id, node.name)])
    ctx.start_fleet(ctx.count(50, 500), ctx.size(200, 2000))
    validator, _, _ = _validator(ctx)
    assert ctx.stack is not None
    with RssPeak({"agent": node.agent.pid, "cloud": ctx.stack.cloud.pid if ctx.stack.cloud else None}) as rss:
        ctx.figure("agent_rss_before_mb", round(rss.now_mb("agent"), 1))
        ctx.figure("cloud_rss_before_mb", round(rss.now_mb("cloud"), 1))
        # At the gateway: a device with a valid certificate, on its own topic.
        # Over the agent's max_payload_bytes but under the broker's max_packet_size: the agent
        # must reject them; bigger ones the broker must refuse before anyone holds them in memory.
        huge = [20_000, 256 * 1024, MB - 1024]
        oversized = [4 * MB] + ([16 * MB, 64 * MB] if ctx.long else [])
        garbage = _mqtt_garbage(ctx.rng, ctx.count(300, 5000), huge)
        accepted_locally = [k for k, p in garbage if isinstance(validator.validate(fuzz_id, p), Reading)]
        ctx.check(
            "every generated payload is invalid", not accepted_locally, f"valid: {accepted_locally[:5]}"
        )
        attacker = MqttPeer.connect(
            node.broker.device_port,
            ca=_infra_ca(ctx),
            cert=pki.files(CertKind.DEVICE, fuzz_id),
            client_id=fuzz_id,
        )
        ctx.check("fuzzing device connected", attacker.connected, attacker.reason)
        rejected0, out0 = _rejected_total(ctx), _readings_out(ctx)
        delivered = 0
        t0 = time.monotonic()
        for _kind, payload in garbage:
            delivered += attacker.publish(telemetry_topic(fuzz_id), payload, timeout=30)
        # A burst of big ones without waiting for each PUBACK.
        burst = ctx.count(8, 32)
        infos = (
            []
            if attacker.client is None
            else [
                attacker.client.publish(telemetry_topic(fuzz_id), b"[" + b"0," * (256 * 1024) + b"0]", qos=1)
                for _ in range(burst)
            ]
        )
        for info in infos:
            info.wait_for_publish(60)
            delivered += info.is_published()
        ctx.act(
            f"device {fuzz_id}: {len(garbage) + burst:,} bad payloads on its own topic in "
            f"{time.monotonic() - t0:.1f} s (largest {max(huge) // 1024} KiB; a burst of {burst} x 512 KiB), "
            f"{delivered:,} acknowledged by the broker"
        )
        try:
            ctx.wait_for(
                lambda: _rejected_total(ctx) - rejected0 >= delivered,
                timeout=60,
                what="every bad payload counted as rejected",
            )
        except TimeoutError as e:
            ctx.act(str(e))
        ctx.sleep(1.0)
        counted = _rejected_total(ctx) - rejected0
        reasons = ctx.health().get("rejected")
        ctx.check(
            "gateway: every bad payload rejected with a reason",
            counted == delivered,
            f"{delivered:,} delivered, {counted:,} rejected: {reasons}",
        )
        attacker.close()

        # Packets over the broker's max_packet_size: the connection is closed, nothing delivered.
        refused_big = 0
        rejected_before = _rejected_total(ctx)
        for size in oversized:
            big = MqttPeer.connect(
                node.broker.device_port,
                ca=_infra_ca(ctx),
                cert=pki.files(CertKind.DEVICE, fuzz_id),
                client_id=fuzz_id,
            )
            acked = big.publish(
                telemetry_topic(fuzz_id), b'{"ts":1,"seq":1,"readings":{"laeq":' + b"1" * size + b"}}", 20
            )
            deadline = time.monotonic() + 20
            while not big.disconnects and time.monotonic() < deadline:
                time.sleep(0.1)
            refused_big += int(not acked and bool(big.disconnects))
            big.close()
        ctx.act(
            f"device {fuzz_id}: {len(oversized)} packets over max_packet_size ({oversized[-1] // MB} MiB max)"
        )
        ctx.check(
            "broker: oversized packets refused (connection closed), never delivered",
            refused_big == len(oversized) and _rejected_total(ctx) == rejected_before,
            f"{refused_big}/{len(oversized)} refused; "
            f"agent rejected {_rejected_total(ctx) - rejected_before}",
        )

        # At the cloud: garbage as an authenticated gateway.
        statuses: dict[int | str, int] = {}
        bad: list[str] = []
        sent = 0
        with _https(ctx, pki.files(CertKind.GATEWAY, node.name), timeout=60) as c:
            for kind, body, headers in _cloud_garbage(
                ctx.rng, ctx.count(150, 3000), ctx.count(64, 1024) * MB
            ):
                sent += 1
                try:
                    resp = c.post("/v1/ingest", content=body, headers=headers)
                except httpx.TransportError as e:
                    statuses["closed"] = statuses.get("closed", 0) + 1
                    bad.append(f"{kind}: connection error {type(e).__name__}")
                    continue
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                if resp.status_code == 200:
                    doc = resp.json()
                    if doc.get("accepted") != 0 or not all(r.get("reason") for r in doc.get("rejected", [])):
                        bad.append(f"{kind}: 200 {resp.text[:200]}")
                elif resp.status_code not in (400, 413, 415, 422):
                    bad.append(f"{kind}: {resp.status_code} {resp.text[:200]}")

            # Streamed (chunked) beyond the body limit.
            def stream() -> Iterator[bytes]:
                for _ in range(12):
                    yield ctx.rng.randbytes(MB // 2)

            code = _outcome(
                lambda: c.post("/v1/ingest", content=stream(), headers={"Content-Encoding": "gzip"})
            )
            statuses[code] = statuses.get(code, 0) + 1
            sent += 1
            if code not in (413, "refused"):
                bad.append(f"chunked 6 MiB: {code}")
        ctx.act(f"{sent:,} garbage requests to POST /v1/ingest as the gateway: {statuses}")
        ctx.check(
            "cloud: every garbage request refused with a 4xx (or its readings rejected)",
            not bad,
            "; ".join(bad[:5]),
        )
        fives = sum(v for k, v in statuses.items() if isinstance(k, int) and k >= 500)
        ctx.check("cloud: no 5xx", fives == 0, f"{fives} 5xx")
        ctx.check(
            "good data kept flowing during the fuzzing",
            _readings_out(ctx) > out0,
            f"readings_out {out0:,} -> {_readings_out(ctx):,}",
        )
        ctx.check("agent alive", node.agent.running and bool(ctx.health()))
        ctx.check("cloud alive", ctx.stack.cloud is not None and ctx.stack.cloud.running)
    for name, peak in rss.peak_mb.items():
        ctx.figure(f"{name}_rss_peak_mb", round(peak, 1))
        ctx.check(
            f"{name} memory bounded", peak < RSS_BOUND_MB, f"peak {peak:.0f} MB (bound {RSS_BOUND_MB} MB)"
        )
    ctx.audit_fleets()


RSS_BOUND_MB = 300


# -- 13. hostile HTTP clients ---------------------------------------------------------


def _closed(sock: socket.socket) -> bool:
    """True if the peer closed or reset ``sock`` (non-blocking check)."""
    try:
        return sock.recv(4096) == b""
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return False
    except OSError:  # reset, or a TLS alert
        return True


@dataclass
class _Held:
    sock: socket.socket
    opened: float
    closed: float | None = None
    dripped: int = 0


class Slowloris:
    """Keeps ``n`` connections to the cloud open: TLS ones trickling header bytes, or raw TCP ones silent."""

    def __init__(self, port: int, n: int, *, ca: Path | None, drip_every: float, replace: bool) -> None:
        self.port, self.n, self.drip_every, self.replace = port, n, drip_every, replace
        self.tls = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
        self.held: list[_Held] = []
        self.open_failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def _open(self) -> None:
        try:
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock: socket.socket = raw
            if self.tls is not None:
                sock = self.tls.wrap_socket(raw, server_hostname="localhost")
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            sock.setblocking(False)
        except OSError:
            self.open_failures += 1
            return
        self.held.append(_Held(sock, time.monotonic()))

    def start(self) -> Slowloris:
        for _ in range(self.n):
            self._open()
        self._thread.start()
        return self

    def open_now(self) -> list[_Held]:
        return [h for h in self.held if h.closed is None]

    def _run(self) -> None:
        line = b"X-Slow: keep-me-open\r\n"
        while not self._stop.wait(self.drip_every):
            now = time.monotonic()
            for h in self.open_now():
                if _closed(h.sock):
                    h.closed = now
                    h.sock.close()
                    continue
                if self.tls is not None:
                    try:
                        h.sock.send(line[h.dripped % len(line) : h.dripped % len(line) + 1])
                        h.dripped += 1
                    except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                        pass
                    except OSError:
                        h.closed = now
                        h.sock.close()
            if self.replace:
                for _ in range(self.n - len(self.open_now())):
                    self._open()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for h in self.open_now():
            h.sock.close()

    def lifetimes(self) -> tuple[list[float], int]:
        """Seconds each closed connection lived; how many are still open."""
        return [h.closed - h.opened for h in self.held if h.closed is not None], len(self.open_now())


def _raw_request(port: int, ca: Path, request: bytes) -> int | str:
    """Send ``request`` over TLS and read the status code; ``closed`` if the server hung up first."""
    sctx = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            sctx.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(request)
            head = sock.recv(64)
    except OSError:
        return "closed"
    if not head.startswith(b"HTTP/1.1 "):
        return "closed"
    return int(head[9:12])


def _hostile_http(ctx: ChaosContext) -> None:
    from citygate.cloud.settings import CloudSettings

    node = ctx.start_system()
    assert ctx.stack is not None and ctx.stack.cloud is not None
    port, ca = ctx.stack.cloud_port, _infra_ca(ctx)
    header_timeout = float(CloudSettings.model_fields["header_timeout_s"].default)
    ctx.start_fleet(ctx.count(50, 500), ctx.size(200, 2000))
    gw_cert = _pki(ctx).files(CertKind.GATEWAY, node.name)
    out0 = _readings_out(ctx)
    attack_s = ctx.size(header_timeout + 8.0, 150.0)
    slow = Slowloris(port, ctx.count(100, 500), ca=ca, drip_every=ctx.size(1.0, 2.0), replace=True).start()
    silent = Slowloris(port, ctx.count(50, 300), ca=None, drip_every=1.0, replace=False).start()
    ctx.act(
        f"{slow.n} TLS clients sending their headers a byte every {slow.drip_every:.0f} s (replaced when "
        f"closed) and {silent.n} TCP clients that never start TLS, for {attack_s:.0f} s"
    )
    latencies: list[float] = []
    probe_status: dict[int | str, int] = {}
    t_end = time.monotonic() + attack_s
    while time.monotonic() < t_end:
        t0 = time.monotonic()
        with _https(ctx, gw_cert, timeout=30) as c:  # a new connection each time: handshake included
            got = _outcome(lambda c=c: c.get("/readyz"))  # type: ignore[misc]
        latencies.append(time.monotonic() - t0)
        probe_status[got] = probe_status.get(got, 0) + 1
        ctx.sleep(0.5)
    # Huge headers and many headers, while the slow clients are still there.
    big = {
        "16 KiB header": 16 * 1024,
        "60 KiB header": 60 * 1024,
        "100 KiB header": 100 * 1024,
        "1 MiB header": MB,
    }
    header_status: dict[str, int | str] = {}
    for name, size in big.items():
        req = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
        header_status[name] = _raw_request(port, ca, req)
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(ctx.count(3000, 20000)))
    header_status["many headers"] = _raw_request(
        port, ca, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n"
    )
    long_url = b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
    header_status["200 KB request line"] = _raw_request(port, ca, long_url)
    ctx.act(f"huge headers: {header_status}")
    out1 = _readings_out(ctx)
    slow.stop()
    lifetimes, still_open = slow.lifetimes()
    silent_lives, silent_open = silent.lifetimes()
    if ctx.long:
        # The TLS handshake is bounded by asyncio's 60 s: wait for the silent ones to go.
        try:
            ctx.wait_for(lambda: not _silent_left(silent), timeout=90, what="silent TCP clients closed")
        except TimeoutError as e:
            ctx.act(str(e))
        silent_lives, silent_open = silent.lifetimes()
    silent.stop()

    lat = sorted(latencies)
    ctx.figure("probe_p50_s", round(lat[len(lat) // 2], 3))
    ctx.figure("probe_max_s", round(lat[-1], 3))
    ctx.figure("slow_connections_opened", len(slow.held))
    ctx.figure("slow_connection_max_life_s", round(max(lifetimes, default=0.0), 1))
    ctx.check(
        "well-behaved gateway requests answered during the attack",
        set(probe_status) == {200},
        f"{len(latencies)} GET /readyz with a new TLS connection each: {probe_status}",
    )
    ctx.check(
        "and promptly",
        lat[-1] < 3.0,
        f"p50 {lat[len(lat) // 2] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms",
    )
    ctx.check("the gateway kept delivering", out1 > out0, f"readings_out {out0:,} -> {out1:,}")
    bound = header_timeout + 2 * slow.drip_every + 2.0
    ctx.check(
        "slow clients are disconnected by the server",
        bool(lifetimes) and max(lifetimes) <= bound and still_open <= slow.n,
        f"{len(lifetimes)} of {len(slow.held)} closed by the server, "
        f"longest lived {max(lifetimes, default=0):.1f} s "
        f"(header timeout {header_timeout:.0f} s); {slow.open_failures} could not connect",
    )
    if ctx.long:
        ctx.figure("silent_connection_max_life_s", round(max(silent_lives, default=0.0), 1))
        ctx.check(
            "silent TCP clients are disconnected (TLS handshake timeout)",
            silent_open == 0 and max(silent_lives, default=0.0) < 75.0,
            f"{len(silent_lives)} closed, longest {max(silent_lives, default=0):.0f} s, "
            f"{silent_open} still open",
        )
    else:
        ctx.act(
            f"silent TCP clients: {len(silent_lives)} closed, {silent_open} still open "
            "(asyncio closes at 60 s)"
        )
    fives = {k: v for k, v in header_status.items() if isinstance(v, int) and v >= 500}
    # h11 refuses a request whose head is still incomplete beyond 64 KiB of buffered bytes; a head
    # that arrives whole in fewer reads may be parsed: only the megabyte one is certain to be refused.
    refused_ok = header_status["1 MiB header"] in (400, 431, "closed")
    ctx.check(
        "a 1 MiB header is refused (400/431 or closed); no header size gets a 5xx",
        refused_ok and not fives,
        str(header_status),
    )
    ctx.check("cloud alive", ctx.stack.cloud.running)
    ctx.audit_fleets()


def _silent_left(s: Slowloris) -> bool:
    now = time.monotonic()
    for h in s.open_now():
        if _closed(h.sock):
            h.closed = now
            h.sock.close()
    return bool(s.open_now())


# -- 14. secrets ----------------------------------------------------------------------

_LOG_NAMES = ("*.log", "*.stdout", "*.stderr")


def _files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


def _secrets(ctx: ChaosContext) -> None:
    from citygate.cloud.settings import CloudSettings
    from citygate.gateway.settings import GatewaySettings

    node = ctx.start_system()
    stack = ctx.stack
    assert stack is not None and stack.cloud is not None and stack.influx is not None
    pki = _pki(ctx)
    fleet = ctx.start_fleet(ctx.count(20, 200), ctx.size(100, 1000))
    bogus = "chaos-bogus-" + "b" * 30
    with _https(ctx, pki.files(CertKind.GATEWAY, node.name), readers=True) as c:
        for token in (stack.operator_token, bogus):
            for url in ("/v1/gateways", "/metrics", "/v1/devices"):
                c.get(url, headers={"Authorization": f"Bearer {token}"})
        no_token = c.get("/v1/gateways").status_code
        bad_token = c.get("/v1/gateways", headers={"Authorization": f"Bearer {bogus}"}).status_code
    ctx.check("reads without a token refused", no_token == 401, str(no_token))
    ctx.check("reads with an unknown token refused", bad_token in (401, 403), str(bad_token))
    ctx.sleep(ctx.size(5.0, 30.0))
    ctx.act("operator and bogus bearer tokens sent to the cloud; the fleet ran")

    # Which bytes are secret: every private key (its PEM and its base64 body), the tokens.
    keys = [
        p
        for p in _files(stack.dir)
        if p.suffix in (".key", ".pem") and b"PRIVATE KEY" in p.read_bytes()[:100]
    ]
    key_bodies = [p.read_bytes().splitlines()[1] for p in keys]
    secrets = [b"PRIVATE KEY", stack.operator_token.encode(), bogus.encode(), *key_bodies]
    ctx.check("private keys found", len(keys) >= 4, f"{len(keys)} key files")

    # File modes: keys and files holding tokens are 0600 (or stricter).
    loose: list[str] = []
    holding_token: list[Path] = []
    for path in _files(stack.dir):
        if path.stat().st_size > 8 * MB:
            continue
        data = path.read_bytes()
        is_key = b"PRIVATE KEY" in data[:100]
        if stack.operator_token.encode() in data:
            holding_token.append(path)
        if (is_key or stack.operator_token.encode() in data) and path.stat().st_mode & 0o077:
            loose.append(f"{path.relative_to(stack.dir)} {stat.filemode(path.stat().st_mode)}")
    ctx.check("private keys and token files are 0600", not loose, "; ".join(loose[:5]) or f"{len(keys)} keys")
    ctx.figure("files_with_the_operator_token", len(holding_token))

    # Logs of every process: no key, no token.
    logs = [p for pattern in _LOG_NAMES for p in ctx.dir.rglob(pattern)] + [fleet.log]
    leaks = [f"{p.relative_to(ctx.dir)}" for p in set(logs) if any(s in p.read_bytes() for s in secrets)]
    ctx.check("no key or token in any log", not leaks, f"{len(set(logs))} logs; leaks: {leaks[:5]}")

    # Command lines and environments of the running processes.
    procs = {
        "agent": node.agent.pid,
        "cloud": stack.cloud.pid,
        "broker": node.broker.process.pid,
        "influxdb": stack.influx.process.pid if hasattr(stack.influx, "process") else None,
        "simulator": fleet.proc.pid,
    }
    exposed: list[str] = []
    for name, pid in procs.items():
        if pid is None:
            continue
        try:
            proc = psutil.Process(pid)
            argv = "\0".join(proc.cmdline()).encode()
            env = "\0".join(f"{k}={v}" for k, v in proc.environ().items()).encode()
        except (psutil.NoSuchProcess, psutil.AccessDenied) as e:
            exposed.append(f"{name}: cannot read ({e})")
            continue
        if any(s in argv for s in secrets):
            exposed.append(f"{name}: argv")
        if any(s in env for s in secrets):
            exposed.append(f"{name}: environment")
    ctx.check(
        "no key or token in a command line or environment",
        not exposed,
        ", ".join(exposed) or f"{len(procs)} processes",
    )

    # No weak or default credentials: the cloud refuses to start with them.
    cloud_cfg = stack.dir / "cloud.toml"
    weak_refused: list[str] = []
    for label, tokens in (
        ("empty", {"ops": ""}),
        ("short", {"ops": "admin"}),
        ("23 chars", {"ops": "x" * 23}),
    ):
        try:
            CloudSettings.load(cloud_cfg, operator_tokens=tokens)
        except ConfigError:
            weak_refused.append(label)
    ctx.check(
        "cloud refuses empty and short operator tokens",
        weak_refused == ["empty", "short", "23 chars"],
        f"refused: {weak_refused}",
    )
    try:
        GatewaySettings.load(node.config_path, cloud_url="http://localhost:1")
        plain_refused = False
    except ConfigError:
        plain_refused = True
    ctx.check("gateway refuses a plaintext cloud URL", plain_refused)
    cfg = CloudSettings.load(cloud_cfg)
    ctx.check(
        "cloud requires TLS with the infrastructure CA only",
        cfg.client_ca == pki.ca_cert_path(CaName.INFRA) and cfg.tls_key.exists(),
        f"client_ca {cfg.client_ca.name}",
    )

    # Listeners: exactly what the configuration says, loopback here.
    want = {
        "agent": {("127.0.0.1", node.http_port)},
        "cloud": {(cfg.host, cfg.port)}
        | ({(cfg.gateway_host or cfg.host, cfg.gateway_port)} if cfg.gateway_port else set()),
        "broker": {
            (node.broker.config.device_host, node.broker.device_port),
            (node.broker.config.gateway_host, node.broker.gateway_port),
        },
    }
    for name, expected in want.items():
        pid = procs[name]
        assert pid is not None
        listening = {
            (c.laddr.ip, c.laddr.port)
            for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        ctx.check(f"{name} listens only where configured", listening == expected, f"{sorted(listening)}")
    ctx.audit_fleets()


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        10,
        "impersonation",
        "A device impersonating another",
        "A device with a valid certificate publishes forged readings and acks on other devices' "
        "topics, subscribes to everyone's telemetry and connects with other devices' client ids while they "
        "publish: the broker drops all of it, nothing forged is stored, and no victim is disconnected or "
        "loses a reading.",
        _impersonation,
    ),
    Scenario(
        11,
        "certificates",
        "Bad certificates at the broker and the cloud",
        "Devices without a certificate, with a foreign-CA, expired, revoked or gateway certificate are "
        "refused "
        "by the broker; a device revoked while connected is cut off by the broker restart that a CRL change "
        "triggers (seconds measured) and stays out, while the fleet loses nothing. The cloud refuses device, "
        "foreign, revoked and expired certificates and a gateway acting as another, never with a 5xx.",
        _certificates,
    ),
    Scenario(
        12,
        "fuzz",
        "Payload fuzzing at the gateway and the cloud",
        "A device with a valid certificate publishes huge, deeply nested, non-finite, wrongly typed, invalid "
        "UTF-8 and random payloads on its own topic, and a gateway posts garbage, gzip bombs and bad headers "
        "to /v1/ingest: every payload is counted as rejected with a reason, the cloud answers 4xx and never "
        "5xx, both stay under a memory bound, and the fleet's data keeps flowing with nothing lost.",
        _fuzz,
    ),
    Scenario(
        13,
        "hostile-http",
        "Slow and hostile HTTP clients against the cloud",
        "While the gateway delivers, hundreds of TLS clients send their headers a byte at a time, TCP "
        "clients "
        "never start TLS, and others send huge headers: gateway requests keep being answered promptly, slow "
        "clients are disconnected after the header timeout, huge headers get 400/431, never a 5xx.",
        _hostile_http,
    ),
    Scenario(
        14,
        "secrets",
        "Secrets and exposure",
        "After a run: private keys and files holding tokens are 0600; no key or token appears in any log, "
        "command line or environment; the cloud refuses empty or short tokens and the gateway a plaintext "
        "URL; "
        "every process listens only on the addresses its configuration names.",
        _secrets,
    ),
)
