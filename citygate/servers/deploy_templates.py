"""Production configuration templates kept in ``deploy/``, rendered from the same code the tests run."""

from __future__ import annotations

from pathlib import Path

from citygate.servers.mosquitto import MosquittoConfig

TLS = Path("/etc/citygate/tls")

# The gateway machine holds only public CA certificates, CRLs and its own keys;
# CA private keys never leave the machine where `citygate pki` runs.
GATEWAY_MOSQUITTO = MosquittoConfig(
    device_ca=TLS / "device-ca.pem",
    device_crl=TLS / "device-ca.crl.pem",
    infra_ca=TLS / "infra-ca.pem",
    infra_crl=TLS / "infra-ca.crl.pem",
    server_cert=TLS / "broker.pem",
    server_key=TLS / "broker.key",
    device_acl=Path("/etc/mosquitto/citygate-devices.acl"),
    gateway_acl=Path("/etc/mosquitto/citygate-gateways.acl"),
    device_host="0.0.0.0",  # noqa: S104 - devices reach the broker over the site network
    device_port=8883,
    gateway_host="127.0.0.1",
    gateway_port=8884,
    log_file=None,
    # /etc/mosquitto/conf.d/citygate.conf beside Debian's /etc/mosquitto/mosquitto.conf, which
    # sets pid_file, persistence, persistence_location /var/lib/mosquitto/ and log_dest.
    dropin=True,
)
