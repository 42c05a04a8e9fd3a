"""The public page in headless Chromium against the real cloud: no sign-in, nothing from
outside loopback, no Content-Security-Policy violation, and every figure it shows is the
JSON's, formatted as people read it; at a phone's 390 px too, without sideways scrolling, the
districts as cards.

Screenshots go to the test's directory, and to docs/img/progress-{desktop,phone}.png (README's)
when CITYGATE_SCREENSHOTS names a directory:

    CITYGATE_SCREENSHOTS=docs/img .venv/bin/python -m pytest -q tests/progress/test_page_browser.py
"""

from __future__ import annotations

import base64
import math
import os
import random
import time
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from citygate.progress.settings import ProgressSettings
from citygate.service.db import make_engine, sqlite_url
from citygate.service.settings import ServiceSettings, ServiceTarget
from tests.cloud.conftest import RunningCloud
from tests.dashboard.test_dashboard_browser import (
    _outside_loopback,
    _requested,
    _severe,
    _wait,
    browser,
    pytestmark,
)
from tests.progress.seeding import DAY_MS, HOUR_MS, Seed, city_cases, insert_cases

__all__ = ["browser", "pytestmark"]

TARGETS = {
    "waste": ServiceTarget(acknowledge_s=4 * 3600, resolve_s=2 * 86_400),
    "roads": ServiceTarget(acknowledge_s=86_400, resolve_s=7 * 86_400),
}


# -- the page's formatting, in Python (progress.js: count, duration, share) -------------------


def _js_round(x: float) -> int:
    return math.floor(x + 0.5)  # Math.round: halves up, unlike Python's round


def _fixed1(x: float) -> str:
    return str(Decimal(x).quantize(Decimal("0.1"), ROUND_HALF_UP))  # toFixed(1) of the exact double


def duration(s: int) -> str:
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{_js_round(s / 60)} min"
    if s < 172_800:
        return f"{_fixed1(s / 3600)} h"
    return f"{_fixed1(s / 86_400)} d"


def count(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def share(v: Any) -> str:
    return f"{_js_round(v * 100)} %" if isinstance(v, int | float) else str(v)


def _times(d: Any) -> tuple[str, str]:
    return (d, d) if isinstance(d, str) else (duration(d["p50_s"]), duration(d["p90_s"]))


def _ages(a: Any) -> tuple[str, str]:
    return (a, a) if isinstance(a, str) else (duration(a["median_s"]), duration(a["oldest_s"]))


def expected_service(s: dict[str, Any]) -> dict[str, str]:
    t = s["total"]
    median, oldest = _ages(t["open_age"])
    ack50, ack90 = _times(t["acknowledge"])
    close50, close90 = _times(t["close"])
    figs = {
        "open": count(t["open"]),
        "open-median": median,
        "open-oldest": oldest,
        "ack-p50": ack50,
        "ack-p90": ack90,
        "close-p50": close50,
        "close-p90": close90,
        "open-sensor": count(s["open_by_source"]["sensor"]),
        "open-citizen": count(s["open_by_source"]["citizen"]),
        "opened": count(s["opened"]),
        "opened-sensor": count(s["opened_by_source"]["sensor"]),
        "opened-citizen": count(s["opened_by_source"]["citizen"]),
        "closed": count(s["closed"]),
    }
    if s["target"] is not None:
        figs["past-target"] = count(t["open_past_target"])
        figs["close-share"] = share(t["closed_within_target"])
        figs["ack-share"] = share(t["acknowledged_within_target"])
    return figs


def expected_district(a: dict[str, Any], has_target: bool) -> dict[str, str]:
    median, oldest = _ages(a["open_age"])
    figs = {
        "open": count(a["open"]),
        "open-median": median,
        "open-oldest": oldest,
        "ack-p50": _times(a["acknowledge"])[0],
        "close-p50": _times(a["close"])[0],
    }
    if has_target:
        figs["past-target"] = count(a["open_past_target"])
        figs["close-share"] = share(a["closed_within_target"])
    return figs


# -- what the page shows ---------------------------------------------------------------------

SHOWN = """
const out = { city: {}, services: {} };
for (const e of document.querySelectorAll("#city [data-fig]")) out.city[e.dataset.fig] = e.textContent;
for (const sec of document.querySelectorAll("section.service")) {
  const s = { figs: {}, districts: {}, weeks: [] };
  for (const e of sec.querySelectorAll(":scope > .kpis [data-fig], :scope > .sources [data-fig]")) {
    s.figs[e.dataset.fig] = e.textContent;
  }
  for (const tr of sec.querySelectorAll("table.districts tbody tr")) {
    const d = {};
    for (const td of tr.querySelectorAll("[data-fig]")) d[td.dataset.fig] = td.textContent;
    s.districts[tr.dataset.district] = d;
  }
  for (const tr of sec.querySelectorAll("table.weeks tbody tr")) {
    s.weeks.push([...tr.querySelectorAll("td")].map((td) => td.textContent));
  }
  s.bars = sec.querySelectorAll("figure.chart .week").length;
  out.services[sec.dataset.service] = s;
}
return out;
"""


def _shown(browser: Any) -> dict[str, Any]:
    got: dict[str, Any] = browser.execute_script(SHOWN)
    return got


def _assert_page_matches(browser: Any, doc: dict[str, Any]) -> None:
    shown = _shown(browser)
    city = doc["city"]
    assert shown["city"] == {k: count(city[k]) for k in ("open", "opened", "closed")}
    assert list(shown["services"]) == [s["service"] for s in doc["services"]]
    for s in doc["services"]:
        page = shown["services"][s["service"]]
        assert page["figs"] == expected_service(s), s["service"]
        has_target = s["target"] is not None
        for a in s["districts"]:
            key = a["district"] if a["district"] is not None else ""
            assert page["districts"][key] == expected_district(a, has_target), (s["service"], key)
        t = s["total"]
        assert page["weeks"] == [
            [count(o), count(c)] for o, c in zip(t["opened_per_week"], t["closed_per_week"], strict=True)
        ]
        assert page["bars"] == len(doc["weeks"])


def _screenshot(browser: Any, path: Path, width: int, max_height: int) -> None:
    """The page from its top, ``width`` CSS pixels wide, at most ``max_height`` tall."""
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": min(height, max_height), "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def _seed(url: str) -> None:
    now = int(time.time() * 1000)
    seeds = city_cases(random.Random(7), now)
    # A district with too few cases to show, and one case without a district.
    seeds += [Seed("waste", "airport", "citizen", now - 3 * DAY_MS, title="Bin full at gate 4")]
    seeds += [Seed("roads", None, "citizen", now - 5 * HOUR_MS, title="Pothole at number 12")]
    engine = make_engine(url)
    insert_cases(engine, seeds)
    engine.dispose()


def test_the_page_shows_the_json_on_a_desktop_and_a_phone(
    cloud_factory: Callable[..., RunningCloud], browser: Any, tmp_path: Path
) -> None:
    url = sqlite_url(tmp_path / "service.db")
    service = ServiceSettings(enabled=True, store_url=url, targets=TARGETS, timezone="Europe/Berlin")
    progress = ProgressSettings(enabled=True, refresh_s=3600, title="How fast Musterstadt acts")
    cloud = cloud_factory(service=service, progress=progress, client_cert_mode="optional")
    _seed(url)
    doc = cloud.client().get("/public/v1/progress").json()
    assert doc["title"] == "How fast Musterstadt acts" and len(doc["services"]) == 3
    out = Path(os.environ.get("CITYGATE_SCREENSHOTS", "") or tmp_path)

    browser.set_window_size(1280, 900)
    _requested(browser)  # what Chromium fetched before the page is not the page's
    browser.get(f"{cloud.url}/public")
    _wait(
        lambda: browser.execute_script("return document.body.dataset.loaded || null;"),
        what="the figures drawn",
    )
    assert browser.title == "How fast Musterstadt acts"
    _assert_page_matches(browser, doc)
    assert "< 5" in _shown(browser)["services"]["waste"]["districts"]["airport"]["open"]
    assert "Pothole" not in browser.page_source and "gate 4" not in browser.page_source
    assert _outside_loopback(_requested(browser)) == []
    assert _severe(browser) == []  # a CSP violation would be a console error
    _screenshot(browser, out / "progress-desktop.png", 1280, 2400)

    # A phone: 390 CSS pixels wide; one column, the districts as cards, nothing wider than the screen.
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
    )
    browser.get(f"{cloud.url}/public")
    _wait(
        lambda: browser.execute_script("return document.body.dataset.loaded || null;"),
        what="the figures drawn",
    )
    _assert_page_matches(browser, doc)
    layout = browser.execute_script(
        """
        const tr = document.querySelector("table.districts tbody tr");
        return {
          width: document.documentElement.scrollWidth,
          viewport: window.innerWidth,
          head: getComputedStyle(document.querySelector("table.districts thead")).display,
          row: getComputedStyle(tr).display,
          kpiColumns: getComputedStyle(document.querySelector(".kpis")).gridTemplateColumns.split(" ").length,
        };
        """
    )
    assert layout["viewport"] == 390
    assert layout["width"] <= 390, layout
    assert layout == layout | {"head": "none", "row": "grid", "kpiColumns": 2}
    assert _outside_loopback(_requested(browser)) == []
    assert _severe(browser) == []
    _screenshot(browser, out / "progress-phone.png", 390, 1900)
