"""The public page and its JSON on the real cloud (mutual TLS listener, service layer on, its
SQLite store), asked by a client with no certificate and no token.

One refresh per interval whatever the traffic: a burst of concurrent requests costs one
computation, counted in the store's own statements (SQLAlchemy's ``before_cursor_execute``),
and the same requests again cost none. Per address, beyond the burst: 429 + Retry-After.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event

from citygate.progress.api import CONTENT_SECURITY_POLICY
from citygate.progress.settings import ProgressSettings
from citygate.progress.stats import QUERIES_PER_REFRESH
from tests.cloud.conftest import RunningCloud
from tests.cloud.service_cloud import service_cloud
from tests.progress.seeding import DAY_MS, HOUR_MS, Seed, insert_cases

SECRET_WORDS = ("Pothole outside number 12", "jane-doe-report", "bay-0042", "market square", "50.1")


def _cloud(
    cloud_factory: Callable[..., RunningCloud], tmp_path: Path, **progress: Any
) -> tuple[RunningCloud, Engine]:
    settings = ProgressSettings(enabled=True, **progress)
    cloud, store = service_cloud(cloud_factory, tmp_path, client_cert_mode="optional", progress=settings)
    return cloud, store.engine


def _seed(engine: Engine) -> None:
    now = int(time.time() * 1000)
    seeds = [
        Seed(
            "waste",
            "north",
            "citizen",
            now - (i + 1) * HOUR_MS,
            title=SECRET_WORDS[0],
            subject=f"{SECRET_WORDS[1]}-{i}",
        )
        for i in range(7)
    ]
    seeds += [Seed("parking", "north", "sensor", now - DAY_MS, subject=SECRET_WORDS[2])]
    seeds += [Seed("ops", "north", "system", now - DAY_MS, title="citygate internal")]
    insert_cases(engine, seeds)


@contextmanager
def _statements(of: Callable[[], Engine]) -> Iterator[list[str]]:
    """Every statement any engine runs meanwhile, kept if it ran on ``of()``'s engine (known only
    once the page's board exists)."""
    seen: list[tuple[Engine, str]] = []
    mine: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append((conn.engine, statement))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield mine
    finally:
        event.remove(Engine, "before_cursor_execute", record)
        target = of()
        mine.extend(s for e, s in seen if e is target)


def test_the_page_and_its_figures_need_no_sign_in(
    cloud_factory: Callable[..., RunningCloud], tmp_path: Path
) -> None:
    cloud, engine = _cloud(cloud_factory, tmp_path)
    _seed(engine)
    anyone = cloud.client()  # no certificate, no token

    page = anyone.get("/public")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY and "http" not in page.text.replace(
        "http-equiv", ""
    )
    assert page.headers["ratelimit-limit"] == "30" and "ratelimit-remaining" in page.headers
    for name, kind in (("progress.js", "text/javascript"), ("progress.css", "text/css")):
        r = anyone.get(f"/public/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert (
            anyone.get(f"/public/static/{name}", headers={"If-None-Match": r.headers["etag"]}).status_code
            == 304
        )
    assert anyone.get("/public/static/../settings.py").status_code == 404
    assert anyone.get("/public/static/index.html").status_code == 404

    r = anyone.get("/public/v1/progress")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert r.headers["cache-control"].startswith("public, max-age=")
    assert r.headers["access-control-allow-origin"] == "*"
    assert [s["service"] for s in doc["services"]] == ["parking", "waste"]  # no "ops": system cases
    waste = doc["services"][1]
    assert waste["total"]["open"] == 7
    # No sensor case: 0, hidden; the 7 citizen cases too, else 7 - 7 gives the 0 away.
    assert waste["open_by_source"] == {"sensor": "< 5", "citizen": "< 5"}
    assert waste["total"]["open_age"]["oldest_s"] >= 7 * 3600
    assert doc["services"][0]["total"]["open"] == "< 5"  # one parking case: not shown
    assert doc["city"]["open"] == "< 5"  # 7 + 1, and the 1 must not be worked out from it
    for word in (*SECRET_WORDS, "citygate internal", "subject", "latitude"):
        assert word not in r.text, word
    again = anyone.get("/public/v1/progress", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_concurrent_requests_cost_one_computation(
    cloud_factory: Callable[..., RunningCloud], tmp_path: Path
) -> None:
    cloud, engine = _cloud(cloud_factory, tmp_path, refresh_s=3600, burst=500)
    _seed(engine)
    n = 40
    start = threading.Barrier(n)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def ask() -> None:
        c = cloud.client()
        start.wait()  # all of them at once, before any figures exist
        r = c.get("/public/v1/progress")
        with lock:
            answers.append(r)

    board = lambda: cloud.app.state.progress  # noqa: E731
    with _statements(lambda: board().engine) as first:
        threads = [threading.Thread(target=ask) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert [r.status_code for r in answers] == [200] * n
    assert len({r.content for r in answers}) == 1
    assert board().cache.computed == 1
    assert len(first) == QUERIES_PER_REFRESH  # what one computation asks of the store, once

    with _statements(lambda: board().engine) as later:
        for _ in range(20):
            assert cloud.client().get("/public/v1/progress").status_code == 200
    assert later == [] and board().cache.computed == 1


def test_beyond_the_burst_an_address_is_refused_with_retry_after(
    cloud_factory: Callable[..., RunningCloud], tmp_path: Path
) -> None:
    cloud, _ = _cloud(cloud_factory, tmp_path, burst=3, rate_per_minute=1)
    c = cloud.client()
    got = [c.get(path) for path in ("/public", "/public/static/progress.js", "/public/v1/progress")]
    assert [r.status_code for r in got] == [200, 200, 200]
    assert [r.headers["ratelimit-remaining"] for r in got] == ["2", "1", "0"]
    refused = c.get("/public/v1/progress")
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1 and refused.headers["ratelimit-remaining"] == "0"
    assert c.get("/public").status_code == 429  # the page and its files share the bucket


@pytest.mark.parametrize("path", ["/public", "/public/v1/progress", "/public/static/progress.js"])
def test_off_it_is_not_there(cloud_factory: Callable[..., RunningCloud], tmp_path: Path, path: str) -> None:
    cloud, _ = service_cloud(cloud_factory, tmp_path, client_cert_mode="optional")
    r = cloud.client().get(path)
    assert r.status_code == 404 and r.json()["error"] == "progress_off"
