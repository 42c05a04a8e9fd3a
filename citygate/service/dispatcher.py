"""The dispatcher: delivers the event outbox to each subscription, at least once, signed.

One lane (a thread and a small pool of at most ``max_concurrency`` workers) per
subscription, so one dead receiver never delays another. A lane claims due deliveries with
a lease (a conditional UPDATE, so two dispatchers on one store never send the same
delivery at once; a dispatcher killed mid-send leaves a lease that expires and the delivery
is sent again, with the same ``webhook-id``), makes one attempt each
(:func:`citygate.service.delivery.deliver`) and records the outcome with the attempt in the
delivery log:

- delivered: done; the subscription is healthy again;
- retry: again after the backoff (:mod:`citygate.service.backoff`), or after Retry-After
  when longer, and the lane pauses for a Retry-After (then, with ``batch_max`` > 1, what
  waits goes in batches: throttling coalesces, it never drops); after ``give_up_after_s`` the delivery
  expires, counted and raised as an operator case, never silently;
- gone (410): the subscription is disabled, nothing more is sent to it, an operator case says so;
- a subscription that has failed without a success for ``disable_after_s`` is disabled too.

Until a lane's first success, and after any failure, it sends one delivery at a time: a
receiver that is down (or gone) gets one probe, not ``max_concurrency`` requests at once.

Nothing is dropped: a disabled subscription's events stay in the outbox, and
:meth:`Dispatcher.replay` sends them (or any since a time) again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, RowMapping, and_, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from citygate.service.backoff import DEFAULT_SCHEDULE, RetrySchedule, next_attempt_at
from citygate.service.case_model import Condition
from citygate.service.cases import EVENT_TYPE_PREFIX, CaseStore
from citygate.service.cloudevent import CaseEvent
from citygate.service.delivery import Outcome, UrlPolicy, deliver, deliver_batch
from citygate.service.schema import deliveries, delivery_attempts, events, subscriptions
from citygate.service.signing import WebhookSecret
from citygate.service.subscriptions import Subscription

log = logging.getLogger(__name__)

OPERATIONS_SERVICE = "operations"  # the service of the cases the dispatcher raises about itself
REPLAY_PAGE = 1000  # events a replay reads (and makes due) per transaction


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    source: str = "/citygate"  # the CloudEvents source of every event
    poll_s: float = 0.5  # how often an idle lane looks for due deliveries
    lease_s: float = 300.0  # a claimed delivery is another dispatcher's to take after this
    schedule: RetrySchedule = DEFAULT_SCHEDULE


class Dispatcher:
    """Delivers the outbox of ``engine`` to ``subs``; ``start()`` / ``stop()``, or ``pump()`` by hand."""

    def __init__(
        self,
        engine: Engine,
        subs: Sequence[Subscription],
        *,
        policy: UrlPolicy,
        name: str = "dispatcher",
        settings: DispatchSettings = DispatchSettings(),
        client: httpx.Client | None = None,
        clock_s: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        cases: CaseStore | None = None,
    ) -> None:
        self.engine = engine
        self.name = name
        self.settings = settings
        self.policy = policy
        self._clock_s = clock_s
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter, not a secret
        self._client = client or httpx.Client(verify=True, trust_env=False)
        self._cases = cases or CaseStore(engine, subs, clock_ms=lambda: int(clock_s() * 1000))
        self._lanes = {s.name: _Lane(self, s) for s in subs}
        self._claims = 0  # numbers each claim's token
        self._stop = threading.Event()

    # -- running ----------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        for lane in self._lanes.values():
            lane.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for lane in self._lanes.values():
            lane.wake.set()
        for lane in self._lanes.values():
            lane.join(timeout)

    def wake(self) -> None:
        """New events are in the outbox: look now rather than at the next poll."""
        for lane in self._lanes.values():
            lane.wake.set()

    def pump(self) -> int:
        """By hand (tests, tools): every lane sends what is due, waiting for its attempts, until
        nothing more is due; returns the number of attempts made."""
        total = 0
        for lane in self._lanes.values():
            while n := lane.pass_once(wait=True):
                total += n
        return total

    def alive(self) -> bool:
        return all(lane.thread is not None and lane.thread.is_alive() for lane in self._lanes.values())

    # -- operators --------------------------------------------------------------------

    def replay(self, subscription: str, since_ms: int) -> int:
        """Send again every event since ``since_ms`` that the subscription wants (the same ids);
        re-enables it. Returns the number of deliveries made due."""
        lane = self._lanes.get(subscription)
        if lane is None:
            raise KeyError(f"no subscription {subscription!r} is configured")
        sub = lane.sub
        now = self._now_ms()
        # Enabled first, in its own transaction: an event recorded while the pages are read
        # is then fanned out to the subscription as usual (enabled last, an event recorded
        # between the last page and the enabling had no delivery at all).
        with self.engine.begin() as conn:
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.name == sub.name)
                .values(enabled=True, disabled_reason=None, failing_since_ms=None)
            )
        n = 0
        after = -1  # the last event seq read
        while True:
            # A page at a time, each in its own transaction: a replay from months back is
            # millions of events, which neither memory nor one transaction should hold. Each page
            # is read to its end before the first write: a cursor left open holds SQLite's read
            # snapshot, and once another connection has committed (the lanes record attempts)
            # the write cannot start from it and fails at once, busy timeout or not. Stopped half
            # way (the store down), a replay made some deliveries due: running it again is safe.
            with self.engine.begin() as conn:
                rows = conn.execute(
                    select(
                        events.c.seq, events.c.type, events.c.service, events.c.district, events.c.severity
                    )
                    .where(events.c.time_ms >= since_ms, events.c.seq > after)
                    .order_by(events.c.seq)
                    .limit(REPLAY_PAGE)
                ).all()
                wanted = [
                    {
                        "subscription": sub.name,
                        "event_seq": r.seq,
                        "status": "pending",
                        "next_ms": now,
                        "created_ms": now,
                        "attempts": 0,
                    }
                    for r in rows
                    if sub.wants(r.type, r.service, r.district, r.severity)
                ]
                for values in wanted:
                    conn.execute(_upsert(conn.dialect.name, values))
            n += len(wanted)
            if len(rows) < REPLAY_PAGE:
                break
            after = rows[-1].seq
        lane.wake.set()
        return n

    def prune(self, *, attempts_older_than_ms: int, events_older_than_ms: int) -> tuple[int, int]:
        """Bound the store: delete delivery attempts older than the first cut, and events older
        than the second whose every delivery is finished (delivered, gone, expired), with
        those deliveries. Pending deliveries and their events are never deleted. Returns
        (attempts, events) deleted. Cases and their history are the city's record: kept."""
        with self.engine.begin() as conn:
            attempts = conn.execute(
                delete(delivery_attempts).where(delivery_attempts.c.at_ms < attempts_older_than_ms)
            ).rowcount
            pending = select(deliveries.c.event_seq).where(deliveries.c.status == "pending")
            old = select(events.c.seq).where(
                events.c.time_ms < events_older_than_ms, events.c.seq.not_in(pending)
            )
            old_seqs = list(conn.execute(old).scalars())
            for i in range(0, len(old_seqs), 500):
                chunk = old_seqs[i : i + 500]
                conn.execute(delete(deliveries).where(deliveries.c.event_seq.in_(chunk)))
                conn.execute(delete(events).where(events.c.seq.in_(chunk)))
        return attempts, len(old_seqs)

    def delivery_log(self, subscription: str, limit: int = 100) -> list[RowMapping]:
        q = (
            select(delivery_attempts)
            .where(delivery_attempts.c.subscription == subscription)
            .order_by(delivery_attempts.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(q).mappings())

    # -- one delivery -----------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock_s() * 1000)

    def _claim(self, sub: Subscription, n: int) -> list[RowMapping]:
        """Up to ``n`` due deliveries of ``sub``, leased to this dispatcher, with their events."""
        now = self._now_ms()
        free = or_(deliveries.c.claimed_until_ms.is_(None), deliveries.c.claimed_until_ms < now)
        due = and_(
            deliveries.c.subscription == sub.name,
            deliveries.c.status == "pending",
            deliveries.c.next_ms <= now,
            free,
        )
        with self.engine.begin() as conn:
            enabled = conn.execute(
                select(subscriptions.c.enabled).where(subscriptions.c.name == sub.name)
            ).scalar()
            if not enabled:
                return []
            seqs_due = list(
                conn.execute(
                    select(deliveries.c.event_seq)
                    .where(due)
                    .order_by(deliveries.c.next_ms, deliveries.c.event_seq)
                    .limit(n)
                    .with_for_update(skip_locked=True)  # PostgreSQL; SQLite's single writer serialises anyway
                ).scalars()
            )
            if not seqs_due:
                return []
            # One UPDATE for the batch, under a token of this claim; the SELECT after it reads
            # back exactly the rows this claim won (another dispatcher may have taken some).
            self._claims += 1
            token = f"{self.name}#{self._claims}"
            conn.execute(
                update(deliveries)
                .where(due, deliveries.c.event_seq.in_(seqs_due))
                .values(claimed_by=token, claimed_until_ms=now + int(self.settings.lease_s * 1000))
            )
            return list(
                conn.execute(
                    select(
                        events,
                        deliveries.c.attempts,
                        deliveries.c.created_ms.label("delivery_created_ms"),
                        deliveries.c.claimed_by,
                    )
                    .join(deliveries, deliveries.c.event_seq == events.c.seq)
                    .where(deliveries.c.subscription == sub.name, deliveries.c.claimed_by == token)
                    .order_by(events.c.seq)
                ).mappings()
            )

    def _event(self, row: RowMapping) -> CaseEvent:
        # Deliveries run concurrently and retries reorder them; the CloudEvents "sequence"
        # extension (zero-padded: it compares as a string) lets a receiver put them in order.
        ext = {"service": row["service"], "severity": row["severity"], "sequence": f"{row['seq']:020d}"}
        if row["district"]:
            ext["district"] = row["district"]
        return CaseEvent(
            id=row["id"],
            type=EVENT_TYPE_PREFIX + row["type"],
            source=self.settings.source,
            subject=f"cases/{row['case_id']}",
            time=datetime.fromtimestamp(row["time_ms"] / 1000, UTC),
            data=row["data"],
            extensions=ext,
        )

    def _attempt(
        self,
        sub: Subscription,
        row: RowMapping,
        healthy: bool = False,
        record: Callable[[tuple[RowMapping, Outcome, bool]], None] | None = None,
    ) -> Outcome:
        """One delivery attempt and its record (through ``record``, the lane's group commit,
        or a transaction of its own)."""
        secrets = [WebhookSecret(s.get_secret_value()) for s in sub.secrets]
        outcome = deliver(
            self._client,
            sub.url,
            self._event(row),
            sub.mode,
            secrets,
            timeout_s=sub.timeout_s,
            now=int(self._clock_s()),
            policy=self.policy,
        )
        if record is not None:
            record((row, outcome, healthy))
        else:
            self._record(sub, row, outcome, healthy=healthy)
        return outcome

    def _attempt_batch(self, sub: Subscription, rows: Sequence[RowMapping], healthy: bool) -> Outcome:
        """One request carrying several deliveries (a throttled receiver), one outcome for all,
        recorded in one transaction."""
        secrets = [WebhookSecret(s.get_secret_value()) for s in sub.secrets]
        outcome = deliver_batch(
            self._client,
            sub.url,
            [self._event(r) for r in rows],
            secrets,
            timeout_s=sub.timeout_s,
            now=int(self._clock_s()),
            policy=self.policy,
        )
        self._record_many(sub, [(r, outcome, healthy) for r in rows])
        return outcome

    def _record(self, sub: Subscription, row: RowMapping, o: Outcome, *, healthy: bool = False) -> None:
        self._record_many(sub, [(row, o, healthy)])

    def _record_many(self, sub: Subscription, items: Sequence[tuple[RowMapping, Outcome, bool]]) -> None:
        """The outcomes of several attempts in one transaction (one commit, one fsync), then
        the operator cases they raise."""
        cases: list[Condition] = []
        with self.engine.begin() as conn:
            for row, o, healthy in items:
                if (c := self._record_in(conn, sub, row, o, healthy)) is not None:
                    cases.append(c)
        for c in cases:
            self._cases.record(c)

    def _record_in(
        self, conn: Connection, sub: Subscription, row: RowMapping, o: Outcome, healthy: bool
    ) -> Condition | None:
        now = self._now_ms()
        seq = row["seq"]
        attempts = int(row["attempts"]) + 1
        raise_case: Condition | None = None
        # Only while the claim is still ours: a replay (or another dispatcher, after our lease
        # ran out) has made the delivery due again, and a late outcome must not undo that.
        mine = and_(
            deliveries.c.subscription == sub.name,
            deliveries.c.event_seq == seq,
            deliveries.c.status == "pending",
            deliveries.c.claimed_by == row["claimed_by"],
        )
        conn.execute(
            insert(delivery_attempts).values(
                subscription=sub.name,
                event_seq=seq,
                at_ms=now,
                outcome=o.status,
                http_status=o.http_status,
                elapsed_ms=int(o.elapsed_s * 1000),
                detail=o.detail,
            )
        )
        base: dict[str, Any] = {
            "attempts": attempts,
            "claimed_by": None,
            "claimed_until_ms": None,
            "last_http_status": o.http_status,
            "last_detail": o.detail,
        }
        if o.status == "delivered":
            conn.execute(update(deliveries).where(mine).values(**base, status="delivered", delivered_ms=now))
            if not healthy:  # the first success after failures (or since the lane started)
                conn.execute(
                    update(subscriptions)
                    .where(subscriptions.c.name == sub.name, subscriptions.c.failing_since_ms.is_not(None))
                    .values(failing_since_ms=None)
                )
            return None
        if o.status == "gone":
            conn.execute(update(deliveries).where(mine).values(**base, status="gone"))
            self._disable(conn, sub, f"the receiver answered 410 Gone: {o.detail}")
            raise_case = self._operator_case(
                sub, "gone", f"{sub.name}: the receiver asked to stop (410 Gone)"
            )
        else:
            at = next_attempt_at(
                attempts,
                self._rng,
                first_attempt_at=row["delivery_created_ms"] / 1000,
                now=now / 1000,
                retry_after_s=o.retry_after_s,
                schedule=self.settings.schedule,
            )
            if at is None:
                conn.execute(update(deliveries).where(mine).values(**base, status="expired"))
                raise_case = self._operator_case(
                    sub,
                    "expired",
                    f"{sub.name}: deliveries expired after retrying for a day ({o.detail})",
                )
            else:
                conn.execute(update(deliveries).where(mine).values(**base, next_ms=int(at * 1000)))
            since = conn.execute(
                select(subscriptions.c.failing_since_ms).where(subscriptions.c.name == sub.name)
            ).scalar()
            if since is None:
                conn.execute(
                    update(subscriptions).where(subscriptions.c.name == sub.name).values(failing_since_ms=now)
                )
            elif now - since >= sub.disable_after_s * 1000:
                days = (now - since) / 86_400_000
                self._disable(conn, sub, f"failing for {days:.1f} days without a success: {o.detail}")
                raise_case = self._operator_case(
                    sub, "failing", f"{sub.name}: disabled after failing for {days:.1f} days"
                )
        return raise_case

    def _disable(self, conn: Any, sub: Subscription, reason: str) -> None:
        conn.execute(
            update(subscriptions)
            .where(subscriptions.c.name == sub.name, subscriptions.c.enabled)
            .values(enabled=False, disabled_reason=reason)
        )
        log.warning("subscription %s disabled: %s", sub.name, reason)

    def _operator_case(self, sub: Subscription, what: str, title: str) -> Condition:
        return Condition(
            kind="opened",
            rule_id=f"system.webhook_{what}",
            subject=sub.name,
            service=OPERATIONS_SERVICE,
            severity="warning",
            title=title[:300],
            at_ns=time.time_ns(),
            detail=title,
            source="system",
        )


class _Lane:
    """One subscription's deliveries: a thread that claims, a pool that sends."""

    def __init__(self, dispatcher: Dispatcher, sub: Subscription) -> None:
        self.d = dispatcher
        self.sub = sub
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(
            max_workers=sub.max_concurrency, thread_name_prefix=f"webhook-{sub.name}"
        )
        self._inflight: set[Future[Outcome]] = set()
        self._lock = threading.Lock()
        self._paused_until = 0.0  # a Retry-After pauses the lane, not only the one delivery
        self._next_send = 0.0  # Subscription.min_interval_s
        # The receiver throttled: send what waits in batches until the backlog is gone.
        self._coalescing = False
        # Until a delivery succeeds (at start, and after any failure) the lane sends one at a
        # time: a receiver that is down or gone gets one probe, not max_concurrency requests.
        self._healthy = False
        self._group = _GroupCommit(lambda items: dispatcher._record_many(sub, items))

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"lane-{self.sub.name}", daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=False)

    def _run(self) -> None:
        stop = self.d._stop
        while not stop.is_set():
            try:
                self.pass_once(wait=False)
            except Exception:  # the database may be down: log and try again
                log.exception("lane %s: pass failed; retrying", self.sub.name)
            self.wake.wait(self.d.settings.poll_s)
            self.wake.clear()

    def pass_once(self, *, wait: bool) -> int:
        now = self.d._clock_s()
        if now < self._paused_until or now < self._next_send:
            return 0
        sub = self.sub
        batching = sub.batch_max > 1 and (self._coalescing or sub.min_interval_s > 0)
        with self._lock:
            cap = 1 if batching or sub.min_interval_s > 0 or not self._healthy else sub.max_concurrency
            free = cap - len(self._inflight)
        if free <= 0:
            return 0
        rows = self.d._claim(sub, sub.batch_max if batching else free)
        if rows and sub.min_interval_s > 0:
            self._next_send = now + sub.min_interval_s
        futures = []
        if batching and rows:
            if len(rows) < sub.batch_max:
                self._coalescing = False  # the backlog fits in this one: back to one by one
            futures.append(self._pool.submit(self.d._attempt_batch, sub, rows, self._healthy))
        else:
            for row in rows:
                futures.append(
                    self._pool.submit(self.d._attempt, sub, row, self._healthy, self._group.record)
                )
        for f in futures:
            with self._lock:
                self._inflight.add(f)
            f.add_done_callback(self._done)
        if wait:
            for f in futures:
                f.exception()  # waits
                self._done(f)  # its callback may not have run yet; recording twice is harmless
        return len(rows)

    def _done(self, f: Future[Outcome]) -> None:
        with self._lock:
            self._inflight.discard(f)
        if not f.cancelled() and (exc := f.exception()) is not None:
            # The attempt's record did not commit (the store is down?): the lease expires and
            # the delivery is attempted again.
            log.warning("lane %s: attempt not recorded: %s", self.sub.name, exc)
        elif not f.cancelled():
            o = f.result()
            self._healthy = o.status == "delivered"
            if o.retry_after_s:
                self._paused_until = max(self._paused_until, self.d._clock_s() + o.retry_after_s)
            if o.http_status == 429 or o.retry_after_s:
                self._coalescing = True
        self.wake.set()  # a worker is free


class _GroupCommit:
    """Outcomes of a lane's concurrent attempts recorded together: the first worker to arrive
    records everything queued in one transaction while the others wait for it, and each
    returns once its own outcome is committed (or its transaction failed: then the delivery's
    lease expires and it is attempted again)."""

    def __init__(self, flush: Callable[[list[tuple[RowMapping, Outcome, bool]]], None]) -> None:
        self._flush = flush
        self._cond = threading.Condition()
        self._queue: list[tuple[RowMapping, Outcome, bool]] = []
        self._queued = 0  # items ever queued
        self._done = 0  # items whose transaction has ended
        self._flushing = False

    def record(self, item: tuple[RowMapping, Outcome, bool]) -> None:
        with self._cond:
            self._queue.append(item)
            self._queued += 1
            mine = self._queued
            while self._done < mine:
                if self._flushing:
                    self._cond.wait()
                    continue
                batch, self._queue, upto, self._flushing = self._queue, [], self._queued, True
                self._cond.release()
                try:
                    self._flush(batch)
                finally:
                    self._cond.acquire()
                    self._flushing = False
                    self._done = upto
                    self._cond.notify_all()


def _upsert(dialect: str, values: dict[str, Any]) -> Any:
    ins: Any = postgresql.insert(deliveries) if dialect == "postgresql" else sqlite.insert(deliveries)
    ins = ins.values(**values)
    return ins.on_conflict_do_update(
        index_elements=["subscription", "event_seq"],
        set_={
            **{k: values[k] for k in ("status", "next_ms", "created_ms", "attempts")},
            "claimed_by": None,
            "claimed_until_ms": None,
        },
    )
