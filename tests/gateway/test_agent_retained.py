"""Retained telemetry is a broker artefact: stored once (the live copy), never again.

The broker replays a retained message, with the retain flag, every time the agent
subscribes, that is at every start and reconnect. Before the fix each restart stored it
again (the resend check starts empty): one retained reading became one more stored
reading per restart.
"""

from __future__ import annotations

import pytest

from citygate.contract.topics import telemetry_topic
from citygate.gateway.outbox import Outbox
from tests.gateway.conftest import GW_DEVICES, reading

pytestmark = pytest.mark.servers

DEVICE = GW_DEVICES[3]


def _retained(h: dict) -> int:
    return int(h["rejected"].get("retained", 0))


def test_retained_telemetry_is_stored_once_and_refused_after_each_restart(rig_factory):
    rig = rig_factory()
    rig.agent.start()
    conn = rig.device(DEVICE)
    assert conn.client is not None
    retained = reading(1)
    conn.client.publish(telemetry_topic(DEVICE), retained, qos=1, retain=True).wait_for_publish(5)
    rig.publish(DEVICE, reading(2))
    h = rig.agent.wait_for(
        lambda h: h["readings_out"] >= 2 and h["outbox_depth"] == 0, what="the live copies forwarded"
    )
    # Delivered live, the retained reading came without the flag: a reading like any other.
    assert h["readings_in"] == 2 and _retained(h) == 0

    for restart in (1, 2):
        assert rig.agent.terminate() == 0
        rig.agent.start()
        rig.publish(DEVICE, reading(2 + restart))  # fresh readings keep flowing
        want_out = 2 + restart
        h = rig.agent.wait_for(
            lambda h, n=want_out, r=restart: (
                h["readings_out"] >= n
                and h["outbox_depth"] == 0
                and (_retained(h) >= r or h["readings_in"] > n)
            ),
            what=f"restart {restart}: the broker's retained copy handled",
        )
        assert h["readings_in"] == want_out, f"restart {restart}: the retained reading was stored again"
        assert _retained(h) == restart
    assert rig.cloud.count() == 4 and rig.cloud.duplicates() == 0

    outbox = Outbox(rig.workdir / "state" / "outbox.db")  # the agent runs: SQLite's locking
    try:
        letters = outbox.deadletters(reason="retained")
    finally:
        outbox.close()
    assert [(d.device_id, d.payload) for d in letters] == [(DEVICE, retained)] * 2
