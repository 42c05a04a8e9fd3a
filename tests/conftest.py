"""Shared fixtures: a PKI made by citygate, and real servers on free ports.

Servers are session-scoped (started once, stopped at the end); tests that kill
or restart a server make their own with the factories.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from citygate.certs.pki import CertFiles, CertKind, Pki
from citygate.certs.settings import PkiSettings
from citygate.contract.inventory import DeviceRecord
from citygate.servers.influxdb import LocalInfluxDB
from citygate.servers.mosquitto import LocalMosquitto
from citygate.servers.postgres import LocalPostgres
from citygate.servers.victoriametrics import LocalVictoriaMetrics

GATEWAY_ID = "gw-test"
DEVICES = ("dev-a", "dev-b", "dev-revoked")


def make_pki(directory: Path) -> Pki:
    pki = Pki.init(PkiSettings(dir=directory))
    pki.issue_server("localhost", ips=["127.0.0.1"])
    return pki


def device_record(device_id: str, profile: str = "air_quality") -> DeviceRecord:
    return DeviceRecord(
        device_id=device_id,
        profile=profile,
        profile_version=1,
        site="test-site",
        district="centre",
        gateways=(GATEWAY_ID,),
    )


@dataclass
class PkiBundle:
    pki: Pki
    other_pki: Pki  # a second, unrelated CA: its certificates must be refused everywhere

    def device(self, device_id: str) -> CertFiles:
        return self.pki.files(CertKind.DEVICE, device_id)

    def gateway(self, gateway_id: str = GATEWAY_ID) -> CertFiles:
        return self.pki.files(CertKind.GATEWAY, gateway_id)

    @property
    def infra_ca(self) -> Path:
        from citygate.certs.pki import CaName

        return self.pki.ca_cert_path(CaName.INFRA)


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> PkiBundle:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    pki.issue_gateway(GATEWAY_ID)
    pki.issue_devices([device_record(d) for d in DEVICES])
    # Expired: valid for one day, ten days ago.
    pki.issue_device(
        device_record("dev-expired"), not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10), days=1
    )
    other = make_pki(tmp_path_factory.mktemp("other-pki"))
    other.issue_gateway(GATEWAY_ID)
    other.issue_devices([device_record("dev-a"), device_record("dev-foreign")])
    return PkiBundle(pki=pki, other_pki=other)


@pytest.fixture(scope="session")
def broker(test_pki: PkiBundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMosquitto]:
    b = LocalMosquitto(tmp_path_factory.mktemp("mosquitto"), test_pki.pki)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[[Pki], LocalMosquitto]]:
    started: list[LocalMosquitto] = []

    def make(pki: Pki) -> LocalMosquitto:
        b = LocalMosquitto(tmp_path / f"mosquitto-{len(started)}", pki)
        b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxDB]:
    db = LocalInfluxDB(tmp_path_factory.mktemp("influxdb"))
    db.start()
    yield db
    db.stop()


@pytest.fixture(scope="session")
def victoriametrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalVictoriaMetrics]:
    vm = LocalVictoriaMetrics(tmp_path_factory.mktemp("victoriametrics"))
    vm.start()
    yield vm
    vm.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    pg = LocalPostgres(tmp_path_factory.mktemp("postgres"))
    pg.start()
    yield pg
    pg.remove()
