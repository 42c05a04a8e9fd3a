"""The forwarder's rules for the cloud's answers, with no servers: a 4xx for a whole batch halves
it until the reading at fault is alone, and that reading is dead-lettered (if the gateway refuses
it too); 5xx and no answer are retried with nothing deleted; Retry-After is a floor of the
back-off. A fake batch poster (the seam is ``forwarder.BatchPoster``) answers instead of the
cloud; the outbox is a real one in a temporary directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from citygate.contract.readings import Rejection, RejectReason
from citygate.contract.wire import IngestResult
from citygate.gateway.cloud_client import PostOutcome
from citygate.gateway.forwarder import Forwarder, ForwarderConfig
from citygate.gateway.outbox import NewReading, Outbox, OutboxLimits, StoredReading
from tests.waiting import wait_until

NOW = 10**18


def body(i: int) -> bytes:
    # Stored whole (as the wire form), so that what the poster gets is this exact body.
    return b'{"device_id":"d","i":%d}' % i


def accepted(n: int) -> PostOutcome:
    return PostOutcome(200, IngestResult(batch_id="b", gateway_id="gw", accepted=n, rejected=[]))


class FakePoster:
    """Answers each batch with ``answer(bodies)``; records what was sent."""

    timeout_s = 1.0

    def __init__(self, answer: Callable[[list[bytes]], PostOutcome]) -> None:
        self.answer = answer
        self.sent: list[list[bytes]] = []
        self.delivered: list[bytes] = []  # bodies of batches answered 2xx

    def post_batch(self, batch_id: str, bodies: list[bytes]) -> PostOutcome:
        self.sent.append(bodies)
        outcome = self.answer(bodies)
        if outcome.ok:
            self.delivered.extend(bodies)
        return outcome

    def close(self) -> None:
        pass


def scripted(*answers: PostOutcome) -> Callable[[list[bytes]], PostOutcome]:
    queue = list(answers)
    return lambda bodies: queue.pop(0)


def setup(
    tmp_path: Path,
    answer: Callable[[list[bytes]], PostOutcome],
    *,
    n: int = 4,
    refuses: frozenset[bytes] = frozenset(),
    **config: float,
) -> tuple[Forwarder, FakePoster, Outbox]:
    ob = Outbox(tmp_path / "o.db", OutboxLimits(min_free_disk_bytes=0))
    ob.commit([NewReading("d", i, NOW + i, body(i)) for i in range(n)], now_ns=NOW, free_disk=10**12)
    poster = FakePoster(answer)

    def recheck(r: StoredReading) -> Rejection | None:
        return Rejection(RejectReason.OUT_OF_RANGE, "refused here too") if r.body in refuses else None

    cfg = ForwarderConfig(**config)  # type: ignore[arg-type]
    # The forwarder's clock a second after the readings came: old enough to send (batch_max_delay_s).
    return Forwarder(ob, poster, cfg, clock=lambda: NOW + 10**9, recheck=recheck), poster, ob


def test_a_whole_batch_4xx_halves_the_batch_until_the_reading_at_fault_is_alone(tmp_path: Path) -> None:
    bad = body(5)
    fw, poster, ob = setup(
        tmp_path,
        lambda bodies: PostOutcome(400, error="bad batch") if bad in bodies else accepted(len(bodies)),
        n=8,
        refuses=frozenset({bad}),
        batch_max_readings=8,
        batch_max_delay_s=0.0,
    )
    fw.start()
    try:
        wait_until(
            lambda: ob.stats().depth == 0,
            timeout=5,
            message=lambda: f"the outbox drained; first batches sent {[len(b) for b in poster.sent[:20]]}",
        )
    finally:
        fw.stop()
    sizes = [len(b) for b in poster.sent]
    assert sizes[:2] == [8, 4], sizes  # refused whole, then halved
    assert sorted(poster.delivered) == sorted(body(i) for i in range(8) if i != 5)
    assert [d.payload for d in ob.deadletters()] == [bad]
    assert ob.deadletters()[0].reason == "cloud_http_400"
    assert ob.stats().held == {}


def test_a_4xx_for_a_batch_deletes_nothing(tmp_path: Path) -> None:
    fw, poster, ob = setup(
        tmp_path, scripted(PostOutcome(400, error="bad batch")), refuses=frozenset({body(0)})
    )
    assert fw.send(ob.oldest(10)) == 0.0  # no back-off: the halves go at once
    st = ob.stats()
    assert st.depth == 4 and st.held == {} and ob.deadletters() == []
    assert len(poster.sent) == 1


def test_a_lone_reading_refused_by_a_whole_batch_4xx_is_dead_lettered(tmp_path: Path) -> None:
    fw, poster, ob = setup(
        tmp_path, scripted(PostOutcome(422, error="bad shape")), refuses=frozenset({body(0)})
    )
    assert fw.send(ob.oldest(1)) == 0.0
    assert poster.sent == [[body(0)]]
    assert ob.stats().depth == 3
    (dead,) = ob.deadletters()
    assert dead.payload == body(0) and dead.reason == "cloud_http_422"
    assert "bad shape" in dead.detail and "the gateway refuses it too" in dead.detail


def test_5xx_and_no_answer_are_retried_with_nothing_deleted(tmp_path: Path) -> None:
    fw, poster, ob = setup(
        tmp_path,
        scripted(PostOutcome(500, error="boom"), PostOutcome(None, error="ConnectError"), accepted(4)),
        refuses=frozenset({body(i) for i in range(4)}),  # even readings the gateway would refuse
        backoff_initial_s=0.5,
        backoff_max_s=60.0,
    )
    batch = ob.oldest(10)
    for _ in range(2):
        assert fw.send(batch) > 0
        st = ob.stats()
        assert st.depth == 4 and st.held == {} and ob.deadletters() == []
    assert fw.send(batch) == 0.0
    assert ob.stats().depth == 0 and ob.deadletters() == []
    assert poster.sent == [[body(i) for i in range(4)]] * 3  # the same rows each time


def test_retry_after_is_a_floor_of_the_back_off(tmp_path: Path) -> None:
    fw, poster, ob = setup(
        tmp_path,
        scripted(
            PostOutcome(503),
            PostOutcome(503, retry_after_s=30.0),
            PostOutcome(429, retry_after_s=20.0),
            PostOutcome(503, retry_after_s=10_000.0),
        ),
        backoff_initial_s=0.1,
        backoff_max_s=60.0,
    )
    batch = ob.oldest(10)
    assert 0 < fw.send(batch) <= 0.1  # our own back-off, jittered
    assert fw.send(batch) >= 30.0
    assert fw.send(batch) >= 20.0
    assert fw.send(batch) == 300.0  # a server's Retry-After is capped at 5 x backoff_max_s
    assert ob.stats().depth == 4 and len(poster.sent) == 4
