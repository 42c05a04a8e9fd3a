"""The broker harness, proven against a real Mosquitto with mTLS.

A device may publish only on its own topic; no certificate, another CA, an
expired and a revoked certificate are all refused; trust is separated between
the device listener and the gateway listener.
"""

from __future__ import annotations

import time
import uuid

import pytest

from citygate.certs.pki import CaName, CertKind
from citygate.contract.topics import TELEMETRY_FILTER, telemetry_topic
from tests.conftest import GATEWAY_ID, PkiBundle
from tests.mqtt_helpers import Connection, connect
from tests.waiting import wait_until

pytestmark = pytest.mark.servers


def _device(test_pki: PkiBundle, broker, device_id: str, *, pki=None, client_id=None) -> Connection:
    pki = pki or test_pki.pki
    files = pki.files(CertKind.DEVICE, device_id)
    return connect(
        broker.device_port,
        ca=test_pki.infra_ca,
        cert=files.cert,
        key=files.key,
        client_id=client_id or f"{device_id}-{uuid.uuid4().hex[:6]}",
    )


def _gateway(test_pki: PkiBundle, broker) -> Connection:
    files = test_pki.gateway()
    conn = connect(
        broker.gateway_port,
        ca=test_pki.infra_ca,
        cert=files.cert,
        key=files.key,
        client_id=f"{GATEWAY_ID}-{uuid.uuid4().hex[:6]}",
    )
    assert conn.connected, conn.reason
    conn.subscribe(TELEMETRY_FILTER)
    return conn


def test_device_publishes_on_its_own_topic(test_pki, broker):
    gw = _gateway(test_pki, broker)
    dev = _device(test_pki, broker, "dev-a")
    try:
        assert dev.connected, dev.reason
        dev.publish(telemetry_topic("dev-a"), b'{"seq":1}')
        wait_until(
            lambda: (telemetry_topic("dev-a"), b'{"seq":1}') in gw.received(),
            message=lambda: f"dev-a's message at the gateway; received {gw.received()}",
        )
    finally:
        dev.close()
        gw.close()


def test_device_cannot_publish_on_another_devices_topic(test_pki, broker):
    gw = _gateway(test_pki, broker)
    dev = _device(test_pki, broker, "dev-a")
    try:
        assert dev.connected, dev.reason
        forged = b'{"forged":true}'
        dev.publish(telemetry_topic("dev-b"), forged)
        # Messages of one client arrive in order: once the later, allowed one is
        # here, the forged one would have been delivered already had it been let through.
        dev.publish(telemetry_topic("dev-a"), b"sentinel")
        wait_until(
            lambda: (telemetry_topic("dev-a"), b"sentinel") in gw.received(),
            message=lambda: f"the sentinel at the gateway; received {gw.received()}",
        )
        assert not any(topic == telemetry_topic("dev-b") for topic, _ in gw.received())
    finally:
        dev.close()
        gw.close()


def test_no_client_certificate_is_refused(test_pki, broker):
    conn = connect(broker.device_port, ca=test_pki.infra_ca, cert=None, key=None, client_id="nocert")
    assert not conn.connected, "a client without a certificate was accepted"


def test_certificate_from_another_ca_is_refused(test_pki, broker):
    conn = _device(test_pki, broker, "dev-foreign", pki=test_pki.other_pki)
    assert not conn.connected, "a certificate from an unrelated CA was accepted"
    # Even with the name of a real device.
    conn = _device(test_pki, broker, "dev-a", pki=test_pki.other_pki)
    assert not conn.connected


def test_expired_certificate_is_refused(test_pki, broker):
    conn = _device(test_pki, broker, "dev-expired")
    assert not conn.connected, "an expired certificate was accepted"


def test_revoked_certificate_is_refused_after_crl_reload(test_pki, broker):
    # Before revocation the same certificate works: the refusal below is the CRL's doing.
    conn = _device(test_pki, broker, "dev-revoked")
    assert conn.connected, conn.reason
    conn.close()
    test_pki.pki.revoke("dev-revoked", reason="keyCompromise")
    broker.reload()

    def refused() -> bool:
        conn = _device(test_pki, broker, "dev-revoked")
        accepted = conn.connected  # before close(), which marks it disconnected
        conn.close()
        return not accepted

    wait_until(refused, interval=0.2, message="the revoked certificate refused after the reload")
    # Others are unaffected.
    ok = _device(test_pki, broker, "dev-a")
    assert ok.connected, ok.reason
    ok.close()


def test_device_certificate_is_refused_on_the_gateway_listener(test_pki, broker):
    files = test_pki.device("dev-a")
    conn = connect(
        broker.gateway_port,
        ca=test_pki.infra_ca,
        cert=files.cert,
        key=files.key,
        client_id="dev-a-as-gateway",
    )
    assert not conn.connected, "a device certificate was accepted where only gateways may connect"


def test_gateway_certificate_is_refused_on_the_device_listener(test_pki, broker):
    files = test_pki.gateway()
    conn = connect(
        broker.device_port, ca=test_pki.infra_ca, cert=files.cert, key=files.key, client_id="gw-as-device"
    )
    assert not conn.connected, "a gateway certificate was accepted on the device listener"


def test_server_certificate_cannot_act_as_a_client(test_pki, broker):
    files = test_pki.pki.files(CertKind.SERVER, "localhost")
    conn = connect(
        broker.gateway_port,
        ca=test_pki.infra_ca,
        cert=files.cert,
        key=files.key,
        client_id="server-as-gateway",
    )
    assert not conn.connected, "a serverAuth-only certificate was accepted as a client"


def test_device_trusts_the_broker_only_through_the_infrastructure_ca(test_pki, broker):
    # A device that trusts only the device CA cannot verify the broker: the
    # broker's server certificate comes from the infrastructure CA.
    files = test_pki.device("dev-a")
    conn = connect(
        broker.device_port,
        ca=test_pki.pki.ca_cert_path(CaName.DEVICE),
        cert=files.cert,
        key=files.key,
        client_id="dev-a-wrong-trust",
    )
    assert not conn.connected


def test_a_device_cannot_take_over_another_devices_session_by_client_id(test_pki, broker):
    victim = _device(test_pki, broker, "dev-b", client_id="dev-b")
    assert victim.connected, victim.reason
    lost_connection = []
    victim.client.on_disconnect = lambda *a: lost_connection.append(a)
    attacker = _device(test_pki, broker, "dev-a", client_id="dev-b")  # dev-a's cert, dev-b's client id
    try:
        assert attacker.connected  # it may connect, but as itself: the broker pins the id to the CN
        time.sleep(1.0)
        assert not lost_connection, "the victim was kicked off by a client id takeover"
        assert victim.client.is_connected()
    finally:
        attacker.close()
        victim.close()


def test_device_ids_with_the_agents_client_id_prefix_are_refused(test_pki):
    from citygate.errors import InvalidIdentifierError
    from tests.conftest import device_record

    with pytest.raises(InvalidIdentifierError, match="reserved"):
        test_pki.pki.issue_device(device_record("citygate-gateway-gw-test"))


def test_revoked_while_connected_is_ended_by_the_broker_restart(test_pki, broker_factory):
    """What deploy/systemd/citygate-crl-reload.path does: a new CRL restarts the broker."""
    from tests.conftest import device_record

    pki = test_pki.pki
    pki.issue_devices([device_record("dev-live-revoked"), device_record("dev-live-ok")])
    b = broker_factory(pki)
    victim = _device(test_pki, b, "dev-live-revoked", client_id="dev-live-revoked")
    other = _device(test_pki, b, "dev-live-ok", client_id="dev-live-ok")
    assert victim.connected and other.connected
    pki.revoke("dev-live-revoked")
    b.restart()  # a clean stop: persistent sessions are saved
    victim.close()
    other.close()
    again = _device(test_pki, b, "dev-live-revoked")
    assert not again.connected, "the revoked device got back in"
    ok = _device(test_pki, b, "dev-live-ok")
    assert ok.connected, ok.reason
    ok.close()
