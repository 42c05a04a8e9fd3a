"""The forwarder's rule for a refusal: final only if the gateway refuses the reading too, else held;
a contract change at the cloud makes held readings due at once. A stub stands in for the cloud
client (the rule is the forwarder's; the real client is tested against real servers)."""

from __future__ import annotations

from citygate.contract.readings import Rejection, RejectReason
from citygate.contract.wire import IngestResult, RejectedReading
from citygate.gateway.cloud_client import PostOutcome
from citygate.gateway.forwarder import Forwarder, ForwarderConfig, reason_label
from citygate.gateway.outbox import NewReading, Outbox, OutboxLimits, StoredReading

NOW = 10**18


class StubClient:
    timeout_s = 1.0

    def __init__(self) -> None:
        self.answers: list[PostOutcome] = []
        self.sent: list[list[bytes]] = []

    def post_batch(self, batch_id: str, bodies: list[bytes]) -> PostOutcome:
        self.sent.append(bodies)
        return self.answers.pop(0)


def _answer(n: int, rejected: dict[int, str], version: str | None = "v1") -> PostOutcome:
    rej = [
        RejectedReading(index=i, device_id="d", reason=r, detail="said the cloud")
        for i, r in rejected.items()
    ]
    return PostOutcome(
        200,
        IngestResult(
            batch_id="b", gateway_id="gw", accepted=n - len(rej), rejected=rej, contract_version=version
        ),
    )


def _setup(tmp_path, refuses: set[int]) -> tuple[Forwarder, StubClient, Outbox]:
    ob = Outbox(tmp_path / "o.db", OutboxLimits(min_free_disk_bytes=0))
    ob.commit([NewReading("d", i, NOW + i, b'{"i":%d}' % i) for i in range(4)], now_ns=NOW, free_disk=10**12)
    client = StubClient()

    def recheck(r: StoredReading) -> Rejection | None:
        return Rejection(RejectReason.OUT_OF_RANGE, "too big here too") if r.seq in refuses else None

    fw = Forwarder(ob, client, ForwarderConfig(held_retry_s=60), clock=lambda: NOW, recheck=recheck)  # type: ignore[arg-type]
    return fw, client, ob


def test_a_refusal_the_gateway_shares_is_final_any_other_is_held(tmp_path):
    fw, client, ob = _setup(tmp_path, refuses={1})
    client.answers.append(_answer(4, {1: "out_of_range", 2: "unknown_device", 3: "timestamp_too_old"}))
    assert fw.send(ob.oldest(10)) == 0.0
    st = ob.stats()
    assert st.depth == 0
    assert st.counters["readings_out"] == 1
    assert st.counters["rejected.cloud_out_of_range"] == 1
    assert st.held == {"cloud_unknown_device": 1, "cloud_timestamp_too_old": 1}
    assert "the gateway refuses it too" in ob.deadletters()[0].detail
    # Held until held_retry_s has passed, by the forwarder's clock.
    assert ob.held_due(10, NOW) == [] and len(ob.held_due(10, NOW + 60 * 10**9)) == 2


def test_a_lone_reading_refused_as_a_whole_batch_is_judged_the_same_way(tmp_path):
    fw, client, ob = _setup(tmp_path, refuses=set())
    client.answers.append(PostOutcome(422, error="bad shape"))
    batch = ob.oldest(1)
    assert fw.send(batch) == 0.0
    assert ob.stats().held == {"cloud_http_422": 1}


def test_a_contract_change_makes_held_readings_due_now(tmp_path):
    fw, client, ob = _setup(tmp_path, refuses=set())
    client.answers.append(_answer(4, {0: "unknown_device"}, version="v1"))
    fw.send(ob.oldest(10))
    assert ob.held_due(10, NOW) == []  # the first version seen retries at once, then holds
    ob.retry_held_now()
    client.answers.append(_answer(1, {0: "unknown_device"}, version="v1"))
    held = ob.held_due(10, NOW)
    ob.lease_held(r.id for r in held)
    fw.send(held, held=True)
    assert ob.held_due(10, NOW) == []  # same version: waits for its retry time
    fw.observe_contract_version("v2")
    assert len(ob.held_due(10, NOW)) == 1
    client.answers.append(_answer(1, {}, version="v2"))
    held = ob.held_due(10, NOW)
    fw.send(held, held=True)
    st = ob.stats()
    assert st.held == {} and st.counters["held_stored"] == 1 and st.counters["readings_out"] == 4


def test_reason_labels_are_safe_counter_names():
    assert reason_label("unknown_device") == "cloud_unknown_device"
    assert reason_label("Weird Reason!/x" * 5) == ("cloud_weird_reason__x" + "weird_reason__x" * 4)[:40]
