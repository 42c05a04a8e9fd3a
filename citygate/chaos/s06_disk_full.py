"""Scenario 6: the gateway's disk fills up.

The exception to "nothing lost" by design: these devices do not confirm, so what the
overflow policy drops is really gone, and the audit must find exactly as many readings lost as
the agent counted as dropped."""

from __future__ import annotations

import subprocess

import psutil

from citygate.chaos.harness import ChaosContext, Scenario
from citygate.chaos.health import tally

_MB = 1024 * 1024


def _disk_full(ctx: ChaosContext) -> None:
    fs = ctx.dir / "outbox-fs"
    fs.mkdir(parents=True, exist_ok=True)
    size_mb = ctx.count(32, 128)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(fs)],
        check=True,
        capture_output=True,
    )

    def unmount() -> None:
        subprocess.run(["umount", "-l", str(fs)], check=False, capture_output=True)

    ctx.on_cleanup(unmount)
    min_free = 4 * _MB
    node = ctx.start_system(
        gateway_settings={
            "state_dir": str(fs / "state"),
            "outbox_min_free_disk_bytes": min_free,
            "overflow_policy": "drop_oldest",
        }
    )
    ctx.act(f"the outbox on its own {size_mb} MB filesystem (tmpfs), policy drop_oldest, min free 4 MB")
    pid = node.agent.pid
    # Devices that do not confirm: what the policy drops is gone, and must be counted exactly.
    ctx.start_fleet(ctx.count(100, 1000), ctx.size(1000.0, 4000.0), extra=["--no-confirm"])
    ctx.sleep(2)
    node.proxy.cut()
    # Fill the filesystem from outside until about 3 MB above the agent's floor are left.
    ballast = fs / "ballast"
    with ballast.open("wb") as f:
        free = psutil.disk_usage(str(fs)).free
        f.write(b"\0" * max(0, free - min_free - 3 * _MB))
    ctx.act("cloud link cut; the filesystem filled up from outside to 3 MB above the floor")
    ctx.wait_for(
        lambda: sum(tally(ctx.health(), "dropped").values()) > 0,
        timeout=ctx.size(60, 300),
        what="the overflow policy engaged",
        every=0.5,
    )
    ctx.sleep(ctx.size(5.0, 60.0))
    h = ctx.health()
    ctx.check("agent keeps running with the disk full", node.agent.pid == pid and bool(h), f"pid {pid}")
    ctx.check(
        "free disk kept near the floor",
        int(h.get("disk_free_bytes", 0)) >= min_free // 2,
        f"free {int(h.get('disk_free_bytes', 0)) / _MB:.1f} MB",
    )
    ballast.unlink()
    node.proxy.restore()
    ctx.act("space returned (ballast deleted) and the link restored")
    in_before = int(ctx.health().get("readings_in", 0))
    ctx.sleep(3)
    ctx.check("agent recovered: new readings flow in", int(ctx.health().get("readings_in", 0)) > in_before)
    ctx.stop_fleets()
    drained = ctx.stack.wait_drained(300) if ctx.stack else False
    dropped = tally(ctx.health(), "dropped")
    counted = sum(dropped.values())
    ctx.figure("dropped_counted", counted)
    ctx.act(f"the agent counted drops: {dropped}")
    ctx.check("outbox drained after recovery", drained)
    # Slack: one batch. A batch the cloud stored but whose answer the cut swallowed stays in the
    # outbox, unconfirmed; the policy may drop it later and count it, though it was delivered.
    ctx.audit_fleets(expect_lost=counted, lost_slack=2000)


SCENARIO = Scenario(
    6,
    "disk-full",
    "The gateway's disk fills up (a small filesystem for the outbox)",
    "The outbox lives on a small tmpfs filled from outside while the cloud is cut off: the "
    "drop_oldest policy holds the free-space floor, the agent keeps running, and recovers when space "
    "returns. Devices do not confirm here, so the audit's lost must equal the agent's drop counters "
    "exactly.",
    _disk_full,
)
