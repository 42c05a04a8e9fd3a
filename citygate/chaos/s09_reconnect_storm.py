"""Scenario 9: 1,000 devices reconnecting at once after a broker restart."""

from __future__ import annotations

from citygate.chaos.harness import ChaosContext, Scenario


def _reconnect_storm(ctx: ChaosContext) -> None:
    node = ctx.start_system()
    devices = ctx.count(1000, 1000)
    fleet = ctx.start_fleet(devices, ctx.size(500.0, 2000.0), extra=["--connect-concurrency", "16"])
    restarts = ctx.count(1, 5)
    worst = 0.0
    for _ in range(restarts):
        ctx.sleep(ctx.size(2.0, 10.0))
        before = int(fleet.stats().get("connects", 0))
        node.broker.kill()
        ctx.sleep(1.0)
        node.broker.start()
        broker_pid = node.broker.process.pid
        took = ctx.wait_for(
            lambda: int(fleet.stats().get("connected", 0)) >= devices,
            timeout=180,
            what=f"all {devices} devices reconnected",
            every=0.5,
        )
        worst = max(worst, took)
        connects = int(fleet.stats().get("connects", 0)) - before
        ctx.check(
            "every device back, about one connection each",
            connects <= devices * 2,
            f"{connects:,} connections for {devices:,} devices in {took:.1f} s",
        )
        ctx.check(
            "broker took the storm (the same process, still running)",
            broker_pid is not None and node.broker.process.pid == broker_pid and node.broker.process.running,
        )
    ctx.act(f"Mosquitto kill -9 and restart {restarts} time(s) under {devices:,} connected devices")
    ctx.figure("reconnect_all_s", round(worst, 1))
    ctx.audit_fleets()


SCENARIO = Scenario(
    9,
    "reconnect-storm",
    "1,000 devices reconnecting at once after a broker restart",
    "The broker is killed under 1,000 connected devices and restarted: all reconnect (about one "
    "connection each, time measured), the broker stays up. Audit: nothing lost.",
    _reconnect_storm,
)
