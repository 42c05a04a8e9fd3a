"""InfluxDB 1.x API: ``POST /write`` and InfluxQL ``/query`` over httpx.

Also the InfluxQL reader of the v2 mode: InfluxDB 2.x/3.x answer ``/query``
through their v1-compatible endpoint with the bucket as ``db`` and a token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import orjson

from citygate.cloud.sink import (
    ErrorKind,
    Refused,
    WriteReport,
    classify_status,
    write_narrowing,
)
from citygate.errors import QueryError, SinkUnavailable


def _error_text(resp: httpx.Response) -> str:
    try:
        doc = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return resp.text[:300]
    if isinstance(doc, dict):
        for key in ("error", "message"):
            if isinstance(doc.get(key), str):
                return str(doc[key])[:300]
    return resp.text[:300]


def transport_error(e: httpx.TransportError) -> SinkUnavailable:
    if isinstance(e, httpx.TimeoutException):
        return SinkUnavailable(ErrorKind.TIMEOUT, f"database did not answer in time ({type(e).__name__})")
    return SinkUnavailable(ErrorKind.CONNECTION, f"cannot reach the database ({type(e).__name__})")


class InfluxQLClient:
    """``GET /query`` with InfluxQL; the only reader of the database."""

    def __init__(self, client: httpx.AsyncClient, url: str, db: str, rp: str | None) -> None:
        self._client = client
        self._url = url.rstrip("/")
        self._db = db
        self._rp = rp

    async def query(self, q: str, *, epoch: str | None = None) -> list[dict[str, Any]]:
        params = {"db": self._db, "q": q}
        if self._rp:
            params["rp"] = self._rp
        if epoch:
            params["epoch"] = epoch
        try:
            resp = await self._client.get(f"{self._url}/query", params=params)
        except httpx.TransportError as e:
            raise transport_error(e) from e
        kind = classify_status(resp.status_code)
        if kind is ErrorKind.BAD_POINT:
            raise QueryError(_error_text(resp))
        if kind is not None:
            raise SinkUnavailable(kind, f"query answered HTTP {resp.status_code}: {_error_text(resp)}")
        try:
            doc = orjson.loads(resp.content)
        except orjson.JSONDecodeError as e:
            raise SinkUnavailable(ErrorKind.SERVER_ERROR, "query answer is not JSON") from e
        results = doc.get("results") if isinstance(doc, dict) else None
        if not isinstance(results, list):
            raise SinkUnavailable(ErrorKind.SERVER_ERROR, "query answer has no results")
        for r in results:
            if isinstance(r, dict) and isinstance(r.get("error"), str):
                raise QueryError(r["error"])
        return results


def make_http_client(
    timeout_s: float,
    auth: httpx.Auth | None,
    headers: dict[str, str] | None = None,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        auth=auth,
        headers=headers,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        trust_env=False,  # no proxy from the environment between us and the database
    )


class HttpInfluxSink:
    """What both sinks share: batch narrowing over ``_raw``, InfluxQL reads, ``/ping``.

    Subclasses set ``_url``, ``_http`` (the httpx client for /query and /ping) and
    ``_ql``, and implement ``_raw`` (write one body: None, a Refused, or raise).
    """

    _url: str
    _http: httpx.AsyncClient
    _ql: InfluxQLClient

    async def _raw(self, body: bytes) -> Refused | None:
        raise NotImplementedError

    async def write_lines(self, lines: Sequence[str]) -> WriteReport:
        return await write_narrowing(self._raw, lines)

    async def query(self, q: str, *, epoch: str | None = None) -> list[dict[str, Any]]:
        return await self._ql.query(q, epoch=epoch)

    async def ping(self) -> bool:
        try:
            resp = await self._http.get(f"{self._url}/ping")
        except httpx.TransportError:
            return False
        return resp.status_code in (200, 204)


class InfluxV1Sink(HttpInfluxSink):
    """``/write?db=&rp=&precision=ns`` with optional basic auth."""

    def __init__(
        self,
        url: str,
        db: str,
        *,
        rp: str | None = None,
        user: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        on_request: Callable[[float], None] | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._params = {"db": db, "precision": "ns"}
        if rp:
            self._params["rp"] = rp
        auth = httpx.BasicAuth(user, password) if user is not None and password is not None else None
        self._http = make_http_client(timeout_s, auth)
        self._ql = InfluxQLClient(self._http, self._url, db, rp)
        self._on_request = on_request

    @property
    def target(self) -> str:
        return f"influxdb-v1 {self._url} db={self._params['db']}"

    async def _raw(self, body: bytes) -> Refused | None:
        t0 = time.perf_counter()
        try:
            resp = await self._http.post(f"{self._url}/write", params=self._params, content=body)
        except httpx.TransportError as e:
            raise transport_error(e) from e
        finally:
            if self._on_request is not None:
                self._on_request(time.perf_counter() - t0)
        kind = classify_status(resp.status_code)
        if kind is None:
            return None
        if kind in (ErrorKind.BAD_POINT, ErrorKind.TOO_LARGE):
            return Refused(kind, _error_text(resp))
        raise SinkUnavailable(kind, f"write answered HTTP {resp.status_code}: {_error_text(resp)}")

    async def aclose(self) -> None:
        await self._http.aclose()
