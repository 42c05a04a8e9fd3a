"""What one replica holds while it runs: configuration, caches and clients, nothing that must be shared.

Everything here is either immutable configuration, a cache that any replica
rebuilds from files (profiles, inventory, CRL), or a client. Fleet state and
data live in the database, so replicas behind a load balancer agree.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import structlog

from citygate.cloud.auth import CertificateVerifier, TokenAuth
from citygate.cloud.influx_v1 import InfluxV1Sink
from citygate.cloud.ingest import DEFAULT_MAX_BUFFERED_S
from citygate.cloud.ingest_activity import IngestActivity
from citygate.cloud.lineprotocol import ReadingEncoder
from citygate.cloud.metrics import CloudMetrics
from citygate.cloud.settings import CloudSettings
from citygate.cloud.sink import Sink
from citygate.contract.filestamp import file_stamp
from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.validation import ValidationLimits, Validator
from citygate.errors import ConfigError, InventoryError

if TYPE_CHECKING:
    from citygate.service.layer import ServiceLayer
    from citygate.service.rules import RuleSet

log = structlog.get_logger("citygate.cloud")


def profiles_digest(registry: ProfileRegistry) -> bytes:
    """A digest of every profile the registry holds: name, version and whole definition."""
    h = hashlib.blake2b(digest_size=32, person=b"citygate-prof")
    for profile in registry:  # sorted by (name, version)
        doc = orjson.dumps(profile.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        h.update(f"{profile.name}\0{profile.version}\0{len(doc)}\0".encode())
        h.update(doc)
    return h.digest()


def contract_version(inventory_data: bytes, profiles: bytes, window: Mapping[str, float]) -> str:
    """16 hex characters naming what this cloud accepts: the inventory file's bytes, the
    profiles (:func:`profiles_digest`) and the time window.

    Content only (no inode, mtime or path), so replicas with the same files and settings
    agree, and rewriting a file with the same bytes changes nothing.
    """
    h = hashlib.blake2b(digest_size=8, person=b"citygate-cv1")
    h.update(len(inventory_data).to_bytes(8, "big"))
    h.update(inventory_data)
    h.update(profiles)
    h.update(orjson.dumps(dict(window), option=orjson.OPT_SORT_KEYS))
    return h.hexdigest()


def _read_inventory(path: Path) -> tuple[Inventory, bytes]:
    """The inventory and the bytes it was parsed from; a missing file is empty (as Inventory.load)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Inventory(), b""
    except OSError as e:
        raise InventoryError(f"cannot read inventory {path}: {e}") from e
    return Inventory.from_json(data, source=str(path)), data


class InventoryHolder:
    """The validator for the current inventory file, re-read when the file changes.

    ``contract_version`` is recomputed on each (re)load, never per request.
    """

    def __init__(
        self,
        path: Path,
        registry: ProfileRegistry,
        limits: ValidationLimits,
        every_s: float,
        *,
        max_buffered_s: float = DEFAULT_MAX_BUFFERED_S,
    ) -> None:
        self._path = path
        self._every_s = every_s
        self._lock = threading.Lock()
        # Part of the contract too: a wider window accepts readings a narrower one refused.
        self._window = {
            "max_future_s": float(limits.max_future_s),
            "max_past_s": float(limits.max_past_s),
            "max_buffered_s": float(max_buffered_s),
        }
        self._profiles = profiles_digest(registry)
        self._stamp = file_stamp(path)
        inv, data = _read_inventory(path)
        # One tuple, replaced at once: a request never pairs one inventory with another's version.
        self._current = (
            Validator(registry, inv, limits),
            contract_version(data, self._profiles, self._window),
        )
        self._checked = time.monotonic()

    @property
    def validator(self) -> Validator:
        self._check(force=False)
        return self._current[0]

    @property
    def contract_version(self) -> str:
        """The digest of the inventory as loaded, the profiles and the window (see contract_version)."""
        self._check(force=False)
        return self._current[1]

    def current(self) -> tuple[Validator, str]:
        """The validator and the contract_version that describes it, as one consistent pair."""
        self._check(force=False)
        return self._current

    def refresh(self) -> bool:
        """Check the file now (a reading named a device this inventory does not know). True if reloaded.

        A device registered a moment ago may reach a gateway, which reloads its
        own copy, before this replica's periodic check: without this, its first
        readings would be refused as unknown and dead-lettered for good.
        """
        before = self._current
        self._check(force=True)
        return self._current is not before

    def _check(self, *, force: bool) -> None:
        now = time.monotonic()
        if force or now - self._checked >= self._every_s:
            self._checked = now
            stamp = file_stamp(self._path)
            if stamp != self._stamp:
                with self._lock:
                    if stamp != self._stamp:
                        try:
                            inv, data = _read_inventory(self._path)
                        except InventoryError as e:
                            log.error("inventory_reload_failed", path=str(self._path), error=str(e))
                        else:
                            version = contract_version(data, self._profiles, self._window)
                            self._current = (self._current[0].with_inventory(inv), version)
                            log.info(
                                "inventory_reloaded",
                                path=str(self._path),
                                devices=len(inv),
                                contract_version=version,
                            )
                        self._stamp = stamp


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
        # The service layer's rules load here, so that a bad rule file stops create_app (and
        # `citygate cloud check-config`) with file, rule and key, not the first request.
        self.service_rules: RuleSet | None = None
        if settings.service.enabled:
            from citygate.service.rules import load_service_rules

            self.service_rules = load_service_rules(settings.service, self.registry)
        limits = ValidationLimits(max_future_s=settings.max_future_s, max_past_s=settings.max_past_s)
        self.inventory = InventoryHolder(
            settings.inventory,
            self.registry,
            limits,
            settings.inventory_reload_s,
            max_buffered_s=settings.max_buffered_s,
        )
        self.encoder = ReadingEncoder()
        self.verifier = CertificateVerifier(
            settings.client_ca, settings.client_crl, grace_s=settings.crl_grace_s, warn_s=settings.crl_warn_s
        )
        self.tokens = TokenAuth(settings.reader_tokens, settings.operator_tokens)
        # People's client certificates (client CA), checked on every request that presents one.
        self.people_verifier: CertificateVerifier | None = None
        if settings.people_ca is not None and settings.people_crl is not None:
            for key in ("people_ca", "people_crl"):
                path = getattr(settings, key)
                if not path.is_file():
                    raise ConfigError(
                        f"[cloud] {key} (env CITYGATE_CLOUD_{key.upper()}): {path} is not a file"
                    )
            self.people_verifier = CertificateVerifier(
                settings.people_ca,
                settings.people_crl,
                grace_s=settings.crl_grace_s,
                warn_s=settings.crl_warn_s,
            )
        self._sink: Sink | None = None
        self.service: ServiceLayer | None = None
        # POST /v1/ingest activity (one event loop; read by the evaluator's thread to yield).
        svc = settings.service
        self.ingest = IngestActivity(
            svc.ingest_quiet_s, full_load=svc.ingest_full_load, min_share=svc.evaluator_share_busy
        )

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            raise RuntimeError("the sink is opened by the app's lifespan")
        return self._sink

    def open(self) -> None:
        self._sink = make_sink(self.settings, self.metrics)
        if self.settings.service.enabled:
            from citygate.service.layer import ServiceLayer  # SQLAlchemy only when the service layer runs

            self.service = ServiceLayer(
                self.settings.service,
                self.registry,
                self.device,
                rules=self.service_rules,
                busy=self.ingest.busy,
                share=self.ingest.evaluator_share,
            )
            if self.settings.service.runner == "in_process":
                self.service.start()
            else:
                self.service.open_store()  # `citygate service run` evaluates and delivers

    def device(self, device_id: str) -> DeviceRecord | None:
        """The inventory's record of a device (the current file), or None."""
        return self.inventory.validator.inventory.get(device_id)

    async def close(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None
        if self._sink is not None:
            await self._sink.aclose()
            self._sink = None
