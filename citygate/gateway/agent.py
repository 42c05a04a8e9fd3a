"""The gateway agent: wires intake, pipeline, outbox, forwarder and health together.

Shutdown (SIGTERM/SIGINT) drains in order: the pipeline commits and acks what
it holds, pending end-to-end acks are published, the broker connection
closes (anything unacked is redelivered next start), the forwarder finishes
its batch in flight, the outbox closes. Restart resumes from the outbox.
"""

from __future__ import annotations

import threading
import time

import structlog
from cryptography import x509

from citygate.certs.identity import CertKind, certificate_identity
from citygate.contract.inventory import Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.validation import ValidationLimits, Validator
from citygate.contract.wire import GatewayHealth
from citygate.errors import ConfigError
from citygate.gateway.clock import TrustedClock
from citygate.gateway.cloud_client import CloudClient
from citygate.gateway.forwarder import Forwarder, ForwarderConfig
from citygate.gateway.health import HealthCollector, HealthSources
from citygate.gateway.heartbeat import Heartbeat
from citygate.gateway.intake import BrokerTls, MqttIntake
from citygate.gateway.local_http import LocalHttp
from citygate.gateway.outbox import Outbox
from citygate.gateway.pipeline import Pipeline
from citygate.gateway.settings import GatewaySettings
from citygate.gateway.systemd import sd_notify, watchdog_interval_s
from citygate.gateway.worker import Worker

log = structlog.get_logger("citygate.gateway.agent")


def gateway_id_from_cert(settings: GatewaySettings) -> str:
    try:
        cert = x509.load_pem_x509_certificate(settings.cert_file.read_bytes())
    except (OSError, ValueError) as e:
        raise ConfigError(f"[gateway] cert_file {settings.cert_file}: cannot load certificate: {e}") from e
    identity = certificate_identity(cert)
    if identity is None or identity[0] is not CertKind.GATEWAY:
        raise ConfigError(
            f"[gateway] cert_file {settings.cert_file} is not a gateway certificate "
            "(issue one with 'citygate pki issue gateway ID')"
        )
    return identity[1]


class GatewayAgent:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.gateway_id = gateway_id_from_cert(settings)
        self.started = time.monotonic()
        self.clock = TrustedClock()
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox, self.recovered_from = Outbox.open_or_recover(
            settings.outbox_path, settings.outbox_limits(), settle_s=settings.outbox_settle_s
        )
        registry = ProfileRegistry(extra_dirs=settings.profiles_dirs)
        validator = Validator(
            registry,
            Inventory.load(settings.inventory),
            ValidationLimits(
                max_payload_bytes=settings.max_payload_bytes,
                max_past_s=settings.max_past_s,
                max_future_s=settings.max_future_s,
            ),
        )
        self.intake = MqttIntake(
            host=settings.broker_host,
            port=settings.broker_port,
            client_id=f"citygate-gateway-{self.gateway_id}",
            tls=BrokerTls(
                settings.ca_file,
                settings.cert_file,
                settings.key_file,
                server_name=settings.broker_server_name,
            ),
            keepalive=settings.mqtt_keepalive_s,
            queue_max=settings.intake_queue_max,
            read_pause_s=settings.mqtt_read_pause_s,
            clock=self.clock.now_ns,
            clock_trusted=lambda: self.clock.anchored,
        )
        self.forwarder = Forwarder(
            self.outbox,
            self._cloud_client(),
            ForwarderConfig.from_settings(settings),
            clock=self.clock.now_ns,
            recheck=lambda r: self.pipeline.would_refuse(r.wire(), r.received_ns),
        )
        self.pipeline = Pipeline(
            intake=self.intake,
            outbox=self.outbox,
            validator=validator,
            inventory_path=settings.inventory,
            commit_max_readings=settings.commit_max_readings,
            commit_max_delay_s=settings.commit_max_delay_s,
            commit_fill_bytes=settings.commit_fill_bytes,
            ack_interval_s=settings.ack_interval_s,
            on_commit=self.forwarder.notify,
            clock=self.clock.now_ns,
        )
        self.health = HealthCollector(
            HealthSources(
                outbox=self.outbox,
                settings=settings,
                broker_connected=lambda: self.intake.receiving,
                started_monotonic=self.started,
                clock=self.clock,
            )
        )
        self.http = LocalHttp(
            settings.http_host,
            settings.http_port,
            self.health.snapshot,
            self.healthy,
            commit_stats=lambda: self.pipeline.commit_stats,
        )
        self._heartbeat_client = self._cloud_client()
        self.heartbeat = Heartbeat(
            gateway_id=self.gateway_id,
            client=self._heartbeat_client,
            snapshot=lambda: self.health.snapshot(),
            interval_s=settings.heartbeat_interval_s,
            request_timeout_s=settings.request_timeout_s,
            on_contract_version=lambda v: self.forwarder.observe_contract_version(v),
        )
        self._unhealthy_logged: tuple[str, ...] = ()

    def _cloud_client(self) -> CloudClient:
        s = self.settings
        return CloudClient(
            base_url=s.cloud_url,
            ca_file=s.ca_file,
            cert_file=s.cert_file,
            key_file=s.key_file,
            timeout_s=s.request_timeout_s,
            clock=self.clock,
        )

    def stalled(self) -> list[str]:
        """The workers that are dead, or stuck: past their promised return by more than
        ``watchdog_stall_s`` (a stuck thread is still alive; see ``gateway/liveness.py``)."""
        grace = self.settings.watchdog_stall_s
        workers: tuple[tuple[str, Worker], ...] = (
            ("pipeline", self.pipeline),
            ("forwarder", self.forwarder),
            ("heartbeat", self.heartbeat),
        )
        out = [name for name, worker in workers if worker.stalled(grace)]
        if not self.intake.alive:
            out.append("mqtt")
        return out

    def healthy(self) -> bool:
        stalled = tuple(self.stalled())
        if stalled and stalled != self._unhealthy_logged:
            log.error("agent unhealthy: workers dead or stuck", workers=list(stalled))
        self._unhealthy_logged = stalled
        return not stalled

    def snapshot(self) -> GatewayHealth:
        return self.health.snapshot()

    @property
    def heartbeats_ok(self) -> int:
        return self.heartbeat.heartbeats_ok

    def start(self) -> None:
        if self.recovered_from is not None:
            log.critical("outbox was corrupt and has been replaced", moved_to=str(self.recovered_from))
        self.forwarder.start()
        self.pipeline.start()
        self.intake.start()
        self.heartbeat.start()
        self.http.start()  # last: /healthz asks for every worker
        log.info(
            "gateway agent started",
            gateway_id=self.gateway_id,
            broker_port=self.settings.broker_port,
            cloud_url=self.settings.cloud_url,
            http_port=self.http.port,
            outbox_depth=self.outbox.stats().depth,
        )
        sd_notify("READY=1")

    def stop(self) -> None:
        sd_notify("STOPPING=1")
        log.info("gateway agent stopping: draining")
        self.heartbeat.request_stop()  # not joined: it only waits for its interval
        self.pipeline.stop()
        self.intake.stop()
        self.forwarder.stop()
        self.http.stop()
        self._heartbeat_client.close()
        self.forwarder.client.close()
        self.outbox.close()
        log.info("gateway agent stopped")

    def run_until(self, stop: threading.Event) -> None:
        """Start, serve until ``stop`` is set (signal handlers set it), then drain."""
        self.start()
        ping = watchdog_interval_s()
        try:
            while not stop.wait(ping or 1.0):
                if ping and self.healthy():
                    sd_notify("WATCHDOG=1")
        finally:
            self.stop()
