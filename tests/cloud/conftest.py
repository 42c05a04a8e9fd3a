"""Cloud fixtures: a real uvicorn with real mutual TLS on a free port, in a background thread.

Each running service gets its own InfluxDB database (or VictoriaMetrics), its
own inventory file and its own tokens; gateway identities are issued by the
session PKI of tests/conftest.py.
"""

from __future__ import annotations

import gzip
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from citygate.certs.pki import CaName, CertFiles, CertKind
from citygate.cloud.server import cloud_server, uvicorn_config
from citygate.cloud.settings import CloudSettings
from citygate.contract.inventory import DeviceRecord, GatewayRecord, Inventory
from citygate.servers.process import free_port
from tests.conftest import GATEWAY_ID, PkiBundle
from tests.waiting import wait_until

OTHER_GATEWAY = "gw-cloud-b"
REVOKED_GATEWAY = "gw-cloud-revoked"
READER_TOKEN = "reader-" + "r" * 32
OPERATOR_TOKEN = "operator-" + "o" * 32


@dataclass
class CloudPki:
    bundle: PkiBundle

    @property
    def infra_ca(self) -> Path:
        return self.bundle.pki.ca_cert_path(CaName.INFRA)

    @property
    def server(self) -> CertFiles:
        return self.bundle.pki.files(CertKind.SERVER, "localhost")

    def gateway(self, name: str = GATEWAY_ID) -> CertFiles:
        return self.bundle.pki.files(CertKind.GATEWAY, name)


@pytest.fixture(scope="session")
def cloud_pki(test_pki: PkiBundle) -> CloudPki:
    pki = test_pki.pki
    have = {(c.kind, c.name) for c in pki.certificates()}
    for name in (OTHER_GATEWAY, REVOKED_GATEWAY):
        if (CertKind.GATEWAY, name) not in have:
            pki.issue_gateway(name)
    pki.revoke(REVOKED_GATEWAY, kind=CertKind.GATEWAY, reason="keyCompromise")
    return CloudPki(test_pki)


def write_inventory(path: Path) -> Path:
    """Both test gateways registered; every device assigned to GATEWAY_ID."""
    mine = (GATEWAY_ID,)
    Inventory().with_gateways(
        GatewayRecord(gateway_id=GATEWAY_ID), GatewayRecord(gateway_id=OTHER_GATEWAY)
    ).with_devices(
        DeviceRecord(
            device_id="dev-a",
            profile="air_quality",
            profile_version=1,
            site="test-site",
            district="centre",
            gateways=mine,
        ),
        DeviceRecord(
            device_id="dev-b",
            profile="air_quality",
            profile_version=1,
            site="test-site",
            district="centre",
            gateways=mine,
        ),
        DeviceRecord(
            device_id="dev-n", profile="noise", profile_version=1, site="park, north", gateways=mine
        ),
        DeviceRecord(
            device_id="dev-silent", profile="air_quality", profile_version=1, site="test-site", gateways=mine
        ),
    ).save(path)
    return path


def make_settings(cloud_pki: CloudPki, tmp: Path, **overrides: Any) -> CloudSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": free_port(),
        "tls_cert": cloud_pki.server.cert,
        "tls_key": cloud_pki.server.key,
        "client_ca": cloud_pki.infra_ca,
        "client_crl": cloud_pki.bundle.pki.crl_path(CaName.INFRA),
        "inventory": write_inventory(tmp / "inventory.json"),
        "reader_tokens": {"dashboard": SecretStr(READER_TOKEN)},
        "operator_tokens": {"ops": SecretStr(OPERATOR_TOKEN)},
        "log_level": "warning",
        "retry_after_s": 7,
        "influx_timeout_s": 3.0,
    }
    values.update(overrides)
    return CloudSettings(**values)


class RunningCloud:
    """uvicorn.Server in a thread; stop() asks it to exit and waits."""

    def __init__(self, settings: CloudSettings, cloud_pki: CloudPki) -> None:
        self.settings = settings
        self.cloud_pki = cloud_pki
        self.config = uvicorn_config(settings)
        self.server = cloud_server(self.config, settings)  # with the TLS handshake timeout, as deployed
        self.thread = threading.Thread(target=self.server.run, name="cloud", daemon=True)
        self._clients: list[httpx.Client] = []

    @property
    def url(self) -> str:
        return f"https://localhost:{self.settings.port}"

    @property
    def app(self) -> Any:
        return self.config.loaded_app

    def start(self) -> RunningCloud:
        self.thread.start()

        def started() -> bool:
            if self.server.started:
                return True
            if not self.thread.is_alive():
                raise RuntimeError("cloud server did not start: its thread ended")
            return False

        wait_until(started, timeout=15, interval=0.02, message="the cloud server to start")
        return self

    def stop(self) -> None:
        for c in self._clients:
            c.close()
        self.server.should_exit = True
        self.thread.join(20)

    def client(
        self, cert: CertFiles | None = None, token: str | None = None, ca: Path | None = None
    ) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(ca or self.cloud_pki.infra_ca))
        if cert is not None:
            ctx.load_cert_chain(str(cert.cert), str(cert.key))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        c = httpx.Client(base_url=self.url, verify=ctx, headers=headers, timeout=30, trust_env=False)
        self._clients.append(c)
        return c

    def gateway(self, name: str = GATEWAY_ID) -> httpx.Client:
        return self.client(self.cloud_pki.gateway(name))

    def reader(self) -> httpx.Client:
        return self.client(self.cloud_pki.gateway(), token=READER_TOKEN)

    def operator(self) -> httpx.Client:
        return self.client(self.cloud_pki.gateway(), token=OPERATOR_TOKEN)


@pytest.fixture
def cloud_factory(cloud_pki: CloudPki, tmp_path: Path) -> Iterator[Callable[..., RunningCloud]]:
    started: list[RunningCloud] = []

    def make(**overrides: Any) -> RunningCloud:
        d = tmp_path / f"cloud-{len(started)}"
        d.mkdir()
        rc = RunningCloud(make_settings(cloud_pki, d, **overrides), cloud_pki).start()
        started.append(rc)
        return rc

    yield make
    for rc in started:
        rc.stop()


@pytest.fixture(scope="module")
def cloud_v1(
    cloud_pki: CloudPki, influxdb: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningCloud]:
    """The service in v1 mode against the session InfluxDB 1.x, with its own database."""
    db = f"cloud_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(db)
    settings = make_settings(
        cloud_pki, tmp_path_factory.mktemp("cloud-v1"), influx_url=influxdb.url, influx_db=db
    )
    rc = RunningCloud(settings, cloud_pki).start()
    yield rc
    rc.stop()


# -- payload helpers ------------------------------------------------------------

_COUNTER = iter(range(1, 10**9))
_TS_BASE_MS = time.time_ns() // 1_000_000 - 60_000


def aq_values(base: float = 10.0) -> dict[str, float]:
    return {
        "pm2_5": base + 0.5,
        "pm10": base + 1.0,
        "no2": 20.25,
        "o3": 30.0,
        "co": 0.4,
        "temperature": 21.5,
        "humidity": 55.0,
    }


def unique_ts_ns() -> int:
    """A fresh, recent device time in ns (whole ms), distinct across calls."""
    # A fixed base: a base that moves with the clock can meet an earlier value
    # (t1 - 7 n1 == t2 - 7 n2) and two "distinct" readings then overwrite each other.
    return (_TS_BASE_MS - next(_COUNTER) * 7) * 1_000_000


def reading(
    device_id: str = "dev-a",
    ts_ns: int | None = None,
    seq: int | None = None,
    values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ts_ns = unique_ts_ns() if ts_ns is None else ts_ns
    ms, rest = divmod(ts_ns, 1_000_000)
    from citygate.contract.wire import ts_to_wire

    r: dict[str, Any] = {
        "device_id": device_id,
        "ts": ms if rest == 0 else ts_to_wire(ts_ns),
        "readings": values if values is not None else aq_values(),
    }
    if seq is not None:
        r["seq"] = seq
    return r


def batch_body(readings: list[dict[str, Any]], batch_id: str | None = None) -> bytes:
    doc = {"batch_id": batch_id or f"b-{uuid.uuid4().hex[:12]}", "readings": readings}
    return gzip.compress(orjson.dumps(doc))


def post_batch(
    client: httpx.Client, readings: list[dict[str, Any]], batch_id: str | None = None
) -> httpx.Response:
    return client.post(
        "/v1/ingest",
        content=batch_body(readings, batch_id),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )


def new_token() -> str:
    return secrets.token_urlsafe(32)
