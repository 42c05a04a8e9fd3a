"""deploy/systemd/citygate_crl_fetch.py against a real HTTP server and CRLs made by `citygate pki`.

The gateway takes a fresh CRL signed by its CAs, and refuses one from another CA, a stale
one and an older one (keeping what it has): a stale CRL in /etc/citygate/tls would lock
every device out of Mosquitto, an older one would un-revoke devices.
"""

from __future__ import annotations

import datetime as dt
import functools
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from citygate.certs.pki import CaName, CertKind, Pki
from citygate.servers.mosquitto import LocalMosquitto
from citygate.servers.process import free_port
from tests.conftest import GATEWAY_ID, device_record, make_pki
from tests.mqtt_helpers import connect

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "citygate_crl_fetch.py"
NAMES = {CaName.DEVICE: "device-ca", CaName.INFRA: "infra-ca"}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def published(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on loopback, and its URL."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/crl"
    server.shutdown()
    server.server_close()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")  # its own CA: these tests re-sign its CRLs


def _gateway_tls(pki: Pki, tls: Path) -> None:
    """What a gateway holds: the CA certificates and the CRLs of the day it was set up."""
    tls.mkdir()
    for ca, name in NAMES.items():
        shutil.copy(pki.ca_cert_path(ca), tls / f"{name}.pem")
        shutil.copy(pki.crl_path(ca), tls / f"{name}.crl.pem")


def _publish(pki: Pki, www: Path) -> None:
    (www / "crl").mkdir(exist_ok=True)
    for ca, name in NAMES.items():
        shutil.copy(pki.crl_path(ca), www / "crl" / f"{name}.crl.pem")


def _fetch(url: str, tls: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), url, "--tls-dir", str(tls)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_fresh_crl_is_installed_and_an_unchanged_one_left_alone(pki, published, tmp_path):
    www, url = published
    tls = tmp_path / "tls"
    _gateway_tls(pki, tls)
    pki.revoke("localhost", reason="keyCompromise")  # a new CRL with an entry
    _publish(pki, www)
    r = _fetch(url, tls)
    assert r.returncode == 0, r.stderr
    for ca, name in NAMES.items():
        assert (tls / f"{name}.crl.pem").read_bytes() == pki.crl_path(ca).read_bytes()
        assert (tls / f"{name}.crl.pem").stat().st_mode & 0o777 == 0o644
    assert "installed CRL number" in r.stdout
    assert not [p for p in tls.iterdir() if p.name.startswith(".")]  # no temporary file left
    again = _fetch(url, tls)
    assert again.returncode == 0 and again.stdout.count("unchanged") == 2, again.stdout + again.stderr


def test_a_crl_from_another_ca_is_refused(pki, published, tmp_path):
    www, url = published
    tls = tmp_path / "tls"
    _gateway_tls(pki, tls)
    before = {p.name: p.read_bytes() for p in tls.iterdir()}
    _publish(make_pki(tmp_path / "other-pki"), www)
    r = _fetch(url, tls)
    assert r.returncode == 1 and r.stderr.count("not signed by") == 2, r.stderr
    assert {p.name: p.read_bytes() for p in tls.iterdir()} == before


def test_a_stale_crl_is_refused(pki, published, tmp_path):
    www, url = published
    tls = tmp_path / "tls"
    _gateway_tls(pki, tls)
    before = (tls / "device-ca.crl.pem").read_bytes()
    pki.write_crls(now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30))  # nextUpdate 23 days ago
    _publish(pki, www)
    r = _fetch(url, tls)
    assert r.returncode == 1 and r.stderr.count("stale") == 2, r.stderr
    assert (tls / "device-ca.crl.pem").read_bytes() == before


def test_an_older_crl_is_refused(pki, published, tmp_path):
    www, url = published
    tls = tmp_path / "tls"
    tls.mkdir()
    _publish(pki, www)  # yesterday's CRLs, still valid
    pki.write_crls()
    installed = {name: pki.crl_path(ca).read_bytes() for ca, name in NAMES.items()}  # today's
    for ca, name in NAMES.items():
        shutil.copy(pki.ca_cert_path(ca), tls / f"{name}.pem")
        (tls / f"{name}.crl.pem").write_bytes(installed[name])
    r = _fetch(url, tls)
    assert r.returncode == 1 and r.stderr.count("older than the installed one") == 2, r.stderr
    for name, data in installed.items():
        assert (tls / f"{name}.crl.pem").read_bytes() == data


def test_no_server_keeps_the_crls_and_fails(pki, tmp_path):
    tls = tmp_path / "tls"
    _gateway_tls(pki, tls)
    before = {p.name: p.read_bytes() for p in tls.iterdir()}
    r = _fetch(f"http://127.0.0.1:{free_port()}/crl", tls)
    assert r.returncode == 1 and r.stderr.count("not installed") == 2, r.stderr
    assert {p.name: p.read_bytes() for p in tls.iterdir()} == before


@pytest.mark.servers
def test_why_a_stale_crl_locks_every_client_out_of_mosquitto(pki, tmp_path):
    pki.issue_gateway(GATEWAY_ID)
    pki.issue_devices([device_record("dev-stale")])
    device = pki.files(CertKind.DEVICE, "dev-stale")
    ca = pki.ca_cert_path(CaName.INFRA)
    broker = LocalMosquitto(tmp_path / "mosquitto", pki)
    broker.start()
    try:
        ok = connect(broker.device_port, ca=ca, cert=device.cert, key=device.key, client_id="dev-stale")
        assert ok.connected, ok.reason
        ok.close()
        pki.write_crls(now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30))  # nextUpdate has passed
        broker.restart()  # what citygate-crl-reload.path does when a CRL changes
        refused = connect(broker.device_port, ca=ca, cert=device.cert, key=device.key, client_id="dev-stale")
        assert not refused.connected, "a valid device connected with a stale CRL in force"
    finally:
        broker.stop()
