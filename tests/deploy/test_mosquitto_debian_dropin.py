"""deploy/mosquitto/citygate-gateway.conf as README installs it: a conf.d drop-in on Debian.

Debian's /etc/mosquitto/mosquitto.conf sets pid_file, persistence, persistence_location and
log_dest, then includes /etc/mosquitto/conf.d. The template used to set persistence_location
and log_dest too, and Mosquitto refused to start ("Duplicate persistence_location value").
Here Debian's own file, with its absolute paths moved into a temporary directory, includes
the committed template (its paths and ports rewritten the same way), and the real broker
starts from it: a device with a valid certificate publishes, the agent's certificate reads.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from citygate.certs.pki import CaName, CertKind
from citygate.contract.topics import TELEMETRY_FILTER, telemetry_topic
from citygate.servers.mosquitto import mosquitto_binary
from citygate.servers.process import ManagedProcess, free_port, port_open
from tests.conftest import GATEWAY_ID, PkiBundle
from tests.mqtt_helpers import connect
from tests.waiting import wait_until

pytestmark = pytest.mark.servers

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"

# /etc/mosquitto/mosquitto.conf exactly as Debian's mosquitto package (2.0.11) ships it.
DEBIAN_MOSQUITTO_CONF = """\
# Place your local configuration in /etc/mosquitto/conf.d/
#
# A full description of the configuration file is at
# /usr/share/doc/mosquitto/examples/mosquitto.conf.example

pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
"""


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"{old!r} is not in the file any more: update this test"
    return text.replace(old, new)


def test_the_template_runs_as_a_conf_d_drop_in_beside_debians_mosquitto_conf(
    test_pki: PkiBundle, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    etc = root / "etc" / "mosquitto"
    for d in (etc / "conf.d", root / "run" / "mosquitto", root / "var" / "lib" / "mosquitto"):
        d.mkdir(parents=True)
    (root / "var" / "log" / "mosquitto").mkdir(parents=True)

    main = DEBIAN_MOSQUITTO_CONF
    for path in ("/run/mosquitto/", "/var/lib/mosquitto/", "/var/log/mosquitto/", "/etc/mosquitto/"):
        main = _replace(main, f" {path}", f" {root}{path}")
    if os.geteuid() == 0:
        # Started as root, Mosquitto switches to user mosquitto, which cannot read this test's
        # keys (on a gateway README has broker.key chowned to mosquitto).
        main += "user root\n"
    (etc / "mosquitto.conf").write_text(main)

    pki = test_pki.pki
    server = pki.files(CertKind.SERVER, "localhost")
    device_port, gateway_port = free_port(), free_port()
    dropin = (DEPLOY / "citygate-gateway.conf").read_text()
    for old, new in (
        ("/etc/citygate/tls/device-ca.pem", pki.ca_cert_path(CaName.DEVICE)),
        ("/etc/citygate/tls/device-ca.crl.pem", pki.crl_path(CaName.DEVICE)),
        ("/etc/citygate/tls/infra-ca.pem", pki.ca_cert_path(CaName.INFRA)),
        ("/etc/citygate/tls/infra-ca.crl.pem", pki.crl_path(CaName.INFRA)),
        ("/etc/citygate/tls/broker.pem", server.cert),
        ("/etc/citygate/tls/broker.key", server.key),
        ("/etc/mosquitto/", f"{etc}/"),
        ("listener 8883 0.0.0.0", f"listener {device_port} 127.0.0.1"),  # loopback only in tests
        ("listener 8884 127.0.0.1", f"listener {gateway_port} 127.0.0.1"),
    ):
        dropin = _replace(dropin, old, str(new))
    (etc / "conf.d" / "citygate.conf").write_text(dropin)
    for acl in ("citygate-devices.acl", "citygate-gateways.acl"):
        (etc / acl).write_text((DEPLOY / acl).read_text())

    broker = ManagedProcess(
        "mosquitto", [mosquitto_binary(), "-c", str(etc / "mosquitto.conf")], log_path=tmp_path / "stdout"
    )
    broker.start(lambda: port_open("127.0.0.1", device_port) and port_open("127.0.0.1", gateway_port))
    gw = dev = None
    try:
        gateway = test_pki.gateway()
        gw = connect(
            gateway_port,
            ca=test_pki.infra_ca,
            cert=gateway.cert,
            key=gateway.key,
            client_id=f"citygate-gateway-{GATEWAY_ID}-{uuid.uuid4().hex[:6]}",
        )
        assert gw.connected, gw.reason
        gw.subscribe(TELEMETRY_FILTER)
        device = test_pki.device("dev-a")
        dev = connect(device_port, ca=test_pki.infra_ca, cert=device.cert, key=device.key, client_id="dev-a")
        assert dev.connected, dev.reason
        dev.publish(telemetry_topic("dev-a"), b'{"seq":1}')
        wait_until(
            lambda: (telemetry_topic("dev-a"), b'{"seq":1}') in gw.received(),
            message=lambda: f"dev-a's message at the gateway; received {gw.received()}",
        )
        # Debian's settings are the ones in force: its pid file and its log file.
        assert (root / "run" / "mosquitto" / "mosquitto.pid").read_text().strip() == str(broker.pid)
        log = (root / "var" / "log" / "mosquitto" / "mosquitto.log").read_text(errors="replace")
        assert "New client connected" in log and "as dev-a" in log, log
    finally:
        for conn in (dev, gw):
            if conn is not None:
                conn.close()
        broker.stop()
    assert (root / "var" / "lib" / "mosquitto" / "mosquitto.db").exists()  # saved on the way down
