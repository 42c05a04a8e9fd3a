"""The gateway agent: wires intake, pipeline, outbox, forwarder and health together.

Shutdown (SIGTERM/SIGINT) drains in order: the pipeline commits and acks what
it holds, pending end-to-end acks are published, the broker connection
closes (anything unacked is redelivered next start), the forwarder finishes
its batch in flight, the outbox closes. Restart resumes from the outbox.
"""

from __future__ import annotations

import sqlite3
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
from citygate.gateway.intake import BrokerTls, MqttIntake
from citygate.gateway.liveness import Deadline
from citygate.gateway.local_http import LocalHttp
from citygate.gateway.outbox import Outbox
from citygate.gateway.pipeline import Pipeline
from citygate.gateway.settings import GatewaySettings
from citygate.gateway.systemd import sd_notify, watchdog_interval_s

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
            clock=self.clock.now_ns,
        )
        self.forwarder = Forwarder(
            self.outbox,
            self._cloud_client(),
            ForwarderConfig(
                batch_max_readings=settings.batch_max_readings,
                batch_max_delay_s=settings.batch_max_delay_s,
                live_window_s=settings.live_window_s,
                backoff_initial_s=settings.backoff_initial_s,
                backoff_max_s=settings.backoff_max_s,
                drain_max_rate=settings.drain_max_rate,
                held_retry_s=settings.held_retry_s,
            ),
            clock=self.clock.now_ns,
            recheck=lambda r: self.pipeline.would_refuse(r.body, r.received_ns),
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
            clock_trusted=lambda: self.clock.anchored,
        )
        self.health = HealthCollector(
            HealthSources(
                outbox=self.outbox,
                settings=settings,
                broker_connected=lambda: self.intake.connected,
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
        self._stop = threading.Event()
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeats, name="citygate-heartbeat", daemon=True
        )
        self._heartbeat_progress = Deadline()
        self.heartbeats_ok = 0
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
        out = [
            name
            for name, thread, progress in (
                ("pipeline", self.pipeline._thread, self.pipeline.progress),
                ("forwarder", self.forwarder._thread, self.forwarder.progress),
                ("heartbeat", self._heartbeat_thread, self._heartbeat_progress),
            )
            if not thread.is_alive() or progress.overdue_s() > grace
        ]
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

    def _heartbeats(self) -> None:
        interval = self.settings.heartbeat_interval_s
        # The first one right away: the fleet view learns of a (re)started gateway at once.
        while True:
            self._heartbeat_progress.within(4 * self.settings.request_timeout_s)
            try:
                snapshot = self.health.snapshot()
            except (sqlite3.Error, OSError, ValueError) as e:  # pydantic's ValidationError too
                # Not this thread's end: the fleet view would take the gateway for dead.
                log.error("could not build the heartbeat; trying again next interval", error=str(e))
            else:
                outcome = self._heartbeat_client.post_heartbeat(self.gateway_id, snapshot)
                if outcome.ok:
                    self.heartbeats_ok += 1
                    self.forwarder.observe_contract_version(outcome.contract_version)
                else:
                    log.warning("heartbeat failed", status=outcome.status, error=outcome.error)
            self._heartbeat_progress.within(interval)
            if self._stop.wait(interval):
                self._heartbeat_progress.done()
                return

    def start(self) -> None:
        if self.recovered_from is not None:
            log.critical("outbox was corrupt and has been replaced", moved_to=str(self.recovered_from))
        self.forwarder.start()
        self.pipeline.start()
        self.intake.start()
        self._heartbeat_thread.start()
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
        self._stop.set()
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
