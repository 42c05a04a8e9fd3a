"""The contract between gateway and cloud (scenarios 15-17): a reading the gateway confirmed is
never lost at the cloud's door.

The gateway confirms a reading to its device once it is durable in its outbox; from then on
the device has let it go, and only the gateway can still deliver it. Three ordinary situations
used to lose such readings, and each scenario here recreates one against the real system:

- 15: the cloud learns of devices later than the gateway (its own inventory file lacks them):
  it refuses their readings ``unknown_device``; the gateway must hold them, not dead-letter
  them, and deliver them when the cloud's inventory (its ``contract_version``) changes;
- 16: readings accepted close to the edge of the time window, then buffered through an outage:
  the cloud must judge their age as of when the gateway received them (``received_ms``), not
  as of their arrival;
- 17: devices that reboot (seq from 0 again, clock behind, among their earlier timestamps):
  the gateway's resend check must not take their new readings for resends of old ones.

Each ends with the simulator's audit: nothing lost, duplicated or unexpected. On the old
behaviour each loses readings (the audit's ``lost`` > 0).
"""

from __future__ import annotations

import math
import subprocess
import time
from typing import Any

from citygate.chaos.harness import ChaosContext, Scenario
from citygate.contract.inventory import Inventory
from citygate.simulators import provision
from citygate.simulators.ledger import STATE_EXPECTED, load

DAY_S = 86400.0


def _held(h: dict[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in dict(h.get("held") or {}).items()}


def _rejected(h: dict[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in dict(h.get("rejected") or {}).items()}


# -- 15 --------------------------------------------------------------------------------


def _provision(ctx: ChaosContext, devices: int) -> list[str]:
    """Issue the fleet's identities now, before it publishes: the fleet's own ``citygate sim run``
    command (same devices, same inventory records), run for no readings. Returns the device ids."""
    assert ctx.stack is not None
    work = ctx.dir / "provision"
    work.mkdir(parents=True, exist_ok=True)
    argv = ctx.stack.sim_command(
        ctx.node,
        devices=devices,
        rate=1.0,
        duration_s=1.0,
        ledger=work / "ledger.bin",
        extra=["--prefix", "sim", "--count", "0", "--drain", "0"],
    )
    with (work / "sim.log").open("ab") as log:
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, timeout=300, check=False)
    rc = done.returncode
    if rc != 0:
        tail = (work / "sim.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"provisioning the fleet failed ({rc}): {' | '.join(tail)}")
    return provision.device_ids("sim", devices)


def _cloud_inventory_lag(ctx: ChaosContext) -> None:
    own = ctx.dir / "cloud-inventory.json"
    ctx.start_system(cloud_inventory=own, cloud_settings={"inventory_reload_s": 1.0})
    stack = ctx.stack
    assert stack is not None and stack.pki is not None
    devices = ctx.count(100, 1000)
    rate = ctx.size(400.0, 3000.0)
    ids = _provision(ctx, devices)
    late = sorted(ctx.rng.sample(ids, max(1, round(0.1 * devices))))
    full = Inventory.load(stack.pki.inventory_path)
    lagging = full
    for device_id in late:
        lagging = lagging.without(device_id)
    lagging.save(own)
    ctx.act(
        f"the cloud reads its own inventory: the PKI's without {len(late)} of the {devices:,} devices "
        "(the gateway reads the PKI's, and knows them all)"
    )
    fleet = ctx.start_fleet(devices, rate)
    lag = ctx.size(20.0, 120.0)
    peak: dict[str, int] = {}
    peak_total = 0
    unconfirmed_at_peak = 0
    until = time.monotonic() + lag
    while time.monotonic() < until:
        ctx.sleep(0.5)
        held = _held(ctx.health())
        if sum(held.values()) >= peak_total:
            peak, peak_total = held, sum(held.values())
            st = fleet.stats()
            unconfirmed_at_peak = int(st.get("produced", 0)) - int(st.get("confirmed", 0))
    h = ctx.health()
    ctx.act(f"the fleet published for {lag:.0f} s while the cloud lacked {len(late)} devices")
    ctx.figure("held_peak", peak_total)
    ctx.figure("device_unconfirmed_at_held_peak", unconfirmed_at_peak)
    ctx.check(
        "gateway holds the readings the cloud refuses as unknown_device",
        peak.get("cloud_unknown_device", 0) > 0 and set(peak) == {"cloud_unknown_device"},
        f"held peak {peak}",
    )
    ctx.check(
        "nothing dead-lettered for it",
        not any("unknown_device" in k for k in _rejected(h)),
        f"rejected {_rejected(h)}",
    )
    ctx.check(
        "held readings were already confirmed to their devices (only the gateway has them)",
        unconfirmed_at_peak < peak_total,
        f"devices hold {unconfirmed_at_peak:,} unconfirmed readings, the gateway {peak_total:,} held",
    )
    full.save(own)
    t0 = time.monotonic()
    try:
        released = ctx.wait_for(
            lambda: sum(_held(ctx.health()).values()) == 0, timeout=ctx.size(60, 300), what="held back to 0"
        )
    except TimeoutError:
        released = math.inf
    ctx.act(
        "the cloud's inventory file replaced by the full one: "
        + (f"held back to 0 {released:.1f} s later" if math.isfinite(released) else "held readings stayed")
    )
    ctx.figure("held_released_s", round(time.monotonic() - t0, 1))
    ctx.check(
        "held readings delivered once the cloud knows the devices (contract_version changed)",
        math.isfinite(released),
        f"held {_held(ctx.health())}",
    )
    ctx.sleep(3)
    ctx.audit_fleets()
    h = ctx.health()
    ctx.check("held still 0 after the audit", sum(_held(h).values()) == 0, f"held {_held(h)}")


# -- 16 --------------------------------------------------------------------------------


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
        skewed_sent > 0 and not any(k.startswith("timestamp_") for k in _rejected(h)),
        f"{skewed_sent:,} skewed readings; rejected {_rejected(h)}",
    )
    ctx.audit_fleets()
    h = ctx.health()
    ctx.check(
        "nothing held: the cloud judged each reading as of its reception at the gateway",
        sum(_held(h).values()) == 0,
        f"held {_held(h)}",
    )


# -- 17 --------------------------------------------------------------------------------


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


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        15,
        "cloud-inventory-lag",
        "The cloud learns of devices later than the gateway",
        "The cloud reads its own inventory file, without 10 % of the fleet's devices; the gateway knows "
        "them all. While devices publish, the gateway must hold what the cloud refuses as unknown_device "
        "(health: held cloud_unknown_device > 0, none dead-lettered), readings it has already confirmed to "
        "their devices. When the cloud's file gets the missing devices, its contract_version changes and "
        "the gateway retries at once: held back to 0. Audit: nothing lost.",
        _cloud_inventory_lag,
    ),
    Scenario(
        16,
        "buffered-past-window",
        "Readings near the edge of the time window, buffered through an outage",
        "20 % of the devices have clocks just inside the gateway's max_past_s (20 s inside a 600 s window "
        "on both sides in the fast run, the same situation at a smaller scale; 90 s inside the default "
        "30 days in the long run); then the cloud link is cut for longer than that margin. The gateway "
        "takes them (none rejected), and the cloud must judge their age as of their received_ms, not of "
        "their arrival: nothing held. Audit: nothing lost.",
        _buffered_past_window,
    ),
    Scenario(
        17,
        "device-reboot",
        "Devices reboot: seq from 0 again, clock behind, among their earlier timestamps",
        "10 % of the devices reboot (the simulator's reboot fault): what they held unconfirmed is gone "
        "(counted as dropped), their seq starts at 0 again and their clock comes back behind, so new "
        "readings reuse old seqs with timestamps among the old ones (counted: readings_among_old > 0). "
        "The gateway's resend check must not take them for resends. Audit, per boot: nothing lost.",
        _device_reboot,
    ),
)
