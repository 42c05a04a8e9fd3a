"""Scenario 3: the gateway's Mosquitto killed and restarted during publishing."""

from __future__ import annotations

from citygate.chaos.harness import ChaosContext, Scenario


def _broker_restart(ctx: ChaosContext) -> None:
    node = ctx.start_system()
    ctx.start_standard_fleet()
    kills = ctx.count(2, 10)
    for _ in range(kills):
        ctx.sleep(ctx.rng.uniform(1.0, 4.0))
        node.broker.kill()
        ctx.sleep(ctx.rng.uniform(0.2, 2.0))
        node.broker.start()
    ctx.sleep(2)
    node.broker.restart()
    ctx.act(f"Mosquitto kill -9 and restart {kills} times during publishing, then one clean restart")
    ctx.check("agent survived the broker restarts", node.agent.running)
    ctx.sleep(3)
    ctx.audit_fleets()


SCENARIO = Scenario(
    3,
    "broker-restart",
    "Mosquitto killed and restarted during publishing",
    "The broker is killed and restarted (and once restarted cleanly); the agent reconnects with its "
    "persistent session. Audit: nothing lost.",
    _broker_restart,
)
