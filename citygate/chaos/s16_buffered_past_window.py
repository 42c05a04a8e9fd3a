"""Scenario 16: readings accepted close to the edge of the time window, then buffered through an
outage: the cloud must judge their age as of when the gateway received them (``received_ms``),
not as of their arrival."""

from __future__ import annotations

import math

from citygate.chaos.harness import ChaosContext, Scenario
from citygate.chaos.health import tally

DAY_S = 86400.0


def _buffered_past_window(ctx: ChaosContext) -> None:
    # Fast: the same situation at a smaller scale, a 600 s window on both sides instead of the
    # default 30 days; long: the default windows themselves.
    window = ctx.size(600.0, 30 * DAY_S)
    margin = ctx.size(20.0, 90.0)  # how far inside the gateway's window the skewed clocks are
    cut_s = ctx.size(40.0, 150.0)
    lead_s = ctx.size(3.0, 10.0)
    settings: dict[str, object] = {} if ctx.long else {"max_past_s": window}
    node = ctx.start_system(gateway_settings=settings, cloud_settings=settings)
    devices = ctx.count(100, 1000)
    rate = ctx.size(400.0, 3000.0)
    share = 0.2
    skewed = max(1, round(share * devices))
    skew = -(window - margin)
    # Every reading of the skewed devices, through the whole run (ramp, lead, cut, drain).
    per_device = math.ceil(rate / devices * (devices / 250 + lead_s + cut_s + 60))
    fleet = ctx.start_fleet(
        devices,
        rate,
        extra=["--fault", f"clock_skew:share={share},count={per_device},at=0,every=1,skew={skew:g}"],
    )
    ctx.act(
        f"{skewed} devices with clocks {window - margin:,.0f} s behind: {margin:.0f} s inside a "
        f"{window:,.0f} s window (gateway and cloud max_past_s"
        + (", the defaults)" if ctx.long else "; 30 days by default, smaller here to keep it short)")
    )
    ctx.sleep(lead_s)
    node.proxy.cut()
    ctx.sleep(cut_s)
    h = ctx.health()
    buffered = float(h.get("oldest_unsent_age_s") or 0.0)
    depth = int(h.get("outbox_depth", 0))
    node.proxy.restore()
    ctx.act(f"cloud link cut for {cut_s:.0f} s ({depth:,} readings buffered, the oldest {buffered:.0f} s)")
    ctx.figure("buffered_s", round(buffered, 1))
    ctx.figure("backlog_readings", depth)
    ctx.check(
        "buffered past the margin: judged by arrival, the oldest skewed readings would be too old",
        window - margin + buffered > window,
        f"skew {window - margin:,.0f} s + buffered {buffered:.0f} s > window {window:,.0f} s",
    )
    ctx.wait_for(
        lambda: int(ctx.health().get("outbox_depth", 0)) < rate,
        timeout=300,
        what="the backlog drained",
        every=0.5,
    )
    ctx.sleep(2)
    skewed_sent = int(dict(fleet.stats().get("faults") or {}).get("clock_skew", 0))
    ctx.figure("skewed_readings", skewed_sent)
    h = ctx.health()
    ctx.check(
        "the gateway took the skewed readings (inside its window)",
        skewed_sent > 0 and not any(k.startswith("timestamp_") for k in tally(h, "rejected")),
        f"{skewed_sent:,} skewed readings; rejected {tally(h, 'rejected')}",
    )
    ctx.audit_fleets()
    h = ctx.health()
    ctx.check(
        "nothing held: the cloud judged each reading as of its reception at the gateway",
        sum(tally(h, "held").values()) == 0,
        f"held {tally(h, 'held')}",
    )


SCENARIO = Scenario(
    16,
    "buffered-past-window",
    "Readings near the edge of the time window, buffered through an outage",
    "20 % of the devices have clocks just inside the gateway's max_past_s (20 s inside a 600 s window "
    "on both sides in the fast run, the same situation at a smaller scale; 90 s inside the default "
    "30 days in the long run); then the cloud link is cut for longer than that margin. The gateway "
    "takes them (none rejected), and the cloud must judge their age as of their received_ms, not of "
    "their arrival: nothing held. Audit: nothing lost.",
    _buffered_past_window,
)
