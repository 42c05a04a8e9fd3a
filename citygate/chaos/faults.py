"""Faults (scenarios 1-9): processes killed, links cut, a database down, a full disk, clocks wrong.

Every scenario runs simulated devices with end-to-end confirmation (they keep a
reading until the gateway confirms the cloud stored it, and resend otherwise)
and ends with the audit: nothing lost, nothing duplicated, nothing unexpected.
The disk-full scenario is the exception by design: its devices do not confirm,
so what the overflow policy drops is really gone, and the audit must find
exactly as many readings lost as the agent counted as dropped.
"""

from __future__ import annotations

import sqlite3
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from citygate.certs.pki import CaName
from citygate.chaos.harness import ChaosContext, Scenario


def _default_fleet(ctx: ChaosContext, **kw: object) -> None:
    ctx.start_fleet(ctx.count(100, 1000), ctx.size(400.0, 3000.0), **kw)  # type: ignore[arg-type]


# -- 1 --------------------------------------------------------------------------------


def _agent_kill(ctx: ChaosContext) -> None:
    ctx.start_system()
    _default_fleet(ctx)
    kills = ctx.count(5, 25)
    for _ in range(kills):
        ctx.sleep(ctx.rng.uniform(0.3, 3.0))
        ctx.node.agent.kill()
        ctx.restart_agent()
    ctx.act(f"kill -9 of the agent {kills} times at random instants 0.3-3 s apart, restarted each time")
    ctx.sleep(2)
    ctx.audit_fleets()


# -- 2 --------------------------------------------------------------------------------


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
    _default_fleet(ctx, client="aiomqtt")  # the simulator's default client; the others use lite
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


# -- 3 --------------------------------------------------------------------------------


def _broker_restart(ctx: ChaosContext) -> None:
    node = ctx.start_system()
    _default_fleet(ctx)
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


# -- 4 --------------------------------------------------------------------------------


def _cloud_outage(ctx: ChaosContext) -> None:
    node = ctx.start_system()
    stack = ctx.stack
    assert stack is not None and stack.cloud is not None
    rate = ctx.size(400.0, 5000.0)
    ctx.start_fleet(ctx.count(100, 1000), rate)
    restarts = ctx.count(2, 5)
    for _ in range(restarts):
        ctx.sleep(ctx.rng.uniform(1.0, 3.0))
        stack.cloud.kill()
        ctx.sleep(ctx.rng.uniform(0.5, 3.0))
        stack.cloud.start(stack.cloud_listening, timeout=60)
    ctx.act(f"cloud service kill -9 and restart {restarts} times")
    backlog = ctx.count(5_000, 1_000_000)
    node.proxy.cut()
    t0 = time.monotonic()
    ctx.wait_for(
        lambda: int(ctx.health().get("outbox_depth", 0)) >= backlog,
        timeout=backlog / rate * 3 + 60,
        what=f"a backlog of {backlog:,} readings",
        every=1.0,
    )
    outage = time.monotonic() - t0
    peak = int(ctx.health().get("outbox_depth", 0))
    node.proxy.restore()
    ctx.act(f"cloud unreachable (link cut) for {outage:.0f} s, until {peak:,} readings were held")
    ctx.figure("backlog_readings", peak)
    drain = ctx.wait_for(
        lambda: int(ctx.health().get("outbox_depth", 0)) < rate,  # back to about a second of data
        timeout=600,
        what="the backlog drained",
        every=0.5,
    )
    ctx.act(f"link restored: backlog drained in {drain:.0f} s while the devices kept publishing")
    ctx.figure("drain_s", round(drain, 1))
    ctx.audit_fleets(drain_timeout=600)


# -- 5 --------------------------------------------------------------------------------


def _readyz(ctx: ChaosContext) -> int:
    stack = ctx.stack
    assert stack is not None and stack.pki is not None
    tls = ssl.create_default_context(cafile=str(stack.pki.ca_cert_path(CaName.INFRA)))
    try:
        with urllib.request.urlopen(f"{stack.cloud_url}/readyz", timeout=5, context=tls) as r:  # noqa: S310
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return 0


def _influx_down(ctx: ChaosContext) -> None:
    ctx.start_system()
    stack = ctx.stack
    assert stack is not None and stack.influx is not None
    _default_fleet(ctx)
    ctx.sleep(3)
    down = ctx.size(10.0, 180.0)
    out0 = int(ctx.health().get("readings_out", 0))
    stack.influx.stop()
    ctx.sleep(2)  # what was in flight settles
    out1 = int(ctx.health().get("readings_out", 0))
    depth1 = int(ctx.health().get("outbox_depth", 0))
    ready = _readyz(ctx)
    ctx.sleep(down - 2)
    h = ctx.health()
    ctx.check("cloud reports not ready while InfluxDB is down", ready == 503, f"GET /readyz -> {ready}")
    ctx.check(
        "gateway holds: nothing forwarded while the database is down",
        int(h.get("readings_out", 0)) == out1,
        f"readings_out {out0:,} -> {out1:,} -> {int(h.get('readings_out', 0)):,}",
    )
    ctx.check(
        "gateway holds: its outbox grows",
        int(h.get("outbox_depth", 0)) > depth1,
        f"outbox {depth1:,} -> {int(h.get('outbox_depth', 0)):,}",
    )
    stack.influx.start()
    ctx.act(f"InfluxDB stopped for {down:.0f} s mid-run, then started")
    ctx.check("cloud ready again", ctx.wait_for(lambda: _readyz(ctx) == 200, timeout=60, what="ready") >= 0)
    ctx.audit_fleets()


# -- 6 --------------------------------------------------------------------------------

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
        lambda: sum(int(v) for v in dict(ctx.health().get("dropped") or {}).values()) > 0,
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
    dropped = dict(ctx.health().get("dropped") or {})
    counted = sum(int(v) for v in dropped.values())
    ctx.figure("dropped_counted", counted)
    ctx.act(f"the agent counted drops: {dropped}")
    ctx.check("outbox drained after recovery", drained)
    # Slack: one batch. A batch the cloud stored but whose answer the cut swallowed stays in the
    # outbox, unconfirmed; the policy may drop it later and count it, though it was delivered.
    ctx.audit_fleets(expect_lost=counted, lost_slack=2000)


# -- 7 --------------------------------------------------------------------------------


def _flapping_link(ctx: ChaosContext) -> None:
    node = ctx.start_system()
    _default_fleet(ctx)
    until = time.monotonic() + ctx.size(20.0, 300.0)
    cuts = 0
    while time.monotonic() < until:
        ctx.sleep(ctx.rng.uniform(0.5, 3.0))
        node.proxy.cut()
        cuts += 1
        ctx.sleep(ctx.rng.uniform(0.2, 2.0))
        node.proxy.restore()
    ctx.act(f"the gateway-cloud link cut {cuts} times (up 0.5-3 s, down 0.2-2 s)")
    ctx.audit_fleets()


# -- 8 --------------------------------------------------------------------------------


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
    rejected = dict(ctx.health().get("rejected") or {})
    ahead, behind = int(rejected.get("timestamp_in_future", 0)), int(rejected.get("timestamp_too_old", 0))
    skewed_sent = int(dict(ctx.fleets[0].stats().get("faults") or {}).get("clock_skew", 0))
    ctx.check(
        "device clocks far off rejected by the gateway, each counted by reason",
        ahead > 0 and behind > 0 and ahead + behind == skewed_sent == 2 * skewed * per_device,
        f"timestamp_in_future {ahead} + timestamp_too_old {behind} of {skewed_sent} skewed readings sent",
    )
    ctx.audit_fleets()


# -- 9 --------------------------------------------------------------------------------


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


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        1,
        "agent-kill",
        "Gateway agent kill -9 at random instants during full-rate publishing",
        "The agent is killed (SIGKILL) at random instants and restarted; devices resend what was not "
        "confirmed. Audit: nothing lost, duplicated or unexpected.",
        _agent_kill,
    ),
    Scenario(
        2,
        "power-loss",
        "Power loss of the gateway (agent and broker killed together)",
        "Agent and Mosquitto are killed together; before each restart SQLite's integrity_check must say "
        "'ok' for the outbox as the crash left it. Audit: nothing lost.",
        _power_loss,
    ),
    Scenario(
        3,
        "broker-restart",
        "Mosquitto killed and restarted during publishing",
        "The broker is killed and restarted (and once restarted cleanly); the agent reconnects with its "
        "persistent session. Audit: nothing lost.",
        _broker_restart,
    ),
    Scenario(
        4,
        "cloud-outage",
        "Cloud service killed and restarted; cloud unreachable until a large backlog is held",
        "The cloud process is killed and restarted, then the link is cut until the outbox holds the "
        "target backlog (1M+ readings in the long run); after the restore the backlog drains while "
        "devices keep publishing. Audit: nothing lost.",
        _cloud_outage,
    ),
    Scenario(
        5,
        "influx-down",
        "InfluxDB stopped mid-run, then started",
        "With InfluxDB stopped the cloud reports 503 (readyz), the gateway forwards nothing and its outbox "
        "grows; after the start everything lands. Audit: nothing lost.",
        _influx_down,
    ),
    Scenario(
        6,
        "disk-full",
        "The gateway's disk fills up (a small filesystem for the outbox)",
        "The outbox lives on a small tmpfs filled from outside while the cloud is cut off: the "
        "drop_oldest policy holds the free-space floor, the agent keeps running, and recovers when space "
        "returns. Devices do not confirm here, so the audit's lost must equal the agent's drop counters "
        "exactly.",
        _disk_full,
    ),
    Scenario(
        7,
        "flapping-link",
        "A flapping link between gateway and cloud",
        "The link is cut and restored every few seconds for the whole run. Audit: nothing lost.",
        _flapping_link,
    ),
    Scenario(
        8,
        "clock-trouble",
        "Clock trouble: device clocks far ahead or behind",
        "Devices with clocks 1 h ahead and 40 days behind are rejected, each counted by reason, while "
        "good devices publish. Audit: nothing good lost, nothing bad stored. (The gateway's own clock "
        "jumping is covered by the TrustedClock unit tests, not here: see docs/RELIABILITY.md.)",
        _clock_trouble,
    ),
    Scenario(
        9,
        "reconnect-storm",
        "1,000 devices reconnecting at once after a broker restart",
        "The broker is killed under 1,000 connected devices and restarted: all reconnect (about one "
        "connection each, time measured), the broker stays up. Audit: nothing lost.",
        _reconnect_storm,
    ),
)
