"""Fast chaos: the whole real system under faults, judged by the simulator's ledger and audit.

Devices (citygate sim, end-to-end confirmation on) -> Mosquitto -> agent ->
cloud -> InfluxDB, all real processes. During publishing the agent is killed
(kill -9) several times and the broker once, and the gateway's link to the
cloud is cut. Then the devices stop, the gateway drains, and
``citygate sim audit`` compares every reading the devices produced with what
InfluxDB holds: lost must be 0.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from citygate.demo.run import audit_ledger
from citygate.demo.stack import DemoOptions, DemoStack

pytestmark = pytest.mark.servers


@pytest.mark.parametrize("client", ["aiomqtt", "lite"])
def test_agent_kills_broker_kill_and_link_cut_lose_nothing(tmp_path, client):
    stack = DemoStack(DemoOptions(directory=tmp_path / "stack", gateways=1))
    sim = None
    rng = random.Random(11)
    try:
        stack.start_infrastructure()
        node = stack.nodes[0]
        ledger = tmp_path / "ledger.bin"
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "citygate",
                "sim",
                "run",
                "--devices",
                "100",
                "--gateway-broker",
                f"127.0.0.1:{node.broker.device_port}",
                "--pki-dir",
                str(stack.dir / "pki"),
                "--rate",
                "300",
                "--duration",
                "120",
                "--resend-after",
                "3",
                "--no-progress",
                "--json",
                "--ledger",
                str(ledger),
            ],
            stdout=(tmp_path / "sim.out").open("wb"),
            stderr=subprocess.STDOUT,
        )
        time.sleep(4)
        faults = []
        for _ in range(3):
            time.sleep(rng.uniform(1.0, 2.5))
            node.agent.kill()
            faults.append("agent kill -9")
            node.agent.start(lambda: node.health() is not None, timeout=60)
        time.sleep(1.5)
        node.broker.kill()
        faults.append("broker kill -9")
        time.sleep(0.5)
        node.broker.start()
        time.sleep(2)
        node.proxy.cut()
        faults.append("cloud link cut 4 s")
        time.sleep(4)
        node.proxy.restore()
        time.sleep(4)
        sim.send_signal(signal.SIGINT)  # the devices stop producing and drain their confirmations
        sim.wait(120)
        assert stack.wait_drained(120), "the gateway did not deliver everything"
        time.sleep(1)
        total = audit_ledger(stack.influx.url, ledger)
        print(f"faults: {', '.join(faults)}; audit: {total}")
        assert total["expected"] > 1000
        assert total["lost"] == 0, total
        assert total["unexpected"] == 0, total
    finally:
        if sim is not None and sim.poll() is None:
            sim.kill()
        stack.stop()
