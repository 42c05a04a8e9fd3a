"""The read API's own InfluxQL client: a chunked ``/query``, taken a chunk at a time.

Why not the sink's ``query()``: that parses the whole answer in one ``orjson.loads``
on the event loop. For a 100,000-row answer that is 160-260 ms (measured here) during
which no gateway batch is answered, and a worker thread would not help: orjson holds
the GIL while it parses. Here InfluxDB sends the answer in chunks of ``CHUNK_ROWS``
rows (``chunked=true``), each chunk is parsed on its own (a few ms), the event loop
runs between chunks, and reading stops as soon as the answer holds
``max_query_points`` rows (:class:`citygate.cloud.reads.Collector`), so the cloud
never holds more of the database's answer than it will send.

Its own connection pool, apart from the sink's: reads never take the connections
that gateway writes need. A store that ignores ``chunked`` sends one document;
that is parsed whole, as before.
"""

from __future__ import annotations

from typing import Any, Final

import anyio
import httpx
import orjson

from citygate.cloud.influx_v1 import transport_error
from citygate.cloud.reads import Collected, Collector, SeriesQuery
from citygate.cloud.settings import CloudSettings
from citygate.cloud.sink import ErrorKind, classify_status
from citygate.errors import QueryError, SinkUnavailable

CHUNK_ROWS: Final = 2000


def _error_text(body: bytes) -> str:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode("utf-8", "replace")
    if isinstance(doc, dict):
        for key in ("error", "message"):
            if isinstance(doc.get(key), str):
                return str(doc[key])[:300]
    return body[:300].decode("utf-8", "replace")


class SeriesReader:
    """``GET /query?chunked=true`` against the configured store (v1: db/rp/basic auth; v2: bucket/token)."""

    def __init__(self, settings: CloudSettings, *, max_connections: int = 16) -> None:
        self._url = settings.influx_url.rstrip("/") + "/query"
        self._params: dict[str, str] = {"db": settings.write_database}
        auth: httpx.Auth | None = None
        headers: dict[str, str] = {}
        if settings.influx_api == "v2":
            assert settings.influx_token is not None
            headers["Authorization"] = f"Token {settings.influx_token.get_secret_value()}"
        else:
            if settings.influx_rp:
                self._params["rp"] = settings.influx_rp
            if settings.influx_user is not None and settings.influx_password is not None:
                auth = httpx.BasicAuth(settings.influx_user, settings.influx_password.get_secret_value())
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.influx_timeout_s),
            auth=auth,
            headers=headers,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            trust_env=False,  # no proxy from the environment between us and the database
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def read(self, query: SeriesQuery, *, epoch: str | None, device_id: str | None) -> Collected:
        """The answer, at most ``query.limit`` rows. Raises SinkUnavailable or QueryError, like the sink."""
        params = {**self._params, "q": query.influxql(), "chunked": "true", "chunk_size": str(CHUNK_ROWS)}
        if epoch:
            params["epoch"] = epoch
        collector = Collector(query, device_id)
        try:
            async with self._http.stream("GET", self._url, params=params) as resp:
                kind = classify_status(resp.status_code)
                if kind is not None:
                    text = _error_text(await resp.aread())
                    if kind is ErrorKind.BAD_POINT:
                        raise QueryError(text)
                    raise SinkUnavailable(kind, f"query answered HTTP {resp.status_code}: {text}")
                async for line in resp.aiter_lines():
                    if line.strip() and collector.add(_results(line)):
                        break  # full: the rest of the answer is not read
                    await anyio.sleep(0)  # let gateway batches in between chunks
        except httpx.TransportError as e:
            raise transport_error(e) from e
        return collector.done()


def _results(line: str) -> list[dict[str, Any]]:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise SinkUnavailable(ErrorKind.SERVER_ERROR, "query answer is not JSON") from e
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, list):
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            raise QueryError(doc["error"])
        raise SinkUnavailable(ErrorKind.SERVER_ERROR, "query answer has no results")
    for r in results:
        if isinstance(r, dict) and isinstance(r.get("error"), str):
            raise QueryError(r["error"])
    return results
