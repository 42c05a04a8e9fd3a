"""The outbox on a disk that really fills up: the drop policy engages and every commit succeeds.

With checkpoints in their own thread (the agent's), the write-ahead log holds megabytes of
pages the database file has not grown for yet: the checkpoint that copies them in needs that
room. Counting only statvfs's free space against the floor, the outbox let a full disk take
that room, its checkpoints then failed for want of space, every commit after them too, and the
drop policy never engaged (found by the long disk-full chaos run, scenario 6).

Root only: the test mounts a small tmpfs (CI runs as root).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from citygate.fsutil import disk_free
from citygate.gateway.outbox import NewReading, Outbox, OutboxLimits, OverflowPolicy

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root only)")

_MB = 1024 * 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    fs = tmp_path / "fs"
    fs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(fs)], check=True)
    try:
        yield fs
    finally:
        subprocess.run(["umount", "-l", str(fs)], check=False)


def _group(start: int, n: int = 200) -> list[NewReading]:
    body = os.urandom(90).hex().encode()  # 180 B, about a compact row's payload
    return [NewReading(f"dev-{i % 50}", i, 1_000 + i, body) for i in range(start, start + n)]


def test_a_disk_filled_from_outside_engages_the_drop_policy(small_fs: Path) -> None:
    min_free = 2 * _MB
    ob = Outbox(
        small_fs / "outbox.db",
        OutboxLimits(min_free_disk_bytes=min_free, policy=OverflowPolicy.DROP_OLDEST),
        background_checkpoints=True,
    )
    try:
        ob.commit(_group(0), now_ns=2_000)
        n = 200
        # Filled from outside to 3 MB above the floor; then 10 MB of readings come in, which
        # the WAL holds (its checkpoints wait for 8,000 frames) until the floor is near.
        ballast = small_fs / "ballast"
        ballast.write_bytes(b"\0" * max(0, disk_free(small_fs) - min_free - 3 * _MB))
        for _ in range(200):
            ob.commit(_group(n), now_ns=2_000)  # raised OutboxWriteError (disk full) before
            n += 200
            assert disk_free(small_fs) >= min_free // 2
        st = ob.stats()
        assert st.counters.get("dropped.overflow_oldest", 0) > 0
        assert disk_free(small_fs) >= min_free // 2
        dropped = st.counters["dropped.overflow_oldest"] + st.counters.get("dropped.outbox_full", 0)
        assert st.depth + dropped == n  # each reading stored or counted as dropped
    finally:
        ob.close()
