"""Hostile payloads through the real broker: every one dead-lettered with a reason, nothing crashes."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citygate.contract.readings import RejectReason
from tests.gateway.conftest import GW_DEVICES, reading

pytestmark = pytest.mark.servers

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _hostile(rng: random.Random) -> list[bytes]:
    out = [
        b"\xff\xfe\xfd" * 10,  # invalid UTF-8
        b"[" * 5000 + b"]" * 5000,  # deeply nested
        b'{"ts": 1, "seq": 1, "readings": {"level": Infinity}}',
        orjson.dumps({"ts": "yesterday", "seq": 1, "readings": {"level": 1.0}}),
        orjson.dumps({"ts": 1, "seq": -5, "readings": {"level": 1.0}}),
        b"",
        bytes(rng.getrandbits(8) for _ in range(300)),
        b"x" * 200_000,
    ]
    return out


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(json_values, min_size=60, max_size=60))
def test_fuzzed_payloads_are_all_dead_lettered_and_the_agent_keeps_going(rig_factory, values):
    rig = rig_factory()
    rig.agent.start()
    payloads = [orjson.dumps(v) for v in values] + _hostile(random.Random(1))
    d = GW_DEVICES[5]
    for p in payloads:
        rig.publish(d, p)
    rig.publish(d, reading(1))
    h = rig.agent.wait_for(
        lambda h: h["readings_out"] == 1 and sum(h["rejected"].values()) == len(payloads),
        what="all hostile payloads rejected and the good one forwarded",
    )
    assert set(h["rejected"]) <= {r.value for r in RejectReason}
    assert h["rss_bytes"] < 200e6
    assert rig.agent.proc.poll() is None
