"""The chaos harness: the real system, simulated devices with a ledger, actions, checks and the audit.

A scenario is a function ``(ctx) -> None`` that starts what it needs through
its :class:`ChaosContext` (the demo's :class:`~citygate.demo.stack.DemoStack`:
PKI, InfluxDB, the cloud, a gateway with its Mosquitto, a link cutter), runs
simulated devices that keep a ledger, breaks things, records what it did with
:meth:`ChaosContext.act` and what it verified with :meth:`ChaosContext.check`.
At the end :meth:`ChaosContext.audit_fleets` drains the system and lets the
simulator's audit judge: expected, stored, lost, duplicated, unexpected.

One scenario body serves the fast CI case and the long run: sizes come from
:meth:`ChaosContext.size`, which returns the fast or the long number.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from citygate.certs.pki import CaName, Pki
from citygate.chaos.health import tally
from citygate.demo.run import audit_ledger
from citygate.demo.stack import DemoOptions, DemoStack, FleetProcess, GatewayNode, SimRun, stop_fleets

AUDIT_KEYS = ("expected", "stored", "lost", "duplicated", "unexpected", "dropped")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class ScenarioResult:
    number: int
    name: str
    title: str
    long: bool
    actions: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    audit: dict[str, int] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "title": self.title,
            "mode": "long" if self.long else "fast",
            "passed": self.passed,
            "seconds": round(self.seconds, 1),
            "actions": self.actions,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "audit": self.audit,
            "figures": self.figures,
            "error": self.error,
        }

    def describe(self) -> str:
        lines = [f"[{'PASS' if self.passed else 'FAIL'}] {self.number}. {self.title} ({self.seconds:.0f} s)"]
        lines += [f"    did: {a}" for a in self.actions]
        lines += [
            f"    {'ok  ' if c.ok else 'FAIL'} {c.name}{': ' + c.detail if c.detail else ''}"
            for c in self.checks
        ]
        if self.audit:
            lines.append("    audit: " + ", ".join(f"{k} {self.audit.get(k, 0):,}" for k in AUDIT_KEYS))
        if self.error:
            lines.append(f"    error: {self.error}")
        return "\n".join(lines)


@dataclass(frozen=True)
class DemoServiceOptions:
    """The service layer in a chaos run: its store, the city's rules, more subscriptions."""

    store_url: str | None = None
    rules_dir: Path | None = None
    subscriptions: tuple[dict[str, object], ...] = ()


class ChaosContext:
    """What a scenario works with; owns every process it starts."""

    def __init__(self, directory: Path, *, long: bool, seed: int, result: ScenarioResult) -> None:
        self.dir = directory
        self.long = long
        self.rng = random.Random(seed)  # noqa: S311 - fault timing, not secrets
        self.result = result
        self.stack: DemoStack | None = None
        self.fleets: list[FleetProcess] = []
        self._cleanups: list[Callable[[], None]] = []

    # -- sizes and records -------------------------------------------------------

    def size(self, fast: float, long: float) -> float:
        return long if self.long else fast

    def count(self, fast: int, long: int) -> int:
        return long if self.long else fast

    def act(self, what: str) -> None:
        self.result.actions.append(what)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.result.checks.append(Check(name, bool(ok), detail))
        return ok

    def figure(self, name: str, value: float) -> None:
        self.result.figures[name] = value

    def on_cleanup(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    # -- the system ---------------------------------------------------------------

    def start_system(
        self,
        *,
        gateway_settings: dict[str, object] | None = None,
        agent_env: dict[str, str] | None = None,
        cloud_settings: dict[str, object] | None = None,
        cloud_inventory: Path | None = None,
        service: DemoServiceOptions | None = None,
    ) -> GatewayNode:
        """PKI, InfluxDB, the cloud and one gateway (Mosquitto + agent behind a link cutter).

        ``cloud_inventory``: the cloud reads its own inventory file there (a copy of the PKI's
        as the cloud starts), which the scenario may change; the gateway reads the PKI's."""
        self.stack = DemoStack(
            DemoOptions(
                directory=self.dir / "stack",
                gateways=1,
                gateway_settings=gateway_settings or {},
                agent_env=agent_env or {},
                cloud_settings=cloud_settings or {},
                cloud_inventory=cloud_inventory,
                service=service is not None,
                service_store_url=service.store_url if service else None,
                service_rules_dir=service.rules_dir if service else None,
                service_subscriptions=list(service.subscriptions) if service else [],
            )
        )
        self.stack.start_infrastructure()
        return self.stack.nodes[0]

    @property
    def node(self) -> GatewayNode:
        assert self.stack is not None and self.stack.nodes, "start_system() first"
        return self.stack.nodes[0]

    @property
    def pki(self) -> Pki:
        assert self.stack is not None and self.stack.pki is not None, "start_system() first"
        return self.stack.pki

    @property
    def infra_ca(self) -> Path:
        """The CA every TLS client here verifies the broker and the cloud with."""
        return self.pki.ca_cert_path(CaName.INFRA)

    def health(self) -> dict[str, Any]:
        return dict(self.node.health() or {})

    def restart_agent(self, timeout: float = 60.0) -> None:
        node = self.node
        node.agent.start(lambda: node.health() is not None, timeout=timeout)

    def start_fleet(
        self,
        devices: int,
        rate: float,
        *,
        name: str = "fleet",
        prefix: str = "sim",
        duration_s: float = 7200.0,
        client: str = "lite",
        extra: Sequence[str] = (),
        wait_connected: bool = True,
    ) -> FleetProcess:
        """Simulated devices with end-to-end confirmation and a ledger, publishing until stopped."""
        assert self.stack is not None
        run = SimRun(
            devices,
            duration_s,
            rate=rate,
            client=client,
            prefix=prefix,
            extra=("--resend-after", "3", "--drain", "120", *extra),
        )
        fleet = self.stack.start_fleet(self.node, run, self.dir / name, name=name, stats=True)
        self.fleets.append(fleet)
        self.act(f"{devices:,} simulated devices ({client}) publishing {rate:,.0f} readings/s")
        if wait_connected:

            def connected() -> bool:
                if (note := fleet.exit_note()) is not None:
                    raise RuntimeError(note)
                return int(fleet.stats().get("connected", 0)) >= devices

            self.wait_for(
                connected,
                timeout=max(60.0, devices / 20),
                what=f"{devices} devices connected",
            )
        return fleet

    def start_standard_fleet(self, *, client: str = "lite") -> FleetProcess:
        """The fleet most faults strike under: 100 devices at 400 readings/s (long: 1,000 at 3,000/s)."""
        return self.start_fleet(self.count(100, 1000), self.size(400.0, 3000.0), client=client)

    def wait_for(self, cond: Callable[[], bool], *, timeout: float, what: str, every: float = 0.25) -> float:
        """Seconds until ``cond()`` holds; raises TimeoutError naming ``what``."""
        t0 = time.monotonic()
        while not cond():
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"{what}: not within {timeout:.0f} s")
            time.sleep(every)
        return time.monotonic() - t0

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    # -- the judge ------------------------------------------------------------------

    def stop_fleets(self, timeout: float = 180.0) -> None:
        """SIGINT: the devices stop producing and wait for the confirmations of what they hold."""
        for f in stop_fleets(self.fleets, timeout):
            self.check(f"{f.name}: simulator stopped", False, f"no exit within {timeout:.0f} s")

    def audit_fleets(
        self, *, drain_timeout: float = 300.0, expect_lost: int = 0, lost_slack: int = 0
    ) -> dict[str, int]:
        """Stop the devices, let the gateway drain, audit every ledger; checks
        ``expect_lost - lost_slack <= lost <= expect_lost`` (0 for every fault but a full disk)."""
        assert self.stack is not None and self.stack.influx is not None
        self.stop_fleets()
        drained = self.stack.wait_drained(drain_timeout)
        # Held readings (refused by the cloud for a reason the gateway does not share) are not in
        # the outbox's depth: named here, they explain a loss the audit is about to report.
        held: dict[str, int] = {}
        for n in self.stack.nodes:
            held.update(tally(n.health() or {}, "held"))
        self.check("gateway outbox drained", drained, f"held at the gateway: {held}" if held else "")
        time.sleep(1.0)
        total = dict.fromkeys(AUDIT_KEYS, 0)
        for f in self.fleets:
            a = audit_ledger(self.stack.influx.url, f.ledger)
            if "error" in a:
                self.check(f"{f.name}: audit ran", False, str(a["error"]))
                continue
            for k in AUDIT_KEYS:
                v = a.get(k, 0)
                total[k] += int(v) if isinstance(v, int | float) else 0
        self.result.audit = total
        self.check("readings produced", total["expected"] > 0, f"{total['expected']:,} expected")
        lost = total["lost"]
        self.check(
            "nothing lost" if expect_lost == 0 else "lost == counted drops (less at most the slack)",
            expect_lost - lost_slack <= lost <= expect_lost,
            f"lost {lost:,}" + (f", counted {expect_lost:,}, slack {lost_slack:,}" if expect_lost else ""),
        )
        self.check("nothing duplicated", total["duplicated"] == 0, f"duplicated {total['duplicated']:,}")
        self.check(
            "nothing unexpected stored", total["unexpected"] == 0, f"unexpected {total['unexpected']:,}"
        )
        return total

    def close(self) -> None:
        for f in self.fleets:
            f.kill()
        for fn in reversed(self._cleanups):
            try:
                fn()
            except OSError as e:  # cleanup must not hide the scenario's own outcome
                self.result.actions.append(f"cleanup failed: {e}")
        if self.stack is not None:
            self.stack.stop()


@dataclass(frozen=True, slots=True)
class Scenario:
    number: int
    name: str
    title: str
    checks: str  # what it checks, in words (docs/RELIABILITY.md)
    body: Callable[[ChaosContext], None]


def run_scenario(sc: Scenario, directory: Path, *, long: bool, seed: int = 1) -> ScenarioResult:
    """Run one scenario in ``directory``; never raises for the scenario's own failures."""
    result = ScenarioResult(sc.number, sc.name, sc.title, long)
    directory.mkdir(parents=True, exist_ok=True)
    ctx = ChaosContext(directory, long=long, seed=seed, result=result)
    t0 = time.monotonic()
    try:
        sc.body(ctx)
    except (AssertionError, TimeoutError, OSError, RuntimeError, ValueError, KeyError) as e:
        result.error = f"{type(e).__name__}: {e}"
        tail = traceback.format_exc().strip().splitlines()[-6:]
        result.actions.append("traceback: " + " | ".join(line.strip() for line in tail))
    finally:
        ctx.close()
        result.seconds = time.monotonic() - t0
    return result
