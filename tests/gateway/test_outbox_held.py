"""Held readings in the outbox: moved in the answer's transaction, bounded like every other reading,
counted exactly, retried when due, released or discarded by an operator."""

from __future__ import annotations

import sqlite3

from citygate.gateway.outbox import SCHEMA_VERSION, DeadLetter, Hold, NewReading, Outbox, OutboxLimits

NOW = 10**18


def _r(i: int, size: int = 100, device: str = "d1", received_ns: int | None = None) -> NewReading:
    return NewReading(device, i, received_ns if received_ns is not None else NOW + i, b"x" * size)


def _row(r: NewReading) -> int:
    return len(r.body) + len(r.device_id) + 40


def _outbox(tmp_path, **limits: object) -> Outbox:
    return Outbox(tmp_path / "o.db", OutboxLimits(min_free_disk_bytes=0, **limits))  # type: ignore[arg-type]


def _hold_all(ob: Outbox, reason: str = "cloud_unknown_device", retry_ns: int = NOW + 10**12) -> None:
    batch = ob.oldest(1000)
    ob.lease(r.id for r in batch)
    ob.confirm(
        [r.id for r in batch], holds=[Hold(r.id, reason, "not known") for r in batch], retry_ns=retry_ns
    )


def test_a_held_reading_leaves_the_queue_but_not_the_outbox(tmp_path):
    ob = _outbox(tmp_path)
    ob.commit([_r(i) for i in range(5)], now_ns=NOW, free_disk=10**12)
    batch = ob.oldest(5)
    ob.confirm(
        [r.id for r in batch],
        [DeadLetter(NOW, "d1", "cloud_out_of_range", "final", batch[0].body)],
        [
            Hold(batch[1].id, "cloud_unknown_device", "not known"),
            Hold(batch[2].id, "cloud_unknown_device", "x"),
        ],
        retry_ns=NOW + 100,
    )
    st = ob.stats()
    assert st.depth == 0
    assert st.held == {"cloud_unknown_device": 2}
    assert st.oldest_held_received_ns == NOW + 1
    assert st.counters["readings_out"] == 2  # 5 answered: 2 stored, 1 final, 2 held
    assert st.counters["rejected.cloud_out_of_range"] == 1
    assert st.counters["held_in.cloud_unknown_device"] == 2
    # Not due before retry_ns; due after; the bodies are the stored wire form.
    assert ob.held_due(10, NOW) == []
    due = ob.held_due(10, NOW + 100)
    assert [(r.seq, r.body) for r in due] == [(1, batch[1].body), (2, batch[2].body)]


def test_settling_held_readings_stores_keeps_or_finalises_each(tmp_path):
    ob = _outbox(tmp_path)
    ob.commit([_r(i) for i in range(3)], now_ns=NOW, free_disk=10**12)
    _hold_all(ob, retry_ns=0)
    a, b, c = ob.held_due(10, NOW)
    ob.lease_held([a.id, b.id, c.id])
    ob.settle_held(
        [a.id, b.id, c.id],
        [(b.id, DeadLetter(NOW, "d1", "cloud_unknown_device", "final now", b.body))],
        [Hold(c.id, "cloud_timestamp_too_old", "still")],
        retry_ns=NOW + 5,
    )
    st = ob.stats()
    assert st.held == {"cloud_timestamp_too_old": 1}
    assert st.counters["readings_out"] == 1 and st.counters["held_stored"] == 1
    assert st.counters["rejected.cloud_unknown_device"] == 1
    assert [r.seq for r in ob.held_due(10, NOW + 5)] == [2]
    assert ob.held_readings(10)[0][4] == 2  # attempts


def test_held_readings_count_in_the_byte_bound_and_go_oldest_first(tmp_path):
    size = _row(_r(0))
    ob = _outbox(tmp_path, max_bytes=size * 10)
    ob.commit([_r(i) for i in range(4)], now_ns=NOW, free_disk=10**12)
    _hold_all(ob)
    ob.commit([_r(i) for i in range(4, 10)], now_ns=NOW, free_disk=10**12)  # full: 4 held + 6 queued
    res = ob.commit([_r(i) for i in range(10, 13)], now_ns=NOW, free_disk=10**12)
    assert res.stored == 3
    st = ob.stats()
    assert st.counters["dropped.overflow_oldest"] == 3
    assert st.held == {"cloud_unknown_device": 1}  # the three oldest were held ones
    assert [r.seq for r in ob.held_readings(10)[0][:1]] == [3]
    assert st.depth == 9
    # Reopened, the bytes of held rows are counted again.
    ob.close()
    again = _outbox(tmp_path, max_bytes=size * 10)
    assert again.commit([_r(13)], now_ns=NOW, free_disk=10**12).stored == 1
    assert again.stats().counters["dropped.overflow_oldest"] == 4


def test_held_readings_expire_with_the_outbox_max_age(tmp_path):
    ob = _outbox(tmp_path, max_age_s=60)
    ob.commit([_r(i, received_ns=NOW) for i in range(3)], now_ns=NOW, free_disk=10**12)
    _hold_all(ob)
    ob.commit([], now_ns=NOW + 61 * 10**9, free_disk=10**12)
    st = ob.stats()
    assert st.held == {} and st.counters["dropped.max_age"] == 3


def test_the_held_batch_in_flight_is_not_dropped(tmp_path):
    size = _row(_r(0))
    ob = _outbox(tmp_path, max_bytes=size * 3)
    ob.commit([_r(i) for i in range(3)], now_ns=NOW, free_disk=10**12)
    _hold_all(ob, retry_ns=0)
    ob.lease_held(r.id for r in ob.held_due(10, NOW))
    res = ob.commit([_r(3)], now_ns=NOW, free_disk=10**12)
    assert res.stored == 0 and ob.stats().held == {"cloud_unknown_device": 3}


def test_release_makes_held_due_now_and_discard_dead_letters_them(tmp_path):
    ob = _outbox(tmp_path)
    ob.commit([_r(0, device="a"), _r(1, device="b"), _r(2, device="b")], now_ns=NOW, free_disk=10**12)
    _hold_all(ob)
    assert ob.held_due(10, NOW) == []
    assert ob.count_held(device_id="a") == 1
    assert ob.retry_held_now(device_id="a") == 1
    assert [r.device_id for r in ob.held_due(10, NOW)] == ["a"]
    assert ob.discard_held(device_id="b") == 2
    st = ob.stats()
    assert st.held == {"cloud_unknown_device": 1}
    assert st.counters["dropped.operator_discarded"] == 2
    assert not any(k.startswith("rejected.") for k in st.counters)
    letters = ob.deadletters()
    assert {d.device_id for d in letters} == {"b"} and "held for: not known" in letters[0].detail


def test_a_version_1_outbox_gains_the_held_table_in_place(tmp_path):
    path = tmp_path / "o.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE readings (id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, seq INTEGER, "
        "received_ns INTEGER NOT NULL, body BLOB NOT NULL);"
        "INSERT INTO readings(device_id, seq, received_ns, body) VALUES('d1', 0, 1, x'7b7d');"
    )
    db.commit()
    db.close()
    ob = Outbox(path)
    assert ob.stats().depth == 1 and ob.stats().held == {}
    # The old outbox counted its row when it stored it: not counted again on the way up.
    assert ob.stats().counters.get("readings_in", 0) == 0
    ob.close()
    db = sqlite3.connect(path)
    (version,) = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    db.close()
    assert version == str(SCHEMA_VERSION) == "4"


def test_the_heartbeat_folds_rare_held_reasons_past_the_clouds_limit():
    from citygate.gateway.health import MAX_HELD_REASONS, _capped

    held = {f"cloud_r{i:02d}": i + 1 for i in range(40)}
    out = _capped(held)
    assert len(out) == MAX_HELD_REASONS and sum(out.values()) == sum(held.values())
    assert out["cloud_r39"] == 40 and "cloud_r00" not in out


def test_a_discard_from_another_process_gives_the_room_back_at_the_next_look(tmp_path):
    size = _row(_r(0))
    agent = _outbox(tmp_path, max_bytes=size * 3)
    agent.commit([_r(i) for i in range(3)], now_ns=NOW, free_disk=10**12)
    _hold_all(agent)
    assert agent.commit([_r(3)], now_ns=NOW, free_disk=10**12).stored == 1  # full: the oldest held went
    operator = _outbox(tmp_path, max_bytes=size * 3)  # citygate gateway held discard
    assert operator.discard_held() == 2
    operator.close()
    agent.refresh_held_bytes()
    res = agent.commit([_r(4), _r(5)], now_ns=NOW, free_disk=10**12)
    assert res.stored == 2 and agent.stats().counters.get("dropped.overflow_oldest") == 1
