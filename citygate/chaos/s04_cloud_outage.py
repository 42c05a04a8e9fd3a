"""Scenario 4: the cloud killed and restarted, then cut off until the gateway holds a large backlog."""

from __future__ import annotations

import time

from citygate.chaos.harness import ChaosContext, Scenario


def _cloud_outage(ctx: ChaosContext) -> None:
    node = ctx.start_system()
    stack = ctx.stack
    assert stack is not None and stack.cloud is not None
    rate = ctx.size(400.0, 5000.0)
    ctx.start_fleet(ctx.count(100, 1000), rate)
    restarts = ctx.count(2, 5)
    for _ in range(restarts):
        ctx.sleep(ctx.rng.uniform(1.0, 3.0))
        stack.cloud.kill()
        ctx.sleep(ctx.rng.uniform(0.5, 3.0))
        stack.cloud.start(stack.cloud_listening, timeout=60)
    ctx.act(f"cloud service kill -9 and restart {restarts} times")
    backlog = ctx.count(5_000, 1_000_000)
    node.proxy.cut()
    t0 = time.monotonic()
    ctx.wait_for(
        lambda: int(ctx.health().get("outbox_depth", 0)) >= backlog,
        timeout=backlog / rate * 3 + 60,
        what=f"a backlog of {backlog:,} readings",
        every=1.0,
    )
    outage = time.monotonic() - t0
    peak = int(ctx.health().get("outbox_depth", 0))
    node.proxy.restore()
    ctx.act(f"cloud unreachable (link cut) for {outage:.0f} s, until {peak:,} readings were held")
    ctx.figure("backlog_readings", peak)
    drain = ctx.wait_for(
        lambda: int(ctx.health().get("outbox_depth", 0)) < rate,  # back to about a second of data
        timeout=600,
        what="the backlog drained",
        every=0.5,
    )
    ctx.act(f"link restored: backlog drained in {drain:.0f} s while the devices kept publishing")
    ctx.figure("drain_s", round(drain, 1))
    ctx.audit_fleets(drain_timeout=600)


SCENARIO = Scenario(
    4,
    "cloud-outage",
    "Cloud service killed and restarted; cloud unreachable until a large backlog is held",
    "The cloud process is killed and restarted, then the link is cut until the outbox holds the "
    "target backlog (1M+ readings in the long run); after the restore the backlog drains while "
    "devices keep publishing. Audit: nothing lost.",
    _cloud_outage,
)
