"""Each device's newest reading in a time window: one InfluxQL statement per profile.

The statement is ``latest_rows`` of :mod:`citygate.cloud.influxql` with an upper time bound
(the zoned export reads the state ``delay_s`` ago, not the newest), built from the same
escaped parts. It goes to InfluxDB through the read API's own client
(:class:`citygate.cloud.readclient.SeriesReader`: its own connection pool, the answer read in
chunks and cut at ``limit`` rows), so open data never takes the connections gateway writes
need and never holds more of an answer than it keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from citygate.cloud.influxql import ident
from citygate.cloud.readclient import SeriesReader
from citygate.cloud.reads import SeriesQuery


def latest_statement(measurement: str, *, since_ns: int, until_ns: int, limit: int) -> str:
    """The newest point per device in [since, until), all its columns, at most ``limit`` devices."""
    return (
        f"SELECT * FROM {ident(measurement)} WHERE time >= {int(since_ns)} AND time < {int(until_ns)} "  # noqa: S608 - quoted parts only
        f"GROUP BY {ident('device_id')} ORDER BY time DESC LIMIT 1 SLIMIT {int(limit)}"
    )


@dataclass(frozen=True, slots=True)
class LatestQuery(SeriesQuery):
    """A SeriesQuery whose statement is :func:`latest_statement`: one row per device series.

    SeriesReader takes SeriesQuery; this is how it runs another whitelisted statement with
    the same row cap and chunked reading.
    """

    statement: str = ""

    def influxql(self) -> str:
        return self.statement


@dataclass(frozen=True, slots=True)
class Latest:
    rows: Mapping[str, Mapping[str, Any]]  # device id -> columns (``time`` in epoch ns)
    truncated: bool  # more devices had points than ``limit``


async def read_latest(
    reader: SeriesReader, measurement: str, *, since_ns: int, until_ns: int, limit: int
) -> Latest:
    """Raises SinkUnavailable or QueryError, as every read does."""
    query = LatestQuery(
        measurement=measurement,
        fields=[],
        tag_filters={},
        start_ns=since_ns,
        end_ns=until_ns,
        aggregate=None,
        interval_s=None,
        group_by_device=False,  # series per device come tagged; no device column to split
        limit=limit,
        per_series=1,
        statement=latest_statement(measurement, since_ns=since_ns, until_ns=until_ns, limit=limit + 1),
    )
    got = await reader.read(query, epoch="ns", device_id=None)
    rows: dict[str, Mapping[str, Any]] = {}
    for device_id, columns, values in got.series:
        if device_id is not None and values:
            rows[device_id] = dict(zip(columns, values[0], strict=False))
    return Latest(rows, got.truncated)
