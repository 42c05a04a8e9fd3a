"""What InfluxDB holds of one device, read back by a scenario."""

from __future__ import annotations

from citygate.chaos.harness import ChaosContext


def stored_seqs(ctx: ChaosContext, measurement: str, device_id: str) -> list[int]:
    """The seq of every point of ``device_id`` in ``measurement`` (a seq stored twice appears twice)."""
    assert ctx.stack is not None and ctx.stack.influx is not None
    q = f'SELECT "seq" FROM "{measurement}" WHERE "device_id" = \'{device_id}\''  # noqa: S608 - our own ids
    doc = ctx.stack.influx.query(q, db="citygate")
    out: list[int] = []
    results = doc.get("results")
    for res in results if isinstance(results, list) else []:
        for series in res.get("series") or []:
            out += [int(row[1]) for row in series.get("values") or [] if row[1] is not None]
    return out
