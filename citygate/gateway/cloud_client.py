"""HTTPS with mTLS to the cloud: the only module of the gateway that speaks HTTP.

The client certificate and key are re-read when their files change, so a
renewed gateway certificate takes effect without a restart.
"""

from __future__ import annotations

import gzip
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog

from citygate.contract.filestamp import FileStamp, file_stamp
from citygate.contract.wire import (
    HEARTBEAT_PATH,
    INGEST_PATH,
    GatewayHealth,
    HeartbeatAnswer,
    IngestResult,
    batch_body,
)
from citygate.gateway.clock import TrustedClock

log = structlog.get_logger("citygate.gateway.cloud_client")


@dataclass(frozen=True, slots=True)
class PostOutcome:
    """What the cloud said about one request."""

    status: int | None  # None: no HTTP answer (connection error, timeout)
    result: IngestResult | None = None
    retry_after_s: float | None = None
    error: str | None = None
    contract_version: str | None = None  # from a heartbeat's answer (an ingest answer has it in result)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


class CloudClient:
    def __init__(
        self,
        *,
        base_url: str,
        ca_file: Path,
        cert_file: Path,
        key_file: Path,
        timeout_s: float,
        clock: TrustedClock | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file
        self.timeout_s = timeout_s
        self._stamps: tuple[FileStamp | None, ...] | None = None
        self._client: httpx.Client | None = None
        self.clock = clock  # learns the cloud's time from each answer's Date header

    def _http(self) -> httpx.Client:
        stamps = tuple(file_stamp(p) for p in (self.cert_file, self.key_file, self.ca_file))
        if self._client is None or stamps != self._stamps:
            old = self._client
            if old is not None:
                log.info("certificate files changed; reloading TLS client")
            # Load first and close the old client only then: a file that cannot be read
            # (its stamp None) fails here, and the client in use is never left closed.
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
            self._client = httpx.Client(
                base_url=self.base_url,
                verify=ctx,
                timeout=self.timeout_s,
                limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
            )
            self._stamps = stamps
            if old is not None:
                old.close()
        return self._client

    def _post(self, path: str, body: bytes, gzip_body: bool) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if gzip_body:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        sent = time.monotonic_ns()
        resp = self._http().post(path, content=body, headers=headers)
        if self.clock is not None:
            self.clock.observe(resp.headers.get("date"), sent, time.monotonic_ns())
        return resp

    def post_batch(self, batch_id: str, bodies: list[bytes]) -> PostOutcome:
        """POST /v1/ingest with readings already in wire JSON form (no re-encoding)."""
        try:
            resp = self._post(INGEST_PATH, batch_body(batch_id, bodies), gzip_body=True)
        except (httpx.HTTPError, ssl.SSLError, OSError) as e:
            return PostOutcome(status=None, error=f"{type(e).__name__}: {e}")
        retry_after = _retry_after(resp.headers.get("Retry-After"))
        if resp.is_success:
            try:
                return PostOutcome(resp.status_code, IngestResult.model_validate_json(resp.content))
            except ValueError as e:
                return PostOutcome(resp.status_code, error=f"unreadable 2xx answer: {e}")
        return PostOutcome(resp.status_code, retry_after_s=retry_after, error=resp.text[:500])

    def post_heartbeat(self, gateway_id: str, health: GatewayHealth) -> PostOutcome:
        try:
            resp = self._post(
                HEARTBEAT_PATH.format(gateway_id=gateway_id),
                health.model_dump_json().encode(),
                gzip_body=False,
            )
        except (httpx.HTTPError, ssl.SSLError, OSError) as e:
            return PostOutcome(status=None, error=f"{type(e).__name__}: {e}")
        if not resp.is_success:
            return PostOutcome(resp.status_code, error=resp.text[:500])
        try:
            version = HeartbeatAnswer.model_validate_json(resp.content).contract_version
        except ValueError:
            version = None  # stored all the same; an older cloud answers without it
        return PostOutcome(resp.status_code, contract_version=version)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
