"""The gateway agent against a real Mosquitto (mTLS) and a real HTTPS test cloud."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from tests.gateway.conftest import GW_DEVICES, reading
from tests.waiting import wait_until

pytestmark = pytest.mark.servers


def test_steady_flow_arrives_exactly_once(rig_factory):
    rig = rig_factory()
    rig.agent.start()
    devices, per_device = GW_DEVICES[:5], 100
    for seq in range(per_device):
        for d in devices:
            rig.publish(d, reading(seq))
    total = len(devices) * per_device
    h = rig.agent.wait_for(
        lambda h: h["readings_out"] >= total and h["outbox_depth"] == 0, what="all readings forwarded"
    )
    assert rig.cloud.count() == total
    assert rig.cloud.duplicates() == 0
    assert h["readings_in"] == total
    # Per-device order is kept in steady flow.
    for d in devices:
        seqs = [s for dev, s in rig.cloud.order if dev == d]
        assert seqs == sorted(seqs)
    # The agent identified itself with its certificate, and heartbeats arrive.
    assert rig.cloud.peer_ids == {"gw-test"}
    wait_until(
        lambda: any(hb["broker_connected"] for hb in rig.cloud.heartbeats),
        interval=0.1,
        message=lambda: f"a heartbeat saying the broker is connected; heartbeats {rig.cloud.heartbeats}",
    )
    assert {hb["_cn"] for hb in rig.cloud.heartbeats} == {"gw-test"}


def test_end_to_end_acks_confirm_exactly_the_committed_seqs(rig_factory):
    from citygate.contract.acks import decode_ack

    rig = rig_factory()
    rig.agent.start()
    dev = rig.device(GW_DEVICES[0])
    for seq in (*range(10), 15):  # 10..14 never arrive: they must not be confirmed
        rig.publish(GW_DEVICES[0], reading(seq))

    def confirmed(msgs):
        out = set()
        for topic, payload in msgs:
            if topic.endswith("/ack"):
                for a, b in decode_ack(payload) or []:
                    out.update(range(a, b + 1))
        return out

    wait_until(
        lambda: {*range(10), 15} <= confirmed(dev.received()),
        timeout=15,
        message=lambda: f"seqs 0-9 and 15 confirmed; confirmed {sorted(confirmed(dev.received()))}",
    )
    assert not confirmed(dev.received()) & set(range(10, 15))


def test_garbage_is_dead_lettered_and_good_readings_keep_flowing(rig_factory):
    rig = rig_factory()
    rig.agent.start()
    d = GW_DEVICES[0]
    bad = [
        b"{not json",
        b'{"ts": 1, "seq": 1, "readings": {"level": NaN}}',
        orjson.dumps({"ts": int(time.time() * 1000), "seq": 2, "readings": {"level": "high"}}),
        orjson.dumps({"ts": int(time.time() * 1000), "seq": 3, "readings": {"level": 99.0}}),
        orjson.dumps({"ts": int(time.time() * 1000), "seq": 4, "readings": {"level": 1.0, "x": 1}}),
        b"x" * 20000,
        orjson.dumps({"ts": int(time.time() * 1000) + 86_400_000, "seq": 5, "readings": {"level": 1.0}}),
    ]
    for i, payload in enumerate(bad):
        rig.publish(d, payload)
        rig.publish(d, reading(100 + i))
    # A device the inventory does not know (its certificate is valid, it is just not registered).
    h = rig.agent.wait_for(
        lambda h: h["readings_out"] >= len(bad) and sum(h["rejected"].values()) >= len(bad),
        what="good readings forwarded and bad ones rejected",
    )
    assert h["rejected"] == {
        "malformed_json": 1,
        "not_finite": 1,
        "wrong_type": 1,
        "out_of_range": 1,
        "unknown_field": 1,
        "payload_too_large": 1,
        "timestamp_in_future": 1,
    }
    assert rig.cloud.count() == len(bad)
    # `citygate gateway deadletters` shows them with reasons.
    from typer.testing import CliRunner

    from citygate.cli import build_app

    out = CliRunner().invoke(
        build_app(), ["gateway", "deadletters", "--json", "--config", str(rig.agent.config_path)]
    )
    assert out.exit_code == 0, out.output
    reasons = sorted(x["reason"] for x in orjson.loads(out.stdout))
    assert reasons == sorted(h["rejected"])


def test_sigterm_drains_and_restart_resumes(rig_factory):
    rig = rig_factory()
    rig.cloud.mode = "503"  # hold everything in the outbox
    rig.agent.start()
    for seq in range(50):
        rig.publish(GW_DEVICES[1], reading(seq))
    rig.agent.wait_for(lambda h: h["readings_in"] >= 50, what="readings committed")
    assert rig.agent.terminate() == 0
    assert "gateway agent stopped" in rig.agent.log_tail()
    rig.cloud.mode = "ok"
    rig.agent.start()
    h = rig.agent.wait_for(lambda h: h["outbox_depth"] == 0 and h["readings_out"] >= 50, what="drained")
    assert rig.cloud.count() == 50
    # Every message was acknowledged to the broker before the clean exit: none came back (a
    # redelivery would come at once, at the reconnect; a second is time enough to show none does).
    time.sleep(1.0)
    assert rig.agent.health()["readings_in"] == 50 == h["readings_in"]


def test_more_messages_than_the_broker_keeps_in_flight_all_get_acknowledged(rig_factory):
    # Mosquitto sends at most max_inflight_messages (1000) unacknowledged messages:
    # if PUBACKs were not sent, the flow would stop there.
    rig = rig_factory()
    rig.agent.start()
    for seq in range(1500):
        rig.publish(GW_DEVICES[4], reading(seq))
    h = rig.agent.wait_for(lambda h: h["readings_out"] >= 1500, what="all 1500 forwarded")
    assert h["readings_in"] == 1500


def test_status_command_and_metrics_endpoint(rig_factory):
    from typer.testing import CliRunner

    from citygate.cli import build_app

    rig = rig_factory()
    rig.agent.start()
    for seq in range(5):
        rig.publish(GW_DEVICES[6], reading(seq))
    rig.agent.wait_for(lambda h: h["readings_out"] == 5, what="forwarded")
    out = CliRunner().invoke(build_app(), ["gateway", "status", "--config", str(rig.agent.config_path)])
    assert out.exit_code == 0, out.output
    for label in (
        "readings in",
        "outbox depth",
        "oldest unsent",
        "certificate days left",
        "broker connected",
    ):
        assert label in out.stdout
    doc = orjson.loads(
        CliRunner()
        .invoke(build_app(), ["gateway", "status", "--json", "--config", str(rig.agent.config_path)])
        .stdout
    )
    assert doc["readings_in"] == 5 and doc["healthy"] is True and doc["cert_days_left"] > 300
    r = httpx.get(f"http://127.0.0.1:{rig.agent.http_port}/metrics", timeout=5, trust_env=False)
    r.raise_for_status()
    text = r.text
    assert "citygate_gateway_readings_out_total 5.0" in text
    assert "citygate_gateway_outbox_depth 0.0" in text
    assert "citygate_gateway_broker_connected 1.0" in text


def test_a_resend_is_not_stored_again_but_a_rebooted_device_counting_from_0_is(rig_factory):
    rig = rig_factory()
    rig.agent.start()
    d = GW_DEVICES[0]
    boot1 = int(time.time() * 1000) - 60_000
    boot2 = boot1 + 30_000  # the same device after a reboot: seq from 0 again, later timestamps
    for seq in range(20):
        rig.publish(d, reading(seq, ts_ms=boot1 + seq))
    rig.agent.wait_for(lambda h: h["readings_out"] >= 20, what="first boot's readings forwarded")
    for seq in range(20):
        rig.publish(d, reading(seq, ts_ms=boot2 + seq))
    rig.agent.wait_for(lambda h: h["readings_out"] >= 40, what="second boot's readings forwarded")
    for seq in range(5, 10):  # late resends of readings the gateway already holds
        rig.publish(d, reading(seq, ts_ms=boot2 + seq))
    rig.publish(d, reading(20, ts_ms=boot2 + 20))  # after the resends, in order on one connection
    h = rig.agent.wait_for(lambda h: h["readings_out"] >= 41 and h["outbox_depth"] == 0, what="sentinel")
    assert rig.cloud.count() == 41  # both boots' readings, each once
    assert rig.cloud.duplicates() == 0  # the resends were not forwarded again
    assert h["readings_out"] == 41
