"""Gateway agent configuration: ``[gateway]`` in the TOML file, ``CITYGATE_GATEWAY_*`` in the environment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from citygate.config import CitygateSettings
from citygate.gateway.overflow import OverflowPolicy

if TYPE_CHECKING:
    from citygate.gateway.outbox_limits import OutboxLimits

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class GatewaySettings(CitygateSettings):
    model_config = SettingsConfigDict(env_prefix="CITYGATE_GATEWAY_", extra="forbid")
    toml_section: ClassVar[str] = "gateway"

    # -- identity and TLS (the gateway id is read from the certificate) ----------
    cert_file: Path
    key_file: Path
    # Trust anchor for the broker's and the cloud's server certificates (infrastructure CA).
    ca_file: Path

    # -- local broker (its gateway listener) -------------------------------------
    broker_host: str = "127.0.0.1"
    broker_port: Annotated[int, Field(ge=1, le=65535)] = 8884
    # Server name to check in the broker's certificate, and to send as SNI (default:
    # broker_host). For a broker dialled by an address its certificate does not carry, e.g.
    # 127.0.0.1 with a certificate for the gateway's host name (citygate.gateway.intake).
    broker_server_name: str | None = None
    mqtt_keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    # After a wake of the MQTT thread that read only a few messages, pause this long before
    # the next, so that at city rates one wake takes several (the wake, not the message, was
    # most of the agent's CPU there); it adds up to this much to a device's PUBACK. A busy link
    # never pauses. 0: wake for every message.
    mqtt_read_pause_s: Annotated[float, Field(ge=0, le=0.5, allow_inf_nan=False)] = 0.05
    # Devices hold unconfirmed readings; a short coalescing interval keeps ack traffic low.
    ack_interval_s: PositiveFloat = 0.5

    # -- contract ---------------------------------------------------------------
    inventory: Path
    profiles_dirs: tuple[Path, ...] = ()
    max_payload_bytes: Annotated[int, Field(ge=256, le=1_048_576)] = 8192
    # The gateway's time window: a reading's timestamp may be at most this far behind (or
    # ahead of) the moment the gateway receives it. The cloud judges the same reading against
    # the same moment with its own max_past_s / max_future_s, which should be at least these
    # (`citygate gateway check-config --cloud-config` and `citygate cloud check-config
    # --gateway-config` warn when they are not): a reading taken here and refused there is
    # held, not lost, but it is not stored either.
    max_past_s: Annotated[float, Field(ge=0, le=10 * 365 * 86400, allow_inf_nan=False)] = 30 * 86400.0
    max_future_s: Annotated[float, Field(ge=0, le=86400, allow_inf_nan=False)] = 300.0

    # -- outbox -----------------------------------------------------------------
    state_dir: Path
    outbox_max_bytes: Annotated[int, Field(ge=1_000_000)] = 512 * 1024 * 1024
    outbox_max_age_s: PositiveFloat = 14 * 86400.0
    outbox_min_free_disk_bytes: Annotated[int, Field(ge=0)] = 256 * 1024 * 1024
    overflow_policy: OverflowPolicy = OverflowPolicy.DROP_OLDEST
    max_deadletters: Annotated[int, Field(ge=100)] = 100_000
    # Group commit: a transaction takes messages until they fill commit_fill_bytes, or the
    # first has waited commit_max_delay_s, or commit_max_readings are in hand. At city rates
    # the delay decides: each commit rewrites whole pages, so fewer, fuller commits write the
    # flash less (docs/GATEWAY.md, "Flash wear"); it adds that much to a device's PUBACK and
    # to the device-to-cloud latency. commit_max_readings must stay below the broker's
    # max_inflight_messages (1000 in deploy/mosquitto), which caps the messages in hand.
    commit_max_readings: Annotated[int, Field(ge=1, le=100_000)] = 2000
    commit_max_delay_s: Annotated[float, Field(gt=0, le=5, allow_inf_nan=False)] = 0.5
    commit_fill_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 32768
    # Deliveries and counters are written together at most this often (the outbox's
    # bookkeeping): a commit of readings writes nothing else. After a kill -9, what the cloud
    # confirmed in the last outbox_settle_s is sent again (the cloud keeps one copy).
    outbox_settle_s: Annotated[float, Field(ge=0, le=300, allow_inf_nan=False)] = 10.0
    intake_queue_max: Annotated[int, Field(ge=100)] = 20_000

    # -- forwarder --------------------------------------------------------------
    cloud_url: str
    batch_max_readings: Annotated[int, Field(ge=1, le=5000)] = 2000
    batch_max_delay_s: PositiveFloat = 0.5
    # Readings received within this window go first (the live lane).
    live_window_s: PositiveFloat = 10.0
    request_timeout_s: PositiveFloat = 30.0
    backoff_initial_s: PositiveFloat = 0.5
    backoff_max_s: PositiveFloat = 60.0
    # Cap on the backlog drain rate (readings/s); 0 = as fast as the cloud accepts.
    drain_max_rate: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    # Readings the cloud refused for a reason the gateway does not share (docs/GATEWAY.md,
    # "Held readings") are tried again this often, and at once when the cloud's inventory or
    # profiles change.
    held_retry_s: Annotated[float, Field(ge=1, allow_inf_nan=False)] = 300.0

    # -- health -----------------------------------------------------------------
    heartbeat_interval_s: PositiveFloat = 30.0
    # A worker (pipeline, forwarder, heartbeats) this long past the time it promised to be back
    # makes the agent unhealthy: /healthz answers 503 and systemd's watchdog restarts it. Generous:
    # one long commit on slow storage (expiring a large backlog at once) must not look stuck, or
    # every restart would repeat it.
    watchdog_stall_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 300.0
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 9108

    @model_validator(mode="after")
    def _https_only(self) -> GatewaySettings:
        if not self.cloud_url.startswith("https://"):
            raise ValueError("cloud_url must be an https:// URL (the cloud authenticates gateways by mTLS)")
        return self

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.db"

    def outbox_limits(self) -> OutboxLimits:
        # Imported here: OutboxLimits takes its defaults from this module's class.
        from citygate.gateway.outbox_limits import OutboxLimits

        return OutboxLimits(
            max_bytes=self.outbox_max_bytes,
            max_age_s=self.outbox_max_age_s,
            min_free_disk_bytes=self.outbox_min_free_disk_bytes,
            policy=self.overflow_policy,
            max_deadletters=self.max_deadletters,
        )


def setting_default(name: str) -> Any:
    """The default of one of the settings above: the only place a gateway default is written,
    so the classes built from settings (OutboxLimits, ForwarderConfig) take theirs from here."""
    return GatewaySettings.model_fields[name].default
