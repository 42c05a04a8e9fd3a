"""A stuck worker makes the agent unhealthy, not only a dead one (gateway/liveness.py).

The agent runs in this process against a real Mosquitto and the test cloud, so
that the outbox's commit can be made to hang the way storage that never answers
does: the pipeline thread is then alive and useless, and /healthz and the
systemd watchdog must say so.
"""

from __future__ import annotations

import threading

import httpx
import pytest

from citygate.gateway.agent import GatewayAgent
from citygate.gateway.settings import GatewaySettings
from tests.gateway.conftest import GW_DEVICES, reading
from tests.waiting import wait_until

pytestmark = pytest.mark.servers


def _healthz_status(agent: GatewayAgent) -> int:
    return httpx.get(f"http://127.0.0.1:{agent.http.port}/healthz", timeout=5, trust_env=False).status_code


def test_a_commit_that_never_returns_makes_the_agent_unhealthy_until_it_does(rig_factory):
    rig = rig_factory(watchdog_stall_s=1.0)
    agent = GatewayAgent(GatewaySettings.load(rig.agent.config_path))
    release = threading.Event()
    real_commit = agent.outbox.commit

    def stuck_commit(*args, **kwargs):  # storage that does not answer, until released
        release.wait(60)
        return real_commit(*args, **kwargs)

    agent.outbox.commit = stuck_commit  # type: ignore[method-assign]
    agent.start()
    try:
        wait_until(lambda: agent.intake.receiving, timeout=10, message="the agent's subscription")
        assert agent.healthy() and agent.stalled() == []
        assert _healthz_status(agent) == 200

        rig.publish(GW_DEVICES[0], reading(1))
        wait_until(lambda: not agent.healthy(), timeout=10, message="the stuck pipeline to be noticed")
        assert agent.stalled() == ["pipeline"]
        assert agent.pipeline._thread.is_alive()  # what is_alive() alone cannot tell
        assert _healthz_status(agent) == 503

        release.set()
        wait_until(agent.healthy, timeout=10, message="the agent to be healthy again")
        wait_until(
            lambda: agent.outbox.stats().counters.get("readings_in", 0) == 1,
            timeout=10,
            message="the reading stored",
        )
    finally:
        release.set()
        agent.stop()
