"""Scenario 1: the gateway agent killed (SIGKILL) at random instants while the devices publish."""

from __future__ import annotations

from citygate.chaos.harness import ChaosContext, Scenario


def _agent_kill(ctx: ChaosContext) -> None:
    ctx.start_system()
    ctx.start_standard_fleet()
    kills = ctx.count(5, 25)
    for _ in range(kills):
        ctx.sleep(ctx.rng.uniform(0.3, 3.0))
        ctx.node.agent.kill()
        ctx.restart_agent()
    ctx.act(f"kill -9 of the agent {kills} times at random instants 0.3-3 s apart, restarted each time")
    ctx.sleep(2)
    ctx.audit_fleets()


SCENARIO = Scenario(
    1,
    "agent-kill",
    "Gateway agent kill -9 at random instants during full-rate publishing",
    "The agent is killed (SIGKILL) at random instants and restarted; devices resend what was not "
    "confirmed. Audit: nothing lost, duplicated or unexpected.",
    _agent_kill,
)
