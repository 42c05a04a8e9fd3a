"""Cloud settings: ``[cloud]`` in the config file, or ``CITYGATE_CLOUD_*`` in the environment.

Unsafe configurations are refused at load time rather than degraded at run
time: no TLS material means no start, a v2 sink without token/org/bucket means
no start, and a reader token shorter than 24 characters means no start. No
reader tokens at all is allowed but means every read is refused (401): city
data is never readable anonymously by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from citygate.config import CitygateSettings
from citygate.contract import wire
from citygate.netutil import is_loopback_host
from citygate.open311.settings import Open311Field, Open311Settings
from citygate.opendata.policy import OpenDataSettings
from citygate.opendata.sta.settings import StaSettings
from citygate.progress.settings import ProgressSection, ProgressSettings
from citygate.service.settings import ServiceSettings

MIN_TOKEN_LENGTH = 24


def _safe_influx_url(url: str) -> bool:
    """https://, or http:// to this machine only (credentials never cross a network in clear)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme == "https" or is_loopback_host(parts.hostname or "")


_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class CloudSettings(CitygateSettings):
    """Everything ``citygate cloud run`` needs; see docs/CLOUD.md for each key."""

    model_config = SettingsConfigDict(env_prefix="CITYGATE_CLOUD_", extra="forbid")
    toml_section: ClassVar[str] = "cloud"

    # -- listener ---------------------------------------------------------------
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8443
    tls_cert: Path  # server certificate (citygate pki issue server)
    tls_key: Path
    client_ca: Path  # the infrastructure CA ONLY (never the device CA)
    client_crl: Path  # the infrastructure CA's CRL, re-read when it changes
    # A CRL past its nextUpdate by more than this is not trusted: gateway calls get 503 (fail
    # closed) until a fresh one is installed (citygate pki crl; docs/PKI.md). Before that, from
    # crl_warn_s ahead of nextUpdate, the cloud logs a warning every hour.
    crl_grace_s: Annotated[float, Field(ge=0, le=7 * 86400, allow_inf_nan=False)] = 3600.0
    crl_warn_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 2 * 86400.0
    # "required": every TLS connection presents an infra-CA certificate.
    # "optional": a certificate, if presented, must still verify; readers may then
    # come with a token only (and a load balancer may probe /healthz). Gateway
    # routes always require a gateway certificate either way.
    client_cert_mode: Literal["required", "optional"] = "required"
    # A client must send a request's headers within this many seconds of connecting (or of
    # the request's first byte on a kept-alive connection), else it is disconnected: a
    # slowloris client cannot hold connections. The TLS handshake itself is bounded by
    # asyncio (60 s).
    header_timeout_s: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 10.0
    # Open connections beyond which new requests are answered 503 (uvicorn limit_concurrency).
    max_connections: Annotated[int, Field(ge=16, le=100_000)] = 1000

    # -- contract ---------------------------------------------------------------
    inventory: Path
    profiles_dirs: list[Path] = Field(default_factory=list)
    inventory_reload_s: Annotated[float, Field(ge=0.1, le=3600)] = 5.0
    max_body_bytes: Annotated[int, Field(ge=1024)] = wire.MAX_BODY_BYTES
    max_decompressed_bytes: Annotated[int, Field(ge=1024)] = wire.MAX_DECOMPRESSED_BYTES
    max_batch_readings: Annotated[int, Field(ge=1, le=100_000)] = wire.MAX_BATCH_READINGS
    max_future_s: Annotated[float, Field(ge=0, le=86400)] = 300.0
    max_past_s: Annotated[float, Field(ge=0, le=10 * 365 * 86400)] = 30 * 86400.0  # see contract/windows.py
    # The window above is judged against when the gateway received a reading (its received_ms),
    # not when the batch arrives: a gateway may buffer readings through an outage. This is how
    # long the cloud accepts that a gateway held one (received_ms older than this:
    # received_too_old). Keep it at least the gateways' outbox_max_age_s.
    max_buffered_s: Annotated[float, Field(ge=0, le=10 * 365 * 86400, allow_inf_nan=False)] = 30 * 86400.0

    # -- InfluxDB ---------------------------------------------------------------
    influx_api: Literal["v1", "v2"] = "v1"
    influx_url: str = "http://127.0.0.1:8086"
    influx_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    # v1: /write?db=&rp= with optional basic auth
    influx_db: str = "citygate"
    influx_rp: str | None = None
    influx_user: str | None = None
    influx_password: SecretStr | None = None
    # v2: influxdb-client, token/org/bucket
    influx_token: SecretStr | None = None
    influx_org: str | None = None
    influx_bucket: str | None = None
    # The read and fleet APIs speak InfluxQL (/query). VictoriaMetrics has none:
    # set this to false there and those endpoints answer 501.
    influxql_enabled: bool = True
    retry_after_s: Annotated[int, Field(ge=1, le=3600)] = 5

    # -- access -----------------------------------------------------------------
    # name -> token. Readers query series; operators also see the fleet and /metrics.
    reader_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    operator_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    metrics_public: bool = False

    # -- fleet ------------------------------------------------------------------
    heartbeat_stale_s: Annotated[float, Field(gt=0)] = 120.0
    heartbeat_offline_s: Annotated[float, Field(gt=0)] = 600.0
    fleet_lookback_s: Annotated[float, Field(gt=0)] = 30 * 86400.0
    device_silent_factor: Annotated[float, Field(ge=1)] = 3.0

    # -- read API ---------------------------------------------------------------
    max_query_points: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000

    # -- logging ----------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True

    @field_validator("reader_tokens", "operator_tokens")
    @classmethod
    def _strong_tokens(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        import re

        for name, token in v.items():
            if re.fullmatch(_NAME_PATTERN, name) is None:
                raise ValueError(f"token name {name!r} must be 1-64 letters, digits, '.', '_', '-'")
            secret = token.get_secret_value()
            generate = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            if len(secret) < MIN_TOKEN_LENGTH:
                raise ValueError(f"token {name!r} is shorter than {MIN_TOKEN_LENGTH} characters; {generate}")
            if any(c.isspace() for c in secret) or len(set(secret)) == 1:
                raise ValueError(f"token {name!r} contains whitespace or repeats one character; {generate}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.influx_api == "v2":
            missing = [k for k in ("influx_token", "influx_org", "influx_bucket") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"influx_api = 'v2' needs {', '.join(missing)}")
        if (self.influx_user is None) != (self.influx_password is None):
            raise ValueError("influx_user and influx_password go together")
        if (self.influx_password is not None or self.influx_token is not None) and not _safe_influx_url(
            self.influx_url
        ):
            raise ValueError(
                "influx_url is plain http:// to another host but carries credentials: use https:// "
                "(credentials in clear text on the network are not accepted; http:// is only for loopback)"
            )
        if self.heartbeat_offline_s <= self.heartbeat_stale_s:
            raise ValueError("heartbeat_offline_s must be greater than heartbeat_stale_s")
        if self.max_decompressed_bytes < self.max_body_bytes:
            raise ValueError("max_decompressed_bytes must be at least max_body_bytes")
        tokens = (*self.reader_tokens.values(), *self.operator_tokens.values())
        all_tokens = [t.get_secret_value() for t in tokens]
        if len(set(all_tokens)) != len(all_tokens):
            raise ValueError("every reader/operator token must be distinct")
        return self

    @property
    def write_database(self) -> str:
        """The database (v1) or bucket (v2) points go to; InfluxQL reads use the same name."""
        if self.influx_api == "v2":
            assert self.influx_bucket is not None
            return self.influx_bucket
        return self.influx_db

    # -- hardening: read limits, the gateway listener, anonymous clients, API docs ----
    # (fields appended here in one block; docs/CLOUD.md "Read API" and "Listeners")
    # A raw (non-aggregated) read covers at most this long a time range; longer ones need agg.
    max_raw_range_s: Annotated[float, Field(gt=0, le=10 * 365 * 86400, allow_inf_nan=False)] = 7 * 86400.0
    # Series reads one token may have in flight at once; beyond it 429 with Retry-After.
    read_concurrency_per_token: Annotated[int, Field(ge=1, le=1000)] = 4
    # Reads fetched and rendered at once, all tokens together; more wait for their turn. Each
    # is parsed and rendered in slices on the event loop that also answers gateway batches.
    read_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    # The gateways' own listener (mTLS always required, its own connection budget). 0: off,
    # gateways use `port` as before. When set, /v1/ingest and heartbeats answer only there.
    gateway_port: Annotated[int, Field(ge=0, le=65535)] = 0
    gateway_host: str | None = None  # default: `host`
    gateway_max_connections: Annotated[int, Field(ge=16, le=100_000)] = 1000
    # Every listener: a TLS handshake not complete after this long is dropped (asyncio: 60 s).
    tls_handshake_timeout_s: Annotated[float, Field(gt=0, le=120, allow_inf_nan=False)] = 10.0
    # Keep-alive of connections without a client certificate (those with one: 30 s).
    anonymous_keep_alive_s: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 5.0
    # /docs and /redoc (Swagger UI, ReDoc) load their scripts from a CDN onto this origin,
    # where the dashboard keeps an operator token: off unless asked for. /openapi.json stays.
    api_docs: bool = False

    # -- people's client certificates (docs/CLOUD.md "Listeners", docs/PKI.md) -----
    # The client CA (citygate pki issue reader|operator) and its CRL: both or neither. Set, the
    # main listener (`port`) trusts it besides client_ca, so with client_cert_mode = "required"
    # readers and operators come with their own certificate (plus their token, which alone
    # decides the role); a revoked one is refused. The gateway listener and the gateway routes
    # keep accepting only gateway certificates from client_ca.
    people_ca: Path | None = None
    people_crl: Path | None = None

    @model_validator(mode="after")
    def _people_ca_with_crl(self) -> Self:
        if (self.people_ca is None) != (self.people_crl is None):
            raise ValueError("people_ca and people_crl go together")
        if self.people_ca is not None and self.people_ca == self.client_ca:
            raise ValueError("people_ca is the client CA (client-ca/ca.pem), not the infrastructure CA")
        return self

    # -- the dashboard's map (docs/CLOUD.md "Configuration") ----------------------
    # The XYZ tile URL template behind the map of gateways and devices, e.g.
    # "https://tile.openstreetmap.org/{z}/{x}/{y}.png" ({s}. as the host's first label for
    # subdomains a, b, c). The page's Content-Security-Policy then allows images from that
    # origin. Empty (the default): no tiles, the markers on a blank background, and the page
    # asks nothing of any other host. https:// (http:// only to this machine).
    dashboard_tile_url: Annotated[str, Field(max_length=500)] = ""

    # The service layer (rules, cases, signed events): [cloud.service], off by default.
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    # Open data (the SensorThings API, NGSI-LD): [cloud.opendata], off by default.
    opendata: OpenDataSettings = Field(default_factory=OpenDataSettings)
    # The SensorThings API's switch and bounds: [cloud.sta], off by default (docs/SENSORTHINGS.md).
    sta: StaSettings = Field(default_factory=StaSettings)
    # Citizen reports (Open311 GeoReport v2): [cloud.open311], off by default; needs `service`
    # (declared above it: its validator reads it).
    open311: Open311Field = Field(default_factory=Open311Settings)
    # The public progress page (/public): [cloud.progress], off by default; needs `service`
    # (declared above it: its validator reads it).
    progress: ProgressSection = Field(default_factory=ProgressSettings)

    @field_validator("dashboard_tile_url")
    @classmethod
    def _tile_url_template(cls, v: str) -> str:
        import re

        template = r"https?://(\{s\}\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?/[^\s\"'<>\\]*"
        if v and (
            re.fullmatch(template, v) is None
            or not all(key in v for key in ("{z}", "{x}", "{y}"))
            or not _safe_influx_url(v)  # https, or http to this machine (the page is HTTPS)
        ):
            raise ValueError(
                "dashboard_tile_url must be empty or an https:// URL template with {z}, {x} and {y} "
                "(and {s}. as the host's first label, if any), e.g. "
                "https://tile.openstreetmap.org/{z}/{x}/{y}.png; http:// only to this machine"
            )
        return v
