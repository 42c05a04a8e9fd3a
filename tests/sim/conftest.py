"""Fixtures for the simulator's server tests: a broker with its own PKI, a stand-in gateway,
and a writer that stores readings in InfluxDB in the cloud's schema."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citygate.certs.pki import CaName, CertKind, Pki
from citygate.contract.acks import encode_acks
from citygate.contract.inventory import Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.readings import Reading
from citygate.contract.validation import Validator
from citygate.servers.influxdb import LocalInfluxDB
from citygate.servers.mosquitto import LocalMosquitto
from tests.conftest import make_pki
from tests.waiting import wait_until

GATEWAY = "gw-sim"


@pytest.fixture(scope="module")
def sim_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pki = make_pki(tmp_path_factory.mktemp("sim-pki"))
    pki.issue_gateway(GATEWAY)
    return pki


@pytest.fixture(scope="module")
def sim_broker(sim_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMosquitto]:
    b = LocalMosquitto(tmp_path_factory.mktemp("sim-mosquitto"), sim_pki)
    b.start()
    yield b
    b.stop()


@dataclass
class StandInGateway:
    """Subscribes to all telemetry on the gateway listener, records it, and (optionally)
    confirms exactly the seqs it received on devices/{id}/ack (ranges, citygate.contract.acks),
    like the agent does after commit."""

    port: int
    pki: Pki
    ack: bool = True
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._pending: dict[str, list[int]] = {}
        self._next: dict[str, int] = {}
        self._stop = threading.Event()
        files = self.pki.files(CertKind.GATEWAY, GATEWAY)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{GATEWAY}-{id(self)}", clean_session=True)
        c.tls_set(
            ca_certs=str(self.pki.ca_cert_path(CaName.INFRA)),
            certfile=str(files.cert),
            keyfile=str(files.key),
            cert_reqs=ssl.CERT_REQUIRED,
        )
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(0.1, 1)
        self._subscribed = threading.Event()
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("devices/+/telemetry", qos=1)
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = self._on_message
        self.client = c
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        assert self._subscribed.wait(10), "stand-in gateway did not subscribe"
        self._acker = threading.Thread(target=self._ack_loop, daemon=True)
        self._acker.start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        dev = msg.topic.split("/")[1]
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))
            try:
                seq = orjson.loads(msg.payload)["seq"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return
            if not isinstance(seq, int):
                return
            self._pending.setdefault(dev, []).append(seq)

    def _ack_loop(self) -> None:
        while not self._stop.wait(0.1):
            if not self.ack:
                continue
            with self.lock:
                pending, self._pending = self._pending, {}
            for dev, seqs in pending.items():
                for payload in encode_acks(seqs):
                    self.client.publish(f"devices/{dev}/ack", payload, qos=1)

    def by_device(self) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = {}
        with self.lock:
            for topic, payload in self.messages:
                out.setdefault(topic.split("/")[1], []).append(payload)
        return out

    def wait_quiet(self, seconds: float = 0.5, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            with self.lock:
                n = len(self.messages)
            if n == last:
                return
            last = n
            time.sleep(seconds)

    def close(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def gateway(sim_broker: LocalMosquitto, sim_pki: Pki) -> Iterator[StandInGateway]:
    g = StandInGateway(sim_broker.gateway_port, sim_pki)
    yield g
    g.close()


@pytest.fixture
def restart_gateway(sim_broker: LocalMosquitto, sim_pki: Pki) -> Iterator[StandInGateway]:
    g = StandInGateway(sim_broker.gateway_port, sim_pki)
    yield g
    g.close()


def store_readings(
    influx: LocalInfluxDB, db: str, pki: Pki, messages: dict[str, list[bytes]]
) -> list[Reading]:
    """Validate like the gateway and write like the cloud (measurement, device tags, seq field, ts in ns)."""
    inventory = Inventory.load(pki.inventory_path)
    validator = Validator(ProfileRegistry(), inventory)
    readings: list[Reading] = []
    for device, payloads in messages.items():
        for p in payloads:
            r = validator.validate(device, p)
            if isinstance(r, Reading):
                readings.append(r)
    influx.create_database(db)
    lines = [line_of(r, inventory) for r in readings]
    for i in range(0, len(lines), 5000):
        influx.write(db, "\n".join(lines[i : i + 5000]).encode())
    return readings


def line_of(r: Reading, inventory: Inventory, ts_ns: int | None = None) -> str:
    rec = inventory[r.device_id]
    tags = (
        f"device_id={r.device_id},district={rec.district},profile_version={r.profile_version},site={rec.site}"
    )
    fields = [f"seq={r.seq}i"]
    for k, v in sorted(r.values.items()):
        if isinstance(v, bool):
            fields.append(f"{k}={'true' if v else 'false'}")
        elif isinstance(v, int):
            fields.append(f"{k}={v}i")
        elif isinstance(v, float):
            fields.append(f"{k}={v!r}")
        else:
            fields.append(f'{k}="{v}"')
    return f"{r.measurement},{tags} {','.join(fields)} {ts_ns if ts_ns is not None else r.ts_ns}"


RELOADED = "Reloading config."  # Mosquitto's log line for a SIGHUP


def reload_broker(broker: LocalMosquitto, timeout: float = 10.0) -> None:
    """SIGHUP, then wait until the broker has logged its reload (config, certificates, CRLs).

    Mosquitto reloads in its single-threaded main loop right after logging that line, before it
    reads from a socket again: a connection made once the line is in the log meets the new CRL.
    """
    before = broker.log().count(RELOADED)
    broker.reload()
    wait_until(
        lambda: broker.log().count(RELOADED) > before,
        timeout=timeout,
        message=f"{RELOADED!r} in the broker's log",
    )


def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.bin"
