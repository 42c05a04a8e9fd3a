"""Scenario 2: power loss of the gateway, agent and broker killed together; the outbox must
survive intact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from citygate.chaos.harness import ChaosContext, Scenario


def _integrity(db: Path) -> str:
    """What SQLite says about the outbox file as the power loss left it (WAL recovered on open)."""
    con = sqlite3.connect(db, timeout=10)
    try:
        rows = con.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)
    finally:
        con.close()


def _power_loss(ctx: ChaosContext) -> None:
    node = ctx.start_system()
    db = node.config_path.parent / "state" / "outbox.db"
    ctx.start_standard_fleet(client="aiomqtt")  # the simulator's default client; the others use lite
    losses = ctx.count(3, 20)
    verdicts = []
    for _ in range(losses):
        ctx.sleep(ctx.rng.uniform(0.5, 3.0))
        node.agent.kill()
        node.broker.kill()
        verdicts.append(_integrity(db))
        node.broker.start()
        ctx.restart_agent()
    ctx.act(
        f"power loss {losses} times: kill -9 of agent and broker together, outbox checked "
        "(PRAGMA integrity_check) before the restart"
    )
    bad = [v for v in verdicts if v != "ok"]
    ctx.check("outbox intact after every power loss", not bad, f"{len(verdicts)} checks, bad: {bad[:3]}")
    ctx.sleep(2)
    ctx.audit_fleets()


SCENARIO = Scenario(
    2,
    "power-loss",
    "Power loss of the gateway (agent and broker killed together)",
    "Agent and Mosquitto are killed together; before each restart SQLite's integrity_check must say "
    "'ok' for the outbox as the crash left it. Audit: nothing lost.",
    _power_loss,
)
