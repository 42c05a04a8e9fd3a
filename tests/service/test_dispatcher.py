"""The dispatcher on SQLite and PostgreSQL against a real HTTP(S) receiver: every transition
arrives, judged by the CloudEvents SDK and the Standard Webhooks verifier; retries keep the
webhook-id; 429 and 410 are honoured; one dead receiver never delays another; two
dispatchers on one store deliver each event once."""

from __future__ import annotations

import dataclasses
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cloudevents.http import from_http
from sqlalchemy import Engine, select, update
from standardwebhooks.webhooks import Webhook

from citygate.certs.pki import CertKind
from citygate.service.case_model import Condition
from citygate.service.cases import CaseStore
from citygate.service.delivery import UrlPolicy
from citygate.service.dispatcher import Dispatcher, DispatchSettings
from citygate.service.schema import deliveries, subscriptions
from citygate.service.subscriptions import Subscription
from citygate.testing.webhook_receiver import RecordedRequest, WebhookReceiver
from tests.conftest import PkiBundle
from tests.waiting import wait_until

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
LOOPBACK = UrlPolicy(allow_http_loopback=True)


class Clock:
    """Real time plus an offset the test moves forward (retries hours later, in no time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def ms(self) -> int:
        return int(self() * 1000)


def bin_full(at_ns: int, subject: str = "bin-1") -> Condition:
    return Condition(
        kind="opened",
        rule_id="waste_bin.bin_full",
        subject=subject,
        service="waste",
        severity="warning",
        title="Bin full",
        at_ns=at_ns,
        detail="fill_level 91 > 85",
        district="north",
    )


def sub(name: str, url: str, **kw: object) -> Subscription:
    return Subscription(name=name, url=url, secrets=(SECRET,), **kw)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


@pytest.fixture
def clock() -> Clock:
    return Clock()


def setup(
    engine: Engine, clock: Clock, subs: list[Subscription], **kw: object
) -> tuple[CaseStore, Dispatcher]:
    store = CaseStore(engine, subs, clock_ms=clock.ms)
    store.sync_subscriptions()
    d = Dispatcher(engine, subs, policy=LOOPBACK, clock_s=clock, cases=store, **kw)  # type: ignore[arg-type]
    return store, d


def judge(req: RecordedRequest, secrets: tuple[str, ...] = (SECRET,)) -> object:
    """The outside judges: the signature verifies with every secret, the SDK parses the event."""
    for s in secrets:
        Webhook(s).verify(req.body, req.headers)
    event = from_http(req.headers, req.body)
    assert event["id"] == req.headers["webhook-id"]
    return event


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_every_transition_arrives_signed_and_parsable(
    engine: Engine, clock: Clock, receiver: WebhookReceiver, mode: str
) -> None:
    store, d = setup(engine, clock, [sub("wo", receiver.url, mode=mode)])
    t = store.record(bin_full(1_000))
    assert t is not None
    store.act(t.case_id, "acknowledge", "alice@city", note="on it")
    store.act(t.case_id, "resolve", "crew-7")
    assert d.pump() == 3
    got = receiver.wait_for(3)
    events = sorted((judge(r) for r in got), key=lambda e: e["sequence"])  # type: ignore[index]
    assert [e["type"] for e in events] == [  # type: ignore[index]
        "org.citygate.case.opened",
        "org.citygate.case.acknowledged",
        "org.citygate.case.resolved",
    ]
    first = events[0]
    assert first["source"] == "/citygate" and first["subject"] == f"cases/{t.case_id}"  # type: ignore[index]
    assert first["service"] == "waste" and first["district"] == "north"  # type: ignore[index]
    assert first.data["case"]["rule"] == "waste_bin.bin_full"  # type: ignore[attr-defined]
    assert events[1].data["actor"] == "alice@city" and events[1].data["note"] == "on it"  # type: ignore[attr-defined]
    assert d.pump() == 0  # all delivered: nothing more to send


def test_two_signatures_during_a_rotation(engine: Engine, clock: Clock, receiver: WebhookReceiver) -> None:
    s = Subscription(name="wo", url=receiver.url, secrets=(SECRET, OLD_SECRET))
    store, d = setup(engine, clock, [s])
    store.record(bin_full(1_000))
    d.pump()
    (req,) = receiver.wait_for(1)
    judge(req, (SECRET,))
    judge(req, (OLD_SECRET,))


def test_a_failing_receiver_gets_the_same_id_again_until_it_answers(
    engine: Engine, clock: Clock, receiver: WebhookReceiver
) -> None:
    store, d = setup(engine, clock, [sub("wo", receiver.url)])
    store.record(bin_full(1_000))
    receiver.set_mode("error")
    assert d.pump() == 1
    assert d.pump() == 0  # not due yet: the backoff holds it
    for _ in range(5):  # an hour of failures, in no time
        clock.offset += 3600
        assert d.pump() == 1
    receiver.set_mode("ok")
    clock.offset += 3600
    d.pump()
    got = receiver.requests
    assert len(got) == 7 and len({r.headers["webhook-id"] for r in got}) == 1
    assert [r.mode for r in got] == ["error"] * 6 + ["ok"]
    log = d.delivery_log("wo")
    assert [a["outcome"] for a in log] == ["delivered"] + ["retry"] * 6
    assert log[1]["http_status"] == 500


def test_retry_after_is_honoured(engine: Engine, clock: Clock, receiver: WebhookReceiver) -> None:
    store, d = setup(engine, clock, [sub("wo", receiver.url)])
    store.record(bin_full(1_000))
    receiver.set_mode("throttle", retry_after="120")
    d.pump()
    receiver.set_mode("ok")
    clock.offset += 100  # past the first backoff (5-10 s), not past Retry-After
    assert d.pump() == 0
    clock.offset += 30
    assert d.pump() == 1
    assert [r.mode for r in receiver.requests] == ["throttle", "ok"]


def test_410_stops_the_subscription_and_raises_an_operator_case(
    engine: Engine, clock: Clock, receiver: WebhookReceiver
) -> None:
    store, d = setup(engine, clock, [sub("wo", receiver.url)])
    store.record(bin_full(1_000))
    receiver.set_mode("gone")
    d.pump()
    receiver.set_mode("ok")
    store.record(bin_full(2_000, subject="bin-2"))
    clock.offset += 86_400
    assert d.pump() == 0
    assert [r.mode for r in receiver.requests] == ["gone"]
    with engine.connect() as conn:
        row = conn.execute(select(subscriptions).where(subscriptions.c.name == "wo")).one()
    assert not row.enabled and "410" in row.disabled_reason
    ops = store.list_cases(service="operations")
    assert [c["rule_id"] for c in ops] == ["system.webhook_gone"] and ops[0]["subject"] == "wo"


def test_redirects_are_not_followed(engine: Engine, clock: Clock, receiver: WebhookReceiver) -> None:
    with WebhookReceiver() as elsewhere:
        store, d = setup(engine, clock, [sub("wo", receiver.url)])
        store.record(bin_full(1_000))
        receiver.set_mode("redirect", redirect_to=elsewhere.url)
        d.pump()
        assert elsewhere.requests == []
    assert "redirect, not followed" in d.delivery_log("wo")[0]["detail"]


def test_deliveries_expire_loudly_after_the_retry_span(
    engine: Engine, clock: Clock, receiver: WebhookReceiver
) -> None:
    store, d = setup(engine, clock, [sub("wo", receiver.url)])
    store.record(bin_full(1_000))
    receiver.set_mode("error")
    for _ in range(30):  # 30 h of hourly attempts: past the 26 h span
        d.pump()
        clock.offset += 3600
    with engine.connect() as conn:
        statuses = conn.execute(select(deliveries.c.status)).scalars().all()
    assert "expired" in statuses
    assert {c["rule_id"] for c in store.list_cases(service="operations")} >= {"system.webhook_expired"}


def test_a_subscription_failing_for_days_is_disabled(
    engine: Engine, clock: Clock, receiver: WebhookReceiver
) -> None:
    store, d = setup(engine, clock, [sub("wo", receiver.url, disable_after_s=2 * 3600)])
    receiver.set_mode("error")
    for i in range(4):
        store.record(bin_full(1_000 + i, subject=f"bin-{i}"))  # fresh deliveries keep failing
        d.pump()
        clock.offset += 3600
    with engine.connect() as conn:
        assert not conn.execute(select(subscriptions.c.enabled).where(subscriptions.c.name == "wo")).scalar()
    assert "system.webhook_failing" in {c["rule_id"] for c in store.list_cases(service="operations")}


def test_replay_sends_the_same_events_again(engine: Engine, clock: Clock, receiver: WebhookReceiver) -> None:
    store, d = setup(engine, clock, [sub("wo", receiver.url)])
    since = clock.ms()
    for i in range(3):
        store.record(bin_full(1_000 + i, subject=f"bin-{i}"))
    d.pump()
    first = [r.headers["webhook-id"] for r in receiver.wait_for(3)]
    assert d.replay("wo", since) == 3
    d.pump()
    again = [r.headers["webhook-id"] for r in receiver.wait_for(6)[3:]]
    assert sorted(again) == sorted(first)


def test_replay_reads_the_events_a_page_at_a_time(
    engine: Engine, clock: Clock, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replay from months back is millions of events: it held them all in memory, and made
    them all due in one transaction."""
    from sqlalchemy import event

    from citygate.service import dispatcher

    monkeypatch.setattr(dispatcher, "REPLAY_PAGE", 2, raising=False)
    store, d = setup(engine, clock, [sub("wo", receiver.url, districts=("north",))])
    since = clock.ms()
    for i in range(5):  # between the north's, four of a district the subscription does not want
        store.record(bin_full(1_000 + i, subject=f"bin-{i}"))
        if i < 4:
            store.record(dataclasses.replace(bin_full(2_000 + i, subject=f"bin-s{i}"), district="south"))
    d.pump()
    first = sorted(r.headers["webhook-id"] for r in receiver.wait_for(5))
    reads: list[str] = []  # the replay's reads of the events
    begun: list[int] = []  # transactions begun during the replay

    def on_begin(conn: object) -> None:
        begun.append(1)

    def on_execute(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM events" in statement:
            reads.append(statement)

    event.listen(engine, "begin", on_begin)
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        assert d.replay("wo", since) == 5
    finally:
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "before_cursor_execute", on_execute)
    assert len(reads) == 5 and all("LIMIT" in r for r in reads)  # 2 + 2 + 2 + 2 + 1 of the 9 events
    assert len(begun) >= 4  # a transaction per page, and the subscription's
    d.pump()
    again = sorted(r.headers["webhook-id"] for r in receiver.wait_for(10)[5:])
    assert again == first  # every event once more, the same ids


def test_replay_while_another_connection_commits_does_not_fail(
    engine: Engine, clock: Clock, receiver: WebhookReceiver
) -> None:
    """Replay read the events with its cursor still open while it wrote the deliveries. On
    SQLite a commit by another connection in between (the lanes record their attempts as a
    receiver comes back) left that open read on an old snapshot, and the first write failed at
    once with "database is locked", busy timeout or not (the full bench run, 2026-12-04)."""
    store, d = setup(engine, clock, [sub("wo", receiver.url)])
    since = clock.ms()
    for i in range(3):
        store.record(bin_full(1_000 + i, subject=f"bin-{i}"))
    lane = d._lanes["wo"]
    real = lane.sub
    interloped: list[bool] = []

    class Interloper:
        """The subscription, plus one commit by another connection at the first event replayed."""

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def wants(self, *args: object) -> bool:
            if not interloped:
                interloped.append(True)
                with engine.begin() as conn:
                    conn.execute(
                        update(subscriptions).where(subscriptions.c.name == "wo").values(failing_since_ms=1)
                    )
            return real.wants(*args)  # type: ignore[arg-type]

    lane.sub = Interloper()  # type: ignore[assignment]
    assert d.replay("wo", since) == 3
    assert interloped
    d.pump()
    assert len(receiver.wait_for(3)) == 3


def test_a_dead_receiver_never_delays_another(
    engine: Engine, clock: Clock, receiver: WebhookReceiver
) -> None:
    with WebhookReceiver() as dead:
        dead.set_mode("slow", slow_s=60)
        subs = [
            sub("healthy", receiver.url),
            sub("dead", dead.url, timeout_s=3, max_concurrency=2),
        ]
        store, d = setup(engine, clock, subs, settings=DispatchSettings(poll_s=0.05))
        d.start()
        try:
            for i in range(20):
                store.record(bin_full(1_000 + i, subject=f"bin-{i}"))
                d.wake()
            # All 20 reach the healthy receiver while the dead one still holds its first two
            # (they time out after 3 s and are retried 5-10 s later).
            receiver.wait_for(20, timeout=20)
            assert len(dead.requests) <= 2
        finally:
            dead.set_mode("ok")
            d.stop()


def test_two_dispatchers_on_one_store_deliver_each_event_once(
    store_url: str, clock: Clock, receiver: WebhookReceiver
) -> None:
    from citygate.service.db import make_engine, migrate

    engines = [make_engine(store_url) for _ in range(2)]
    migrate(engines[0])
    subs = [sub("wo", receiver.url, max_concurrency=8)]
    store = CaseStore(engines[0], subs, clock_ms=clock.ms)
    store.sync_subscriptions()
    ds = [
        Dispatcher(
            e, subs, policy=LOOPBACK, name=f"d{i}", clock_s=clock, settings=DispatchSettings(poll_s=0.02)
        )
        for i, e in enumerate(engines)
    ]
    for d in ds:
        d.start()
    try:
        for i in range(60):
            store.record(bin_full(1_000 + i, subject=f"bin-{i}"))
            for d in ds:
                d.wake()
        got = receiver.wait_for(60, timeout=30)
    finally:
        for d in ds:
            d.stop()
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == 60 and len(set(ids)) == 60
    assert len(got) == 60
    for e in engines:
        e.dispose()


def test_a_lease_left_by_a_dead_dispatcher_expires(
    engine: Engine, clock: Clock, receiver: WebhookReceiver
) -> None:
    subs = [sub("wo", receiver.url)]
    store, d1 = setup(engine, clock, subs, settings=DispatchSettings(lease_s=60))
    store.record(bin_full(1_000))
    claimed = d1._claim(subs[0], 5)  # claimed, then the dispatcher "dies" before sending
    assert len(claimed) == 1
    d2 = Dispatcher(engine, subs, policy=LOOPBACK, name="d2", clock_s=clock, cases=store)
    assert d2.pump() == 0  # leased to d1
    clock.offset += 61
    assert d2.pump() == 1
    judge(receiver.wait_for(1)[0])


def test_https_receiver_verified_against_the_city_ca(
    engine: Engine, clock: Clock, test_pki: PkiBundle, tmp_path: Path
) -> None:
    server = test_pki.pki.files(CertKind.SERVER, "localhost")
    with WebhookReceiver(cert=server.cert, key=server.key) as r:
        url = r.url.replace("127.0.0.1", "localhost")
        port = url.rsplit(":", 1)[1].split("/")[0]
        policy = UrlPolicy(allowed_hosts=(f"localhost:{port}",))
        subs = [sub("wo", url)]
        store = CaseStore(engine, subs, clock_ms=clock.ms)
        store.sync_subscriptions()
        client = httpx.Client(
            verify=ssl.create_default_context(cafile=str(test_pki.infra_ca)), trust_env=False
        )
        d = Dispatcher(engine, subs, policy=policy, clock_s=clock, cases=store, client=client)
        store.record(bin_full(1_000))
        d.pump()
        judge(r.wait_for(1)[0])


def test_a_gone_receiver_gets_one_probe_not_a_burst(
    engine: Engine, clock: Clock, receiver: WebhookReceiver
) -> None:
    store, d = setup(engine, clock, [sub("wo", receiver.url, max_concurrency=8)])
    for i in range(10):
        store.record(bin_full(1_000 + i, subject=f"bin-{i}"))
    receiver.set_mode("gone")
    d.pump()
    d.pump()
    assert len(receiver.requests) == 1


def test_prune_keeps_pending_deliveries_and_bounds_the_rest(
    engine: Engine, clock: Clock, receiver: WebhookReceiver
) -> None:
    with WebhookReceiver() as down:
        down.set_mode("error")
        subs = [sub("up", receiver.url, services=("waste",)), sub("down", down.url, services=("flood",))]
        store, d = setup(engine, clock, subs)
        store.record(bin_full(1_000))  # to "up": delivered
        flood = bin_full(1_000, subject="river-1")
        store.record(Condition(**{**{f: getattr(flood, f) for f in flood.__slots__}, "service": "flood"}))
        d.pump()
        clock.offset += 100 * 86_400
        now = clock.ms()
        attempts, evs = d.prune(attempts_older_than_ms=now, events_older_than_ms=now)
        assert attempts == 2 and evs == 1  # the delivered event goes; the pending one stays
        with engine.connect() as conn:
            left = conn.execute(select(deliveries.c.subscription, deliveries.c.status)).all()
        assert [tuple(r) for r in left] == [("down", "pending")]


def test_an_attempt_recorded_after_a_replay_does_not_undo_it(
    engine: Engine, clock: Clock, receiver: WebhookReceiver
) -> None:
    from citygate.service.delivery import Outcome

    subs = [sub("wo", receiver.url)]
    store, d = setup(engine, clock, subs)
    since = clock.ms()
    store.record(bin_full(1_000))
    (row,) = d._claim(subs[0], 1)  # an attempt in flight ...
    assert d.replay("wo", since) == 1  # ... when an operator replays
    d._record(subs[0], row, Outcome("retry", 500, None, "HTTP 500", 0.01))  # the attempt's 500, late
    assert d.pump() == 1  # still due now, not 5-10 s of backoff later
    assert receiver.wait_for(1)[0].headers["webhook-id"]


def test_group_commit_records_concurrent_outcomes_together_and_each_waits_for_its_own() -> None:
    from citygate.service.dispatcher import _GroupCommit

    batches: list[list[int]] = []
    committed: set[int] = set()
    release = threading.Event()

    def flush(items: list[tuple[object, object, bool]]) -> None:
        if not batches:
            release.wait(10)  # the first transaction is slow: the others queue behind it
        batches.append([int(i[0]) for i in items])  # type: ignore[call-overload]
        committed.update(int(i[0]) for i in items)  # type: ignore[call-overload]

    group = _GroupCommit(flush)  # type: ignore[arg-type]
    seen_committed: dict[int, bool] = {}

    def worker(n: int) -> None:
        group.record((n, None, False))  # type: ignore[arg-type]
        seen_committed[n] = n in committed

    first = threading.Thread(target=worker, args=(0,))
    first.start()
    wait_until(lambda: group._flushing, message="the first flush started")
    others = [threading.Thread(target=worker, args=(n,)) for n in range(1, 8)]
    for t in others:
        t.start()
    wait_until(lambda: len(group._queue) == 7, message="seven outcomes queued")
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert batches == [[0], [1, 2, 3, 4, 5, 6, 7]]  # two transactions for eight outcomes
    assert seen_committed == dict.fromkeys(range(8), True)  # nobody returned before its commit


def judge_batch(req: RecordedRequest) -> list[object]:
    """A batched request: the signature verifies, and the SDK parses every element."""
    import json

    from cloudevents.http import from_json

    Webhook(SECRET).verify(req.body, req.headers)
    assert req.headers["content-type"].startswith("application/cloudevents-batch+json")
    docs = json.loads(req.body)
    assert isinstance(docs, list) and docs
    return [from_json(json.dumps(d)) for d in docs]


def test_throttling_coalesces_and_drops_nothing(
    engine: Engine, clock: Clock, receiver: WebhookReceiver
) -> None:
    store, d = setup(engine, clock, [sub("wo", receiver.url, batch_max=50)])
    first = store.record(bin_full(1_000, "bin-0"))
    assert first is not None
    receiver.set_mode("throttle", retry_after="30")
    assert d.pump() == 1  # answered 429: the lane pauses and will coalesce
    for i in range(1, 20):
        store.record(bin_full(1_000, f"bin-{i}"))
    receiver.set_mode("ok")
    assert d.pump() == 0  # still inside Retry-After
    clock.offset += 31
    assert d.pump() == 20
    throttled, *after = receiver.requests
    assert throttled.mode == "throttle" and len(after) == 1  # 20 transitions, one request
    events = judge_batch(after[0])
    with engine.connect() as conn:
        ids = set(conn.execute(select(deliveries.c.event_seq)).scalars())
        statuses = set(conn.execute(select(deliveries.c.status)).scalars())
    assert len(events) == len(ids) == 20 and statuses == {"delivered"}
    assert len({e["id"] for e in events}) == 20  # type: ignore[index]
    assert throttled.headers["webhook-id"] in {e["id"] for e in events}  # type: ignore[index]
    # The backlog is gone: the next transition travels alone, in the subscription's mode.
    store.act(first.case_id, "acknowledge", "alice@city")
    assert d.pump() == 1
    judge(receiver.requests[-1])


def test_min_interval_sends_what_waits_together(
    engine: Engine, clock: Clock, receiver: WebhookReceiver
) -> None:
    store, d = setup(engine, clock, [sub("wo", receiver.url, batch_max=100, min_interval_s=60)])
    for i in range(5):
        store.record(bin_full(1_000, f"bin-{i}"))
    assert d.pump() == 5
    for i in range(5, 8):
        store.record(bin_full(1_000, f"bin-{i}"))
    assert d.pump() == 0  # within the interval: they wait
    clock.offset += 61
    assert d.pump() == 3
    assert [len(judge_batch(r)) for r in receiver.requests] == [5, 3]


def test_batches_need_structured_mode() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="batch_max"):
        sub("wo", "https://example.org/hook", mode="binary", batch_max=10)
