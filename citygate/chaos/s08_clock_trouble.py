"""Scenario 8: devices with clocks far ahead or behind, rejected and counted while good ones publish."""

from __future__ import annotations

from citygate.chaos.harness import ChaosContext, Scenario
from citygate.chaos.health import tally


def _clock_trouble(ctx: ChaosContext) -> None:
    node = ctx.start_system()
    devices = ctx.count(100, 1000)
    skewed = max(1, round(0.1 * devices))  # what share=0.1 picks
    per_device = 3
    ctx.start_fleet(
        devices,
        ctx.size(400.0, 3000.0),
        extra=[
            "--fault",
            f"clock_skew:share=0.1,count={per_device},skew=3600",
            "--fault",
            f"clock_skew:share=0.1,count={per_device},skew=-{40 * 86400}",
        ],
    )
    ctx.act(f"{skewed} devices with clocks 1 h ahead and {skewed} 40 days behind, {per_device} readings each")
    ctx.sleep(ctx.size(5.0, 30.0))
    ctx.check("agent keeps running", node.agent.running and bool(ctx.health().get("broker_connected")))
    ctx.stop_fleets()
    rejected = tally(ctx.health(), "rejected")
    ahead, behind = int(rejected.get("timestamp_in_future", 0)), int(rejected.get("timestamp_too_old", 0))
    skewed_sent = int(dict(ctx.fleets[0].stats().get("faults") or {}).get("clock_skew", 0))
    ctx.check(
        "device clocks far off rejected by the gateway, each counted by reason",
        ahead > 0 and behind > 0 and ahead + behind == skewed_sent == 2 * skewed * per_device,
        f"timestamp_in_future {ahead} + timestamp_too_old {behind} of {skewed_sent} skewed readings sent",
    )
    ctx.audit_fleets()


SCENARIO = Scenario(
    8,
    "clock-trouble",
    "Clock trouble: device clocks far ahead or behind",
    "Devices with clocks 1 h ahead and 40 days behind are rejected, each counted by reason, while "
    "good devices publish. Audit: nothing good lost, nothing bad stored. (The gateway's own clock "
    "jumping is covered by the TrustedClock unit tests, not here: see docs/RELIABILITY.md.)",
    _clock_trouble,
)
