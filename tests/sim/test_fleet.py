"""The fleet against a real Mosquitto with mTLS: ledger -> broker -> stand-in gateway -> InfluxDB -> audit."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from pathlib import Path

import orjson
import pytest

from citygate.certs.pki import CaName, Pki
from citygate.contract.inventory import Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.readings import Reading, Rejection
from citygate.contract.validation import Validator
from citygate.servers.influxdb import LocalInfluxDB
from citygate.servers.mosquitto import LocalMosquitto
from citygate.simulators import provision
from citygate.simulators.audit import InfluxV1Source, audit
from citygate.simulators.faults import CERT_FAULTS, FaultKind, FaultRequest, resolve
from citygate.simulators.fleet import WRONG_TOPIC_SEQ_BASE, Fleet, FleetSettings
from citygate.simulators.ledger import STATE_EXPECTED, LedgerWriter, load
from citygate.simulators.progress import FleetStats
from tests.sim.conftest import StandInGateway, reload_broker, store_readings
from tests.waiting import wait_until

pytestmark = pytest.mark.servers

REGISTRY = ProfileRegistry()


def seq_of(payload: bytes) -> int | None:
    try:
        return int(orjson.loads(payload)["seq"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None  # the malformed and NaN payloads


def run_fleet(
    pki: Pki,
    broker: LocalMosquitto,
    prefix: str,
    n: int,
    *,
    ledger: Path | None = None,
    faults: list[FaultRequest] | None = None,
    during: object = None,
    **settings: object,
) -> FleetStats:
    records = provision.ensure_devices(pki, prefix, n, provision.parse_mix(None, REGISTRY), REGISTRY)
    plan = resolve(faults or [], [r.device_id for r in records], seed=3)
    refused: dict[str, FaultKind] = {}
    for kind in CERT_FAULTS:
        extra = provision.ensure_cert_fault_devices(
            pki, prefix, kind, plan.cert_devices.get(kind, 0), REGISTRY
        )
        records += extra
        refused.update({r.device_id: kind for r in extra})
    if refused:
        reload_broker(broker)  # the new CRL names the revoked devices
    devices = provision.build_fleet(pki, records, REGISTRY, plan, refused)
    defaults: dict[str, object] = {"ramp_s": 0.5, "drain_s": 5.0, "resend_after_s": 1.0, "seed": 3}
    fs = FleetSettings(
        host="127.0.0.1", port=broker.device_port, ca=pki.ca_cert_path(CaName.INFRA), **(defaults | settings)
    )  # type: ignore[arg-type]
    writer = LedgerWriter(ledger) if ledger else None
    fleet = Fleet(fs, devices, ledger=writer)

    async def main() -> FleetStats:
        task = asyncio.get_running_loop().create_task(fleet.run())
        if during is not None:
            assert callable(during)
            await during(fleet)
        return await task

    try:
        return asyncio.run(main())
    finally:
        if writer:
            writer.close()


def test_confirmed_run_then_audit_against_influxdb(
    sim_pki: Pki, sim_broker: LocalMosquitto, gateway: StandInGateway, influxdb: LocalInfluxDB, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.bin"
    stats = run_fleet(sim_pki, sim_broker, "e2e", 16, ledger=ledger, interval_s=0.1, count=15, confirm=True)
    assert stats.produced == 16 * 15
    assert stats.confirmed == stats.produced
    assert stats.held_at_end == 0
    assert stats.errors == {}
    gateway.wait_quiet()
    # Every payload the gateway received is valid for its device's profile.
    validator = Validator(REGISTRY, Inventory.load(sim_pki.inventory_path))
    for device, payloads in gateway.by_device().items():
        for p in payloads:
            assert isinstance(validator.validate(device, p), Reading)
    store_readings(influxdb, "sim_e2e", sim_pki, gateway.by_device())
    report = audit(ledger, InfluxV1Source(influxdb.url, "sim_e2e"))
    t = report.total
    assert (t.expected, t.stored, t.lost, t.duplicated, t.unexpected) == (240, 240, 0, 0, 0)

    # Delete three stored readings and store one twice: the audit says exactly that.
    data = load(ledger)
    victim = data.entries["e2e-00001"]
    m = victim.device.measurement
    for seq in (2, 3, 4):
        ts_ns = victim.ts_ms[seq - victim.base] * 1_000_000
        influxdb.query(f"DELETE FROM \"{m}\" WHERE device_id = 'e2e-00001' AND time = {ts_ns}", db="sim_e2e")
    ts_ns = victim.ts_ms[7 - victim.base] * 1_000_000 + 1_000_000
    influxdb.write("sim_e2e", f"{m},device_id=e2e-00001 seq=7i {ts_ns}".encode())
    t = audit(ledger, InfluxV1Source(influxdb.url, "sim_e2e")).total
    assert (t.expected, t.stored, t.lost, t.duplicated, t.unexpected) == (240, 237, 3, 1, 0)

    # A second run on the same ledger resumes every device's seq.
    run_fleet(sim_pki, sim_broker, "e2e", 16, ledger=ledger, interval_s=0.1, count=2, confirm=True)
    data = load(ledger)
    assert data.entries["e2e-00001"].count(STATE_EXPECTED) == 17
    assert len(data.entries["e2e-00001"].state) == 17


def test_broker_crash_loses_nothing_with_confirmation(
    sim_pki: Pki, sim_broker: LocalMosquitto, restart_gateway: StandInGateway, tmp_path: Path
) -> None:
    """kill -9 of the broker: what it had PUBACKed is gone, the devices still hold it and resend.

    The stand-in gateway confirms exactly the seqs it received (ranges): a cumulative
    "highest committed seq" would let a later reading's ack release earlier ones the crash lost.
    """
    gateway = restart_gateway
    ledger = tmp_path / "ledger.bin"

    async def restart(fleet: Fleet) -> None:
        # In a thread: the fleet runs on this loop. A device sends telemetry only after its SUBACK.
        await asyncio.to_thread(
            wait_until,
            lambda: fleet.stats.connected == 10 and len(gateway.by_device()) == 10,
            message="all 10 devices connected, subscribed and publishing",
        )
        await asyncio.to_thread(sim_broker.kill)  # a crash: the broker's memory is gone
        await asyncio.to_thread(
            wait_until, lambda: fleet.stats.connected == 0, message="every device seeing its connection die"
        )
        await asyncio.to_thread(sim_broker.start)

    stats = run_fleet(
        sim_pki,
        sim_broker,
        "rst",
        10,
        ledger=ledger,
        during=restart,
        interval_s=0.1,
        count=30,
        confirm=True,
        backoff_base_s=0.2,
        backoff_max_s=1.0,
        drain_s=10.0,
    )
    assert stats.connects > 10  # everyone reconnected
    assert stats.held_at_end == 0
    gateway.wait_quiet()
    seen = {(d, orjson.loads(p)["seq"]) for d, ps in gateway.by_device().items() for p in ps}
    data = load(ledger)
    expected = {
        (dev, e.base + i)
        for dev, e in data.entries.items()
        for i, s in enumerate(e.state)
        if s == STATE_EXPECTED
    }
    assert len(expected) == 300
    assert expected <= seen, sorted(expected - seen)[:10]


def test_faults_produce_exactly_what_was_asked(
    sim_pki: Pki, sim_broker: LocalMosquitto, gateway: StandInGateway, tmp_path: Path
) -> None:
    d = [f"flt-{i:05d}" for i in range(1, 11)]
    faults = [
        FaultRequest(FaultKind.NAN, devices=(d[0],), count=2),
        FaultRequest(FaultKind.OUT_OF_RANGE, devices=(d[1],), count=3),
        FaultRequest(FaultKind.MALFORMED, devices=(d[2],), count=1),
        FaultRequest(FaultKind.DUPLICATE, devices=(d[3],), count=2),
        FaultRequest(FaultKind.WRONG_TOPIC, devices=(d[4],), count=1),
        FaultRequest(FaultKind.CLOCK_SKEW, devices=(d[5],), count=1, skew_s=-30),
        FaultRequest(FaultKind.BURST, devices=(d[6],), count=1, at=0.5, size=5),
        FaultRequest(FaultKind.OFFLINE, devices=(d[7],), count=1, at=0.4, duration_s=0.8),
        FaultRequest(FaultKind.EXPIRED_CERT, count=1),
        FaultRequest(FaultKind.REVOKED_CERT, count=1),
    ]
    ledger = tmp_path / "ledger.bin"
    stats = run_fleet(
        sim_pki,
        sim_broker,
        "flt",
        10,
        ledger=ledger,
        faults=faults,
        interval_s=0.1,
        count=20,
        confirm=True,
        memory=50,
        backoff_base_s=0.2,
        backoff_max_s=0.5,
    )
    assert stats.faults == stats.faults_planned
    assert stats.faults == Counter(
        {
            "nan": 2,
            "out_of_range": 3,
            "malformed": 1,
            "duplicate": 2,
            "wrong_topic": 1,
            "clock_skew": 1,
            "burst": 1,
            "offline": 1,
            "expired_cert": 1,
            "revoked_cert": 1,
        }
    )
    assert stats.errors["tls_expired"] >= 1
    assert stats.errors["tls_revoked"] >= 1
    assert stats.ever_connected == 10  # the two bad certificates never got in
    gateway.wait_quiet()
    got = gateway.by_device()
    assert "flt-expired-001" not in got and "flt-revoked-001" not in got
    validator = Validator(REGISTRY, Inventory.load(sim_pki.inventory_path))
    reasons: Counter[str] = Counter()
    for device, payloads in got.items():
        for p in payloads:
            r = validator.validate(device, p)
            if isinstance(r, Rejection):
                reasons[f"{device}:{r.reason}"] += 1
    assert reasons == Counter(
        {
            f"{d[0]}:not_finite": 2,
            f"{d[1]}:out_of_range": 3,
            f"{d[2]}:malformed_json": 1,
        }
    )
    seqs = Counter(orjson.loads(p)["seq"] for p in got[d[3]])
    assert sum(n - 1 for n in seqs.values()) == 2  # two readings sent twice, nothing else
    assert all((seq_of(p) or 0) < WRONG_TOPIC_SEQ_BASE for ps in got.values() for p in ps)  # ACL held
    assert len({orjson.loads(p)["seq"] for p in got[d[6]]}) == 25  # 20 + a burst of 5
    skewed = [orjson.loads(p)["ts"] for p in got[d[5]]]
    assert any(b < a - 25_000 for a, b in itertools.pairwise(skewed))
    assert len({orjson.loads(p)["seq"] for p in got[d[7]]}) == 20  # offline, buffered, resent


def test_scale_smoke_hundreds_of_devices_with_their_own_certificates(
    sim_pki: Pki, sim_broker: LocalMosquitto, gateway: StandInGateway
) -> None:
    n = 300
    stats = run_fleet(
        sim_pki,
        sim_broker,
        "scale",
        n,
        # Each device stays up >= 10 s (two readings 10 s apart), so all are connected at once even
        # when a busy machine stretches the 300 TLS handshakes well past the 2 s ramp.
        interval_s=10.0,
        count=2,
        confirm=False,
        ramp_s=2.0,
        connect_concurrency=8,
    )
    assert stats.ever_connected == n
    assert stats.connected_peak == n
    assert stats.produced == 2 * n
    assert stats.pubacks == 2 * n
    gateway.wait_quiet()
    got = gateway.by_device()
    assert len(got) == n
    assert sum(len(v) for v in got.values()) == 2 * n
    assert stats.summary()["puback_latency_ms"]["p99"] is not None


@pytest.mark.parametrize("client", ["lite", "aiomqtt"])
def test_both_clients_confirm_everything(
    sim_pki: Pki, sim_broker: LocalMosquitto, gateway: StandInGateway, client: str
) -> None:
    stats = run_fleet(
        sim_pki, sim_broker, f"cl{client}", 8, interval_s=0.05, count=20, confirm=True, client=client
    )
    assert stats.produced == 8 * 20
    assert stats.confirmed == stats.produced
    assert stats.pubacks >= stats.produced
    assert stats.held_at_end == 0
    assert stats.errors == {}
    assert stats.summary()["puback_latency_ms"]["p50"] is not None


def test_unknown_client_is_refused() -> None:
    with pytest.raises(ValueError, match="client"):
        FleetSettings(host="h", port=1, ca=Path("ca.pem"), client="paho")


def test_stop_while_devices_cannot_connect_does_not_starve_the_loop(sim_pki: Pki) -> None:
    """Devices holding readings they never sent (no broker) drain in parallel, not one after the other.

    Their unsent readings are "due" since they started: a drain loop that slept until that past
    time spun without yielding, blocking the event loop for ``drain_s`` per device (a 10,000
    device fleet stopped during its ramp-up never exited).
    """
    from citygate.servers.process import free_port

    records = provision.ensure_devices(sim_pki, "nobroker", 4, provision.parse_mix(None, REGISTRY), REGISTRY)
    devices = provision.build_fleet(sim_pki, records, REGISTRY, resolve([], [], seed=3), {})
    fs = FleetSettings(
        host="127.0.0.1",
        port=free_port(),  # nothing listens there
        ca=sim_pki.ca_cert_path(CaName.INFRA),
        interval_s=0.05,
        ramp_s=0.0,
        drain_s=1.0,
        client="lite",
    )
    fleet = Fleet(fs, devices)
    gaps: list[float] = []

    async def main() -> float:
        loop = asyncio.get_running_loop()
        task = loop.create_task(fleet.run())
        await asyncio.to_thread(  # in a thread: the fleet runs on this loop
            wait_until,
            lambda: fleet.stats.connect_failures >= 4 and fleet.stats.produced >= 4 * 5,
            message="every device refused a connection and holding readings it never sent",
        )
        fleet.stop()
        t0 = last = loop.time()
        while not task.done():
            await asyncio.sleep(0.05)
            gaps.append(loop.time() - last)
            last = loop.time()
        await task
        return loop.time() - t0

    stopped_in = asyncio.run(main())
    assert fleet.stats.produced > 0 and fleet.stats.held_at_end == fleet.stats.produced
    assert stopped_in < 5.0
    assert max(gaps) < 0.5


@pytest.mark.parametrize("client", ["lite", "aiomqtt"])
def test_a_rebooted_device_counts_from_0_behind_and_the_audit_tells_its_boots_apart(
    sim_pki: Pki,
    sim_broker: LocalMosquitto,
    gateway: StandInGateway,
    influxdb: LocalInfluxDB,
    tmp_path: Path,
    client: str,
) -> None:
    prefix = f"rb{client[:2]}"
    victim = f"{prefix}-00001"
    ledger = tmp_path / "ledger.bin"
    stats = run_fleet(
        sim_pki,
        sim_broker,
        prefix,
        4,
        ledger=ledger,
        faults=[FaultRequest(FaultKind.REBOOT, devices=(victim,), at=2.0, behind_s=1.0, down_s=0.3)],
        interval_s=0.1,
        count=40,
        confirm=True,
        backoff_base_s=0.1,
        backoff_max_s=0.3,
        client=client,
    )
    assert stats.faults == stats.faults_planned == Counter({"reboot": 1})
    assert stats.produced == 4 * 40
    assert stats.held_at_end == 0
    gateway.wait_quiet()
    docs = [orjson.loads(p) for p in gateway.by_device()[victim]]
    restart = next(i for i, d in enumerate(docs) if i and d["seq"] < docs[i - 1]["seq"])
    before, after = docs[:restart], docs[restart:]
    assert after[0]["seq"] == 0
    assert after[0]["ts"] < max(d["ts"] for d in before)  # its clock came back behind
    assert min(d["ts"] for d in before) < after[0]["ts"]  # among its earlier readings
    assert len({(d["seq"], d["ts"]) for d in docs}) == len({d["ts"] for d in docs})  # no ts twice
    store_readings(influxdb, f"sim_{prefix}", sim_pki, gateway.by_device())
    report = audit(ledger, InfluxV1Source(influxdb.url, f"sim_{prefix}"))
    t = report.total
    assert report.ledger_conflicts == 0
    assert t.expected + t.dropped == 4 * 40  # dropped: what the victim held unconfirmed at the reboot
    assert (t.lost, t.duplicated, t.unexpected) == (0, 0, 0), t
    assert len(load(ledger).entries[victim].segments) == 2
