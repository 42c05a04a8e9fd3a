"""The committed Mosquitto template is exactly what the tested renderer produces."""

from dataclasses import replace
from pathlib import Path

import pytest

from citygate.servers.deploy_templates import GATEWAY_MOSQUITTO
from citygate.servers.mosquitto import DEVICE_ACL, GATEWAY_ACL, render_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"


def test_gateway_mosquitto_template_in_sync():
    assert (DEPLOY / "citygate-gateway.conf").read_text() == render_config(GATEWAY_MOSQUITTO)
    assert (DEPLOY / "citygate-devices.acl").read_text() == DEVICE_ACL
    assert (DEPLOY / "citygate-gateways.acl").read_text() == GATEWAY_ACL


def test_template_separates_trust_per_listener():
    conf = render_config(GATEWAY_MOSQUITTO)
    devices, gateways = conf.split("# devices")[1].split("# gateways")
    assert "cafile /etc/citygate/tls/device-ca.pem" in devices
    assert "infra-ca" not in devices.replace("certfile", "").split("cafile")[1].splitlines()[0]
    assert "cafile /etc/citygate/tls/infra-ca.pem" in gateways
    assert "listener 8884 127.0.0.1" in gateways
    for section in (devices, gateways):
        assert "require_certificate true" in section
        assert "use_identity_as_username true" in section
        assert "allow_anonymous false" in section
        assert "crlfile" in section


def test_template_is_a_conf_d_drop_in():
    # Debian's /etc/mosquitto/mosquitto.conf sets these before its include_dir; a second
    # persistence_location stops Mosquitto ("Duplicate persistence_location value"), a second
    # log_dest logs everything twice. tests/deploy/test_mosquitto_debian_dropin.py runs it.
    keys = {line.split()[0] for line in render_config(GATEWAY_MOSQUITTO).splitlines() if line[:1].isalpha()}
    assert not keys & {"pid_file", "persistence", "persistence_location", "log_dest", "include_dir"}
    assert "autosave_interval" in keys


def test_the_test_brokers_config_stands_alone(tmp_path):
    conf = render_config(replace(GATEWAY_MOSQUITTO, dropin=False, persistence_dir=tmp_path))
    assert f"persistence_location {tmp_path}/" in conf and "log_dest stderr" in conf
    with pytest.raises(ValueError, match="persistence_dir"):
        replace(GATEWAY_MOSQUITTO, dropin=False)
