"""Scenario 5: InfluxDB stopped mid-run: the cloud not ready, the gateway holding, then everything lands."""

from __future__ import annotations

import ssl

import httpx

from citygate.chaos.harness import ChaosContext, Scenario


def _readyz(ctx: ChaosContext) -> int:
    stack = ctx.stack
    assert stack is not None
    tls = ssl.create_default_context(cafile=str(ctx.infra_ca))
    try:
        return httpx.get(f"{stack.cloud_url}/readyz", timeout=5, verify=tls).status_code
    except (httpx.TransportError, OSError):
        return 0


def _influx_down(ctx: ChaosContext) -> None:
    ctx.start_system()
    stack = ctx.stack
    assert stack is not None and stack.influx is not None
    ctx.start_standard_fleet()
    ctx.sleep(3)
    down = ctx.size(10.0, 180.0)
    out0 = int(ctx.health().get("readings_out", 0))
    stack.influx.stop()
    ctx.sleep(2)  # what was in flight settles
    out1 = int(ctx.health().get("readings_out", 0))
    depth1 = int(ctx.health().get("outbox_depth", 0))
    ready = _readyz(ctx)
    ctx.sleep(down - 2)
    h = ctx.health()
    ctx.check("cloud reports not ready while InfluxDB is down", ready == 503, f"GET /readyz -> {ready}")
    ctx.check(
        "gateway holds: nothing forwarded while the database is down",
        int(h.get("readings_out", 0)) == out1,
        f"readings_out {out0:,} -> {out1:,} -> {int(h.get('readings_out', 0)):,}",
    )
    ctx.check(
        "gateway holds: its outbox grows",
        int(h.get("outbox_depth", 0)) > depth1,
        f"outbox {depth1:,} -> {int(h.get('outbox_depth', 0)):,}",
    )
    stack.influx.start()
    ctx.act(f"InfluxDB stopped for {down:.0f} s mid-run, then started")
    ctx.check("cloud ready again", ctx.wait_for(lambda: _readyz(ctx) == 200, timeout=60, what="ready") >= 0)
    ctx.audit_fleets()


SCENARIO = Scenario(
    5,
    "influx-down",
    "InfluxDB stopped mid-run, then started",
    "With InfluxDB stopped the cloud reports 503 (readyz), the gateway forwards nothing and its outbox "
    "grows; after the start everything lands. Audit: nothing lost.",
    _influx_down,
)
