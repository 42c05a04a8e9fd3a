"""What one replica holds while it runs: configuration, caches and clients, nothing that must be shared.

Everything here is either immutable configuration, a cache that any replica
rebuilds from files (profiles, inventory, CRL), or a client. Fleet state and
data live in the database, so replicas behind a load balancer agree.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import structlog

from citygate.cloud.auth import CertificateVerifier, TokenAuth, file_key
from citygate.cloud.influx_v1 import InfluxV1Sink
from citygate.cloud.lineprotocol import ReadingEncoder
from citygate.cloud.metrics import CloudMetrics
from citygate.cloud.settings import CloudSettings
from citygate.cloud.sink import Sink
from citygate.contract.inventory import Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.validation import ValidationLimits, Validator
from citygate.errors import ConfigError, InventoryError

log = structlog.get_logger("citygate.cloud")


class InventoryHolder:
    """The validator for the current inventory file, re-read when the file changes."""

    def __init__(
        self, path: Path, registry: ProfileRegistry, limits: ValidationLimits, every_s: float
    ) -> None:
        self._path = path
        self._every_s = every_s
        self._lock = threading.Lock()
        self._key = self._stat()
        self._validator = Validator(registry, Inventory.load(path), limits)
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int] | None:
        return file_key(self._path)

    @property
    def validator(self) -> Validator:
        self._check(force=False)
        return self._validator

    def refresh(self) -> bool:
        """Check the file now (a reading named a device this inventory does not know). True if reloaded.

        A device registered a moment ago may reach a gateway, which reloads its
        own copy, before this replica's periodic check: without this, its first
        readings would be refused as unknown and dead-lettered for good.
        """
        before = self._validator
        self._check(force=True)
        return self._validator is not before

    def _check(self, *, force: bool) -> None:
        now = time.monotonic()
        if force or now - self._checked >= self._every_s:
            self._checked = now
            key = self._stat()
            if key != self._key:
                with self._lock:
                    if key != self._key:
                        try:
                            inv = Inventory.load(self._path)
                        except InventoryError as e:
                            log.error("inventory_reload_failed", path=str(self._path), error=str(e))
                        else:
                            self._validator = self._validator.with_inventory(inv)
                            log.info("inventory_reloaded", path=str(self._path), devices=len(inv))
                        self._key = key


def make_sink(settings: CloudSettings, metrics: CloudMetrics) -> Sink:
    observe = metrics.db_write_seconds.observe
    if settings.influx_api == "v2":
        from citygate.cloud.influx_v2 import InfluxV2Sink  # influxdb-client only when configured

        assert settings.influx_token and settings.influx_org and settings.influx_bucket
        return InfluxV2Sink(
            settings.influx_url,
            token=settings.influx_token.get_secret_value(),
            org=settings.influx_org,
            bucket=settings.influx_bucket,
            timeout_s=settings.influx_timeout_s,
            on_request=observe,
        )
    return InfluxV1Sink(
        settings.influx_url,
        settings.influx_db,
        rp=settings.influx_rp,
        user=settings.influx_user,
        password=settings.influx_password.get_secret_value() if settings.influx_password else None,
        timeout_s=settings.influx_timeout_s,
        on_request=observe,
    )


class CloudState:
    """Built by create_app from settings; the sink is opened and closed by the lifespan."""

    def __init__(self, settings: CloudSettings) -> None:
        for key in ("tls_cert", "tls_key", "client_ca", "client_crl"):
            path: Path = getattr(settings, key)
            if not path.is_file():
                raise ConfigError(f"[cloud] {key} (env CITYGATE_CLOUD_{key.upper()}): {path} is not a file")
        if not settings.inventory.is_file():
            raise ConfigError(f"[cloud] inventory: {settings.inventory} is not a file")
        self.settings = settings
        self.metrics = CloudMetrics()
        self.registry = ProfileRegistry(extra_dirs=settings.profiles_dirs)
        limits = ValidationLimits(max_future_s=settings.max_future_s, max_past_s=settings.max_past_s)
        self.inventory = InventoryHolder(
            settings.inventory, self.registry, limits, settings.inventory_reload_s
        )
        self.encoder = ReadingEncoder()
        self.verifier = CertificateVerifier(settings.client_ca, settings.client_crl)
        self.tokens = TokenAuth(settings.reader_tokens, settings.operator_tokens)
        self._sink: Sink | None = None

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            raise RuntimeError("the sink is opened by the app's lifespan")
        return self._sink

    def open(self) -> None:
        self._sink = make_sink(self.settings, self.metrics)

    async def close(self) -> None:
        if self._sink is not None:
            await self._sink.aclose()
            self._sink = None
