"""Scenario 15: the cloud learns of devices later than the gateway.

It refuses their readings ``unknown_device``; the gateway, which has already confirmed them to
their devices, must hold them, not dead-letter them, and deliver them when the cloud's inventory
(its ``contract_version``) changes."""

from __future__ import annotations

import math
import subprocess
import time

from citygate.chaos.harness import ChaosContext, Scenario
from citygate.chaos.health import tally
from citygate.contract.inventory import Inventory
from citygate.demo.stack import log_tail
from citygate.simulators import provision


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
        raise RuntimeError(f"provisioning the fleet failed ({rc}): {log_tail(work / 'sim.log')}")
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
        held = tally(ctx.health(), "held")
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
        not any("unknown_device" in k for k in tally(h, "rejected")),
        f"rejected {tally(h, 'rejected')}",
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
            lambda: sum(tally(ctx.health(), "held").values()) == 0,
            timeout=ctx.size(60, 300),
            what="held back to 0",
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
        f"held {tally(ctx.health(), 'held')}",
    )
    ctx.sleep(3)
    ctx.audit_fleets()
    h = ctx.health()
    ctx.check("held still 0 after the audit", sum(tally(h, "held").values()) == 0, f"held {tally(h, 'held')}")


SCENARIO = Scenario(
    15,
    "cloud-inventory-lag",
    "The cloud learns of devices later than the gateway",
    "The cloud reads its own inventory file, without 10 % of the fleet's devices; the gateway knows "
    "them all. While devices publish, the gateway must hold what the cloud refuses as unknown_device "
    "(health: held cloud_unknown_device > 0, none dead-lettered), readings it has already confirmed to "
    "their devices. When the cloud's file gets the missing devices, its contract_version changes and "
    "the gateway retries at once: held back to 0. Audit: nothing lost.",
    _cloud_inventory_lag,
)
