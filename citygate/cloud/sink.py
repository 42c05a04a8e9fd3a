"""The database sink: what the ingest path needs from InfluxDB, whatever its API generation.

:mod:`citygate.cloud.influx_v1` and :mod:`citygate.cloud.influx_v2` are the
only modules that talk to the database; this one holds their common parts:
the error classification and the narrowing-down of a refused write.

Classification (docs/ARCHITECTURE.md, guarantees 1 and 4):

* *retryable* -- connection refused/reset, timeouts, 5xx, 429, and also 401/403
  and "database not found" (a configuration fault the operator must fix; the
  data is good and the gateways hold it meanwhile) -> :class:`SinkUnavailable`
  -> 503 with ``Retry-After``;
* *bad point* -- 400/422 (parse error, field type conflict, beyond retention):
  the batch is split in halves until each refused line is alone; the good
  lines are written (re-writing a point is idempotent) and the refused ones
  are reported per reading as ``write_rejected``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class ErrorKind(StrEnum):
    CONNECTION = "connection"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    THROTTLED = "throttled"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    BAD_POINT = "bad_point"
    TOO_LARGE = "too_large"


RETRYABLE_KINDS = frozenset(
    {
        ErrorKind.CONNECTION,
        ErrorKind.TIMEOUT,
        ErrorKind.SERVER_ERROR,
        ErrorKind.THROTTLED,
        ErrorKind.AUTH,
        ErrorKind.NOT_FOUND,
    }
)


@dataclass(frozen=True, slots=True)
class Refused:
    """A write answered with a client error: some line in the body is bad (or the body too large)."""

    kind: ErrorKind  # BAD_POINT or TOO_LARGE
    detail: str


# One write request: None when the database confirmed it, Refused for a 4xx on the
# data; raises SinkUnavailable for everything retryable.
RawWrite = Callable[[bytes], Awaitable[Refused | None]]

# Cap on write requests spent narrowing down one refused batch; past it the
# remaining undecided lines are reported as refused rather than looping.
MAX_NARROWING_REQUESTS = 256


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What the database confirmed: every line except ``refused`` (index -> detail)."""

    refused: dict[int, str]
    requests: int


async def write_narrowing(raw: RawWrite, lines: Sequence[str]) -> WriteReport:
    """Write ``lines``; on a refusal, split until each refused line is isolated."""
    refused: dict[int, str] = {}
    requests = 0

    async def go(lo: int, hi: int) -> None:
        nonlocal requests
        requests += 1
        result = await raw("\n".join(lines[lo:hi]).encode())
        if result is None:
            return
        if hi - lo == 1:
            refused[lo] = result.detail[:300]
            return
        if requests >= MAX_NARROWING_REQUESTS:
            for i in range(lo, hi):
                refused[i] = f"refused in a batch that could not be narrowed down: {result.detail[:200]}"
            return
        mid = (lo + hi) // 2
        await go(lo, mid)
        await go(mid, hi)

    if lines:
        await go(0, len(lines))
    return WriteReport(refused=refused, requests=requests)


def classify_status(status: int) -> ErrorKind | None:
    """The kind of an HTTP status from a write; None for success."""
    if 200 <= status < 300:
        return None
    if status in (400, 422):
        return ErrorKind.BAD_POINT
    if status == 413:
        return ErrorKind.TOO_LARGE
    if status in (401, 403):
        return ErrorKind.AUTH
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status == 429:
        return ErrorKind.THROTTLED
    return ErrorKind.SERVER_ERROR


class Sink(Protocol):
    """The database as the service sees it."""

    @property
    def target(self) -> str: ...

    async def write_lines(self, lines: Sequence[str]) -> WriteReport:
        """Write synchronously; raises SinkUnavailable unless the database confirmed every good line."""
        ...

    async def query(self, q: str, *, epoch: str | None = None) -> list[dict[str, Any]]:
        """Run InfluxQL; the ``results`` list. Raises SinkUnavailable, QueryError."""
        ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...
