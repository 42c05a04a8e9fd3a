"""The board's refreshes: at most one per interval whatever happens, a failed one included
(the store down: 503 before any success, the last figures marked stale after one)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import text

from citygate.cloud.ratelimit import client_key
from citygate.progress.board import ProgressBoard
from citygate.progress.settings import ProgressSettings
from citygate.service.db import make_engine, migrate, sqlite_url
from citygate.service.settings import ServiceSettings
from tests.progress.seeding import DAY_MS, Seed, insert_cases


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _board(url: str, clock: Clock) -> ProgressBoard:
    service = ServiceSettings(enabled=True, store_url=url)
    return ProgressBoard(ProgressSettings(enabled=True, refresh_s=60), service, monotonic=clock)


def test_a_store_that_is_down_is_asked_once_per_interval(tmp_path: Path) -> None:
    clock = Clock()
    board = _board(sqlite_url(tmp_path / "no" / "such" / "dir.db"), clock)

    async def main() -> None:
        for _ in range(5):
            rendered, left = await board.current()
            assert rendered is None and 0 <= left <= 60
        assert (board.failures, board.cache.computed) == (1, 1)
        clock.t += 61
        rendered, _ = await board.current()
        assert rendered is None and board.failures == 2

    asyncio.run(main())
    board.close()


def test_after_a_success_a_failure_serves_the_last_figures_marked_stale(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "s.db")
    engine = make_engine(url)
    migrate(engine)
    now = int(time.time() * 1000)
    insert_cases(engine, [Seed("waste", "north", "sensor", now - DAY_MS) for _ in range(6)])
    clock = Clock()
    board = _board(url, clock)

    async def main() -> None:
        good, _ = await board.current()
        assert good is not None and not good.progress.stale
        assert good.progress.services[0].total.open == 6
        with engine.begin() as conn:  # the store breaks
            conn.execute(text("ALTER TABLE cases RENAME TO cases_away"))
        clock.t += 61
        stale, _ = await board.current()
        assert stale is not None and stale.progress.stale and board.failures == 1
        assert stale.progress.services == good.progress.services
        assert stale.etag != good.etag  # a client holding the good one learns it is stale
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE cases_away RENAME TO cases"))
        clock.t += 61
        back, _ = await board.current()
        assert back is not None and not back.progress.stale

    asyncio.run(main())
    board.close()
    engine.dispose()


def test_clients_are_keyed_by_address_and_ipv6_by_its_64() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "unknown"
