"""InfluxDB v2 write API through influxdb-client: InfluxDB 2.x/3.x/Cloud and VictoriaMetrics.

Only the SYNCHRONOUS write API is used: the batching API acknowledges before
the database has the data and loses unflushed points on exit
(influxdb-client-python #165, #394, #504). The client is blocking, so each
write runs in a worker thread; its result (or exception) is checked before
the service answers the gateway.

Reads (InfluxQL) go through the v1-compatible ``/query`` endpoint with the
bucket as database and ``Authorization: Token``; VictoriaMetrics has no
InfluxQL (set ``influxql_enabled = false``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import anyio.to_thread
import urllib3.exceptions
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from citygate.cloud.influx_v1 import HttpInfluxSink, InfluxQLClient, make_http_client
from citygate.cloud.sink import (
    ErrorKind,
    Refused,
    classify_status,
)
from citygate.errors import SinkUnavailable


class InfluxV2Sink(HttpInfluxSink):
    def __init__(
        self,
        url: str,
        *,
        token: str,
        org: str,
        bucket: str,
        timeout_s: float = 10.0,
        on_request: Callable[[float], None] | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._org = org
        self._bucket = bucket
        # retries=False: a failing database must turn into a quick 503, the
        # gateways do the retrying (they hold the data).
        self._client = InfluxDBClient(
            url=self._url, token=token, org=org, timeout=int(timeout_s * 1000), retries=False
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._http = make_http_client(timeout_s, None, {"Authorization": f"Token {token}"})
        self._ql = InfluxQLClient(self._http, self._url, bucket, None)
        self._on_request = on_request

    @property
    def target(self) -> str:
        return f"influxdb-v2 {self._url} bucket={self._bucket}"

    def _blocking_write(self, body: bytes) -> Refused | None:
        t0 = time.perf_counter()
        try:
            self._write.write(
                bucket=self._bucket,
                org=self._org,
                record=body,
                write_precision=cast(WritePrecision, WritePrecision.NS),
            )
        except ApiException as e:
            status = int(e.status or 500)
            detail = str(e.body or e.reason or "")[:300]
            kind = classify_status(status) or ErrorKind.SERVER_ERROR
            if kind in (ErrorKind.BAD_POINT, ErrorKind.TOO_LARGE):
                return Refused(kind, detail)
            raise SinkUnavailable(kind, f"write answered HTTP {status}: {detail}") from e
        except urllib3.exceptions.TimeoutError as e:
            raise SinkUnavailable(ErrorKind.TIMEOUT, f"no answer in time ({type(e).__name__})") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise SinkUnavailable(ErrorKind.CONNECTION, f"database unreachable ({type(e).__name__})") from e
        finally:
            if self._on_request is not None:
                self._on_request(time.perf_counter() - t0)
        return None

    async def _raw(self, body: bytes) -> Refused | None:
        return await anyio.to_thread.run_sync(self._blocking_write, body)

    async def aclose(self) -> None:
        await self._http.aclose()
        await anyio.to_thread.run_sync(self._client.close)
