"""Scenario 7: the gateway-cloud link cut and restored every few seconds for the whole run."""

from __future__ import annotations

import time

from citygate.chaos.harness import ChaosContext, Scenario


def _flapping_link(ctx: ChaosContext) -> None:
    node = ctx.start_system()
    ctx.start_standard_fleet()
    until = time.monotonic() + ctx.size(20.0, 300.0)
    cuts = 0
    while time.monotonic() < until:
        ctx.sleep(ctx.rng.uniform(0.5, 3.0))
        node.proxy.cut()
        cuts += 1
        ctx.sleep(ctx.rng.uniform(0.2, 2.0))
        node.proxy.restore()
    ctx.act(f"the gateway-cloud link cut {cuts} times (up 0.5-3 s, down 0.2-2 s)")
    ctx.audit_fleets()


SCENARIO = Scenario(
    7,
    "flapping-link",
    "A flapping link between gateway and cloud",
    "The link is cut and restored every few seconds for the whole run. Audit: nothing lost.",
    _flapping_link,
)
