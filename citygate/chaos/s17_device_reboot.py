"""Scenario 17: devices reboot (seq from 0 again, clock behind, among their earlier timestamps):
the gateway's resend check must not take their new readings for resends of old ones."""

from __future__ import annotations

from citygate.chaos.harness import ChaosContext, Scenario
from citygate.simulators.ledger import STATE_EXPECTED, load


def _among_old(ctx: ChaosContext) -> int:
    """Readings of later boots that a resend check on (seq range, timestamp span) would have
    taken for resends: a seq the first boot used, a timestamp within the first boot's span."""
    n = 0
    for f in ctx.fleets:
        for e in load(f.ledger).entries.values():
            if len(e.segments) < 2:
                continue
            first = e.segments[0]
            stamps = e.ts_ms[first.offset : first.offset + first.size]
            lo, hi = min(stamps), max(stamps)
            for g in e.segments[1:]:
                for k in range(g.size):
                    i = g.offset + k
                    seq = g.base + k
                    if (
                        e.state[i] == STATE_EXPECTED
                        and first.base <= seq < first.base + first.size
                        and lo <= e.ts_ms[i] <= hi
                    ):
                        n += 1
    return n


def _device_reboot(ctx: ChaosContext) -> None:
    ctx.start_system()
    devices = ctx.count(100, 1000)
    rate = ctx.size(400.0, 3000.0)
    share = 0.1
    rebooted = max(1, round(share * devices))
    count = ctx.count(1, 2)
    at, every, behind = ctx.size(12.0, 40.0), ctx.size(10.0, 60.0), ctx.size(6.0, 20.0)
    fleet = ctx.start_fleet(
        devices,
        rate,
        extra=[
            "--fault",
            f"reboot:share={share},count={count},at={at:g},every={every:g},behind={behind:g},down=1",
        ],
    )
    ctx.act(
        f"{rebooted} devices reboot {count} time(s) from {at:.0f} s on: seq from 0 again, clock "
        f"{behind:.0f} s behind each time, down 1 s"
    )
    last = at + (count - 1) * every
    ctx.sleep(last + 1 + behind + ctx.size(6.0, 30.0))  # the new clocks pass the old readings, and more
    faults = dict(fleet.stats().get("faults") or {})
    ctx.check(
        "every planned reboot happened",
        int(faults.get("reboot", 0)) == rebooted * count,
        f"{int(faults.get('reboot', 0))} of {rebooted * count}",
    )
    ctx.audit_fleets()
    among = _among_old(ctx)
    ctx.figure("readings_among_old", among)
    ctx.figure("dropped_at_reboot", ctx.result.audit.get("dropped", 0))
    ctx.check(
        "rebooted devices sent new readings under old seqs, timestamps among the old ones",
        among > 0,
        f"{among:,} such readings (each would have been taken for a resend: confirmed, never stored)",
    )


SCENARIO = Scenario(
    17,
    "device-reboot",
    "Devices reboot: seq from 0 again, clock behind, among their earlier timestamps",
    "10 % of the devices reboot (the simulator's reboot fault): what they held unconfirmed is gone "
    "(counted as dropped), their seq starts at 0 again and their clock comes back behind, so new "
    "readings reuse old seqs with timestamps among the old ones (counted: readings_among_old > 0). "
    "The gateway's resend check must not take them for resends. Audit, per boot: nothing lost.",
    _device_reboot,
)
