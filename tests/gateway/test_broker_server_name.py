"""``broker_server_name``: the name checked in the broker's certificate, not the host dialled.

A gateway that reaches its Mosquitto by an address the broker's certificate does not
carry (the certificate names the gateway's host name, the agent dials 127.0.0.1) sets
``broker_server_name``. Before, the setting was read and never used: the agent checked the
certificate against the address and never connected.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from citygate.certs.pki import CertKind
from citygate.gateway.intake import BrokerTls, MqttIntake, broker_tls_context
from citygate.servers.mosquitto import LocalMosquitto
from citygate.servers.process import free_port
from tests.conftest import GATEWAY_ID, PkiBundle
from tests.gateway.conftest import AgentProcess, write_agent_config

pytestmark = pytest.mark.servers

BROKER_NAME = "gw-broker.citygate.test"  # no IP address in this certificate


@pytest.fixture
def named_broker(gw_pki: PkiBundle, tmp_path: Path) -> Iterator[LocalMosquitto]:
    if not gw_pki.pki.files(CertKind.SERVER, BROKER_NAME).cert.exists():
        gw_pki.pki.issue_server(BROKER_NAME)
    b = LocalMosquitto(tmp_path / "mosquitto", gw_pki.pki, server_name=BROKER_NAME)
    b.start()
    yield b
    b.stop()


def _tls(pki: PkiBundle, server_name: str | None) -> BrokerTls:
    files = pki.gateway()
    return BrokerTls(pki.infra_ca, files.cert, files.key, server_name=server_name)


def _handshake(broker: LocalMosquitto, tls: BrokerTls) -> None:
    """A TLS handshake with the broker's gateway listener, as paho makes it (server_hostname=host)."""
    ctx = broker_tls_context(tls)
    with (
        socket.create_connection(("127.0.0.1", broker.gateway_port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        assert s.version() is not None


def test_the_intake_connects_by_address_checking_the_configured_name(gw_pki, named_broker):
    it = MqttIntake(
        host="127.0.0.1",
        port=named_broker.gateway_port,
        client_id=f"citygate-gateway-{GATEWAY_ID}",
        tls=_tls(gw_pki, BROKER_NAME),
    )
    it.start()
    try:
        assert it.wait_connected(15), "the intake did not connect: server_name was not used"
    finally:
        it.stop()


def test_the_name_is_still_checked(gw_pki, named_broker):
    _handshake(named_broker, _tls(gw_pki, BROKER_NAME))
    # Without the setting the address is checked, and this certificate does not carry it.
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        _handshake(named_broker, _tls(gw_pki, None))
    # Another name is refused: the setting names what to check, it does not switch the check off.
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(named_broker, _tls(gw_pki, "other.citygate.test"))


def test_the_agent_uses_broker_server_name(gw_pki, named_broker, tmp_path):
    http_port = free_port()
    cfg = tmp_path / "gateway.toml"
    write_agent_config(
        cfg,
        pki=gw_pki,
        broker=named_broker,
        cloud_url="https://localhost:9",  # no cloud needed: only the broker connection is looked at
        state_dir=tmp_path / "state",
        http_port=http_port,
        broker_server_name=BROKER_NAME,
    )
    agent = AgentProcess(config_path=cfg, http_port=http_port, log_path=tmp_path / "agent.log")
    try:
        agent.start(wait_connected=False)
        # Connected, or the intake logged why not (its first failed attempt): whichever comes first.
        h = agent.wait_for(
            lambda h: h["broker_connected"] or "cannot connect to broker" in agent.log_tail(200),
            what="the agent connected to the broker, or failed to",
        )
        assert h["broker_connected"], agent.log_tail()
    finally:
        agent.stop()
