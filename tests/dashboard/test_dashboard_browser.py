"""The operator dashboard in headless Chromium against the real cloud service.

The page loads with its own assets only (the vendored uPlot and Leaflet too), signs in
with an operator token, shows the fleet, draws its charts with time axes, units and
hover values, puts a marker on its map for each device and gateway that has a position,
and reflects a gateway going offline. Nothing is fetched from outside loopback: without
``dashboard_tile_url`` the map has no tiles, and with it (a tile server on loopback
here) the tiles come from that server only.

The screenshot it takes stays in the test's directory: README's docs/dashboard.png is
taken from ``citygate demo --outage 40s`` with data flowing, not from this fixture.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import re
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from citygate.contract.inventory import Inventory
from citygate.contract.wire import GatewayHealth
from tests.cloud.conftest import (
    OPERATOR_TOKEN,
    OTHER_GATEWAY,
    aq_values,
    post_batch,
    reading,
    write_inventory,
)

pytestmark = [
    pytest.mark.servers,
    # Skipped on a developer machine without a browser; never skipped in CI (CI=true).
    pytest.mark.skipif(
        not (shutil.which("chromium") and shutil.which("chromedriver")) and not os.environ.get("CI"),
        reason="Debian chromium and chromium-driver are needed (make test installs them)",
    ),
]
S = 1_000_000_000
# A tick label of the charts' time axes: 14:05 or 14:05:30, the date where the day changes.
TIME_TICK = re.compile(r"^[0-2][0-9]:[0-5][0-9](:[0-5][0-9])?( [0-9]{1,2} [A-Z][a-z]{2})?$")
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def _png(rgb: tuple[int, int, int]) -> bytes:
    """A 1x1 PNG of one colour: what the loopback tile server answers for every tile."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" + bytes(rgb))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


# Runs before the page's own script: records every series request the page makes and its answer.
RECORD_SERIES = """
window.__series = [];
const pageFetch = window.fetch;
window.fetch = async (...args) => {
  const resp = await pageFetch(...args);
  const url = String(args[0]);
  if (url.includes("/series")) {  // in the order the page asked; the body when it is read
    const entry = { url, status: resp.status, body: null };
    window.__series.push(entry);
    resp.clone().json().then((body) => { entry.body = body; }, () => {});
  }
  return resp;
};
"""


def _health(backlog: int, held: dict[str, int] | None = None) -> str:
    return GatewayHealth(
        agent_version="0.1.0",
        uptime_s=100.0,
        readings_in=1000 + backlog,
        readings_out=1000,
        rejected={"out_of_range": 2},
        dropped={},
        outbox_depth=backlog,
        outbox_bytes=backlog * 150,
        held=held or {},
        oldest_held_age_s=10800.0 if held else None,
        oldest_unsent_age_s=3.0 if backlog else None,
        disk_free_bytes=10**10,
        rss_bytes=70 * 10**6,
        cpu_percent=12.0,
        broker_connected=True,
        cert_days_left=300.0,
    ).model_dump_json()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--ignore-certificate-errors",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1400,1000",
    ):
        opts.add_argument(arg)
    # Every request the page makes (Network.requestWillBeSent), and the console at every level.
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    yield driver
    driver.quit()


def _wait(pred: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out: {what}")


def _when(ns: int) -> str:
    """A time as the charts' legends show it: the browser's local time (the machine's here)."""
    t = dt.datetime.fromtimestamp(ns / S)
    return f"{t.day} {t:%b %H:%M:%S}"


def _requested(browser: Any) -> list[str]:
    """Every URL the page asked for since the last call (Chromium's performance log)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _outside_loopback(urls: list[str]) -> list[str]:
    """The URLs that went on the network to anywhere but loopback (data:, and Chromium's own
    chrome:// pages before the first navigation, never leave the browser)."""
    local = {"data", "blob", "about", "chrome"}
    return [u for u in urls if urlsplit(u).scheme not in local and urlsplit(u).hostname not in LOOPBACK]


def _severe(browser: Any, allowed: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    logs = browser.get_log("browser")
    return [
        e for e in logs if e.get("level") == "SEVERE" and not any(a in e.get("message", "") for a in allowed)
    ]


def _chart(browser: Any, selector: str) -> dict[str, Any]:
    """What a uPlot chart drew: its time axis labels, its y axis label, legend and point count."""
    got: dict[str, Any] = browser.execute_script(
        """
        const root = document.querySelector(arguments[0] + " .uplot");
        if (!root) return {};
        return {
          xTicks: (root.dataset.xTicks || "").split("|").filter(Boolean),
          yLabel: root.dataset.yLabel,
          points: Number(root.dataset.points || 0),
          canvas: !!root.querySelector("canvas"),
          legend: [...root.querySelectorAll(".u-legend .u-series")].map(
            (r) => `${r.querySelector(".u-label").innerText} ${r.querySelector(".u-value").innerText}`
          ),
          label: root.getAttribute("aria-label"),
        };
        """,
        selector,
    )
    return got


def _markers(browser: Any) -> dict[str, dict[str, str]]:
    """The map's markers: {"devices": {id: status}, "gateways": {id: status}}."""
    got: dict[str, dict[str, str]] = browser.execute_script(
        """
        const out = { devices: {}, gateways: {} };
        for (const e of document.querySelectorAll("#map path[data-device]")) {
          out.devices[e.dataset.device] = e.dataset.status;
        }
        for (const e of document.querySelectorAll("#map .cg-gateway[data-gateway]")) {
          out.gateways[e.dataset.gateway] = e.dataset.status;
        }
        return out;
        """
    )
    return got


def _sign_in(browser: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_SERIES})
    browser.get(url)
    browser.find_element(By.ID, "token").send_keys(OPERATOR_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()


# Positions for the map: every device but dev-silent; gw-cloud-b reports dev-b as well.
PLACES = {"dev-a": (50.11, 8.68), "dev-b": (50.12, 8.70), "dev-n": (50.10, 8.66), "dev-light": (50.115, 8.69)}


def _placed_inventory(path: Path) -> Inventory:
    inventory = Inventory.load(write_inventory(path))
    # A street light too (bool fields: a mean of it is refused).
    light = inventory["dev-a"].model_copy(update={"device_id": "dev-light", "profile": "street_light"})
    inventory = inventory.with_devices(light)
    records = [inventory[d].model_copy(update={"lat": lat, "lon": lon}) for d, (lat, lon) in PLACES.items()]
    records.append(records[1].model_copy(update={"gateways": ("gw-test", OTHER_GATEWAY)}))
    inventory = inventory.with_devices(*records)
    inventory.save(path)
    return inventory


def test_dashboard_shows_the_fleet_and_a_gateway_going_offline(
    cloud_factory: Any, influxdb: Any, browser: Any, tmp_path: Path
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    db = "dash"
    influxdb.create_database(db)
    # The cloud's test inventory, a street light, and positions for the map.
    inventory_path = tmp_path / "inventory.json"
    _placed_inventory(inventory_path)
    cloud = cloud_factory(
        influx_url=influxdb.url,
        influx_db=db,
        inventory=inventory_path,
        client_cert_mode="optional",
        heartbeat_stale_s=2.0,
        heartbeat_offline_s=3.0,
    )
    a, b = cloud.gateway(), cloud.gateway(OTHER_GATEWAY)
    held = {"cloud_write_rejected": 2, "cloud_unknown_device": 40}
    for client, gw, backlog in ((a, "gw-test", 0), (b, OTHER_GATEWAY, 1234)):
        r = client.post(
            f"/v1/gateways/{gw}/heartbeat",
            content=_health(backlog, held if backlog else None),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code in (200, 201, 204), r.text
    # Two minutes of readings, two or more a minute, for the "latest readings" cards.
    m0 = (time.time_ns() // (60 * S) - 5) * 60 * S
    pm2_5 = [(m0 + 10 * S, 10.0), (m0 + 20 * S, 20.0), (m0 + 70 * S, 30.0), (m0 + 80 * S, 50.0)]
    batch = [reading("dev-a", ts_ns=t, values=aq_values() | {"pm2_5": v}) for t, v in pm2_5]
    batch += [
        reading("dev-light", ts_ns=m0 + k * 30 * S, values={"lamp_on": k % 2 == 0, "power": 40.0 + k})
        for k in range(4)
    ]
    r = post_batch(a, batch)
    assert r.status_code == 200 and r.json()["accepted"] == len(batch), r.text

    assert cloud.settings.dashboard_tile_url == ""  # the default: no tiles
    _sign_in(browser, f"{cloud.url}/dashboard?poll=700")

    # The page rebuilds the table on every poll, so an element found a moment ago can be gone:
    # read each value in one script call instead of holding element references.
    def row_selector(gw: str) -> str:
        return f'#gateways tr[data-gateway="{gw}"]'

    def status_of(gw: str) -> str | None:
        status: str | None = browser.execute_script(
            "const r = document.querySelector(arguments[0]); return r ? r.dataset.status : null;",
            row_selector(gw),
        )
        return status

    def text_of(selector: str) -> str:
        text: str = browser.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", selector
        )
        return text

    _wait(
        lambda: status_of("gw-test") == "online" and status_of(OTHER_GATEWAY) == "online",
        what="both gateways online",
    )
    assert "1,234" in text_of("#gateways")  # the backlog is shown
    # Readings held at gateway B: the count, the top reason, the age, as a warning; all reasons
    # in the title. Nothing for gw-test, which holds none.
    held_line = "42 · cloud_unknown_device (+1 more) · oldest 3.0 h"
    assert held_line in text_of(f"{row_selector(OTHER_GATEWAY)} td.held.warn")
    assert f"held: {held_line}" in text_of(f'#districts [data-held="{OTHER_GATEWAY}"]')
    title: str = browser.execute_script(
        "return document.querySelector(arguments[0]).title;", f"{row_selector(OTHER_GATEWAY)} td.held"
    )
    assert title == "cloud_unknown_device: 40\ncloud_write_rejected: 2"
    assert text_of(f"{row_selector('gw-test')} td.held") == ""
    assert "held 42" in text_of("#summary")

    # The latest readings: the page asks the read API for one point a minute by its parameter
    # names (agg, interval_s) and gets the averages; before, it sent aggregate=mean&interval=60,
    # which the API does not know, and every poll fetched the raw last hour.
    def answers(device_id: str) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = browser.execute_script("return window.__series;")
        return [x for x in got if urlsplit(x["url"]).path == f"/v1/devices/{device_id}/series"]

    def rows(answer: dict[str, Any], field: str) -> list[tuple[int, Any]]:
        (series,) = answer["body"]["series"]
        t, col = series["columns"].index("time"), series["columns"].index(field)
        return [(int(dt.datetime.fromisoformat(v[t]).timestamp()) * S, v[col]) for v in series["values"]]

    def answered(device_id: str) -> bool:
        return any(x["status"] == 200 and x["body"] for x in answers(device_id))

    _wait(lambda: answered("dev-a"), what="the air quality card's series")
    for x in answers("dev-a"):
        assert parse_qs(urlsplit(x["url"]).query) == {"agg": ["mean"], "interval_s": ["60"]}, x["url"]
    answer = next(x for x in answers("dev-a") if x["status"] == 200 and x["body"])
    assert answer["body"]["aggregate"] == "mean" and answer["body"]["interval_s"] == 60
    assert rows(answer, "pm2_5") == [(m0, 15.0), (m0 + 60 * S, 40.0)]
    _wait(lambda: "air_quality · pm2_5" in text_of("#latest"), what="the air quality card")
    assert "dev-a (centre): 40.00" in text_of("#latest")
    # Its chart: a time axis over the hour asked for, the profile's unit on the y axis, and the
    # hovered minute's value with that unit in the legend.
    card = '#latest [data-profile="air_quality"]'
    _wait(lambda: _chart(browser, card).get("points") == 2, what="the air quality chart's two minutes")
    chart = _chart(browser, card)
    assert chart["canvas"] and chart["yLabel"] == "µg/m³", chart
    assert len(chart["xTicks"]) >= 3 and all(TIME_TICK.match(t) for t in chart["xTicks"]), chart
    assert "pm2_5 (µg/m³)" in text_of(f"{card} h3")
    assert "dev-a (centre): 40.00 µg/m³" in text_of(card)

    def legend() -> list[str]:
        got: list[str] = _chart(browser, card)["legend"]
        return got

    # The cursor away: the newest minute. Over the left of the chart: the nearest, the first.
    assert legend() == [f"time {_when(m0 + 60 * S)}", "pm2_5 40 µg/m³"], legend()

    def hover_left() -> bool:
        over = browser.find_element(By.CSS_SELECTOR, f"{card} .u-over")
        ActionChains(browser).move_to_element(over).move_by_offset(-over.size["width"] // 3, 0).perform()
        return legend() == [f"time {_when(m0)}", "pm2_5 15 µg/m³"]

    _wait(hover_left, what=f"the hovered value: {legend()}")
    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h1")).perform()
    # A profile with bool fields cannot be averaged (422): the last value of each minute.
    _wait(lambda: answered("dev-light"), what="the street light's series")
    asked = [(parse_qs(urlsplit(x["url"]).query), x["status"]) for x in answers("dev-light")]
    assert asked[:2] == [
        ({"agg": ["mean"], "interval_s": ["60"]}, 422),
        ({"agg": ["last"], "interval_s": ["60"]}, 200),
    ]
    # ... once: later polls ask for the last values straight away.
    _wait(lambda: len(answers("dev-light")) >= 3, what="another poll of the street light")
    later = [parse_qs(urlsplit(x["url"]).query) for x in answers("dev-light")[1:]]
    assert all(q == {"agg": ["last"], "interval_s": ["60"]} for q in later), later
    answer = next(x for x in answers("dev-light") if x["status"] == 200 and x["body"])
    assert answer["body"]["aggregate"] == "last" and answer["body"]["interval_s"] == 60
    assert rows(answer, "power") == [(m0, 41.0), (m0 + 60 * S, 43.0)]
    assert rows(answer, "lamp_on") == [(m0, False), (m0 + 60 * S, False)]
    # Its card charts the first number in the profile's order that has data (no dim_level was sent).
    _wait(lambda: "street_light · power (W)" in text_of("#latest"), what="the street light's card")
    assert _chart(browser, '#latest [data-profile="street_light"]')["yLabel"] == "W"
    # Keep gw-test alive (the checks above may have taken longer than its offline threshold);
    # gw-cloud-b stops sending heartbeats and goes offline.
    deadline = time.monotonic() + 20
    while True:
        a.post(
            "/v1/gateways/gw-test/heartbeat", content=_health(0), headers={"Content-Type": "application/json"}
        )
        if status_of(OTHER_GATEWAY) == "offline" and status_of("gw-test") == "online":
            break
        assert time.monotonic() < deadline, "gateway never shown offline (or gw-test not online)"
        time.sleep(0.5)
    assert "1 offline" in text_of("#summary")

    def open_detail() -> bool:
        try:
            browser.find_element(By.CSS_SELECTOR, row_selector(OTHER_GATEWAY)).click()
        except StaleElementReferenceException:
            return False  # replaced between find and click: try again on the next row
        return True

    _wait(open_detail, what="click on the offline gateway's row")
    _wait(lambda: browser.find_element(By.ID, "detail").is_displayed(), what="detail view")
    assert text_of("#detail-id") == OTHER_GATEWAY

    # The map: one marker per device with a position (dev-silent has none) and per gateway,
    # each in its status; gw-cloud-b sits at dev-b, the one device it reports.
    want = {
        "devices": {"dev-a": "silent", "dev-b": "never", "dev-n": "never", "dev-light": "reporting"},
        "gateways": {"gw-test": "online", OTHER_GATEWAY: "offline"},
    }

    def beat() -> bool:  # gw-test stays online meanwhile
        a.post(
            "/v1/gateways/gw-test/heartbeat", content=_health(0), headers={"Content-Type": "application/json"}
        )
        return True

    _wait(lambda: beat() and _markers(browser) == want, what=f"the map's markers {want}")
    assert "4 devices, 2 of 2 gateways; 1 device without lat/lon" in text_of("#map-note")
    assert "no map tiles" in text_of("#map .leaflet-control-attribution")
    assert not browser.find_elements(By.CSS_SELECTOR, "#map img")  # no tile, no marker image
    # A click on a gateway's marker opens its detail: charts of its heartbeats with time axes.
    _wait(lambda: _click(browser, '#map .cg-gateway[data-gateway="gw-test"]'), what="the gateway's marker")
    _wait(lambda: text_of("#detail-id") == "gw-test", what="gw-test's detail")
    for key, unit in (("backlog", "readings"), ("rate", "readings/s"), ("age", "s")):
        _wait(lambda k=key: _chart(browser, f"#chart-{k}").get("points", 0) >= 2, what=f"the {key} chart")
        chart = _chart(browser, f"#chart-{key}")
        assert chart["canvas"] and chart["yLabel"] == unit, (key, chart)
        assert len(chart["xTicks"]) >= 2 and all(TIME_TICK.match(t) for t in chart["xTicks"]), (key, chart)
    # Nothing unsent at gw-test: an age of 0 s, drawn (not "no data yet").
    assert _chart(browser, "#chart-age")["legend"][1] == "oldest unsent 0 s"
    assert not browser.find_element(By.CSS_SELECTOR, "#chart-age .nodata").is_displayed()
    browser.save_screenshot(str(tmp_path / "dashboard.png"))

    # Nothing was asked of any host but this one (the vendored libraries included), and the page
    # raised no script errors.
    urls = _requested(browser)
    assert any(urlsplit(u).path == "/dashboard/static/vendor/uplot/uPlot.iife.min.js" for u in urls), urls
    assert any(urlsplit(u).path == "/dashboard/static/vendor/leaflet/leaflet.js" for u in urls), urls
    assert not _outside_loopback(urls), _outside_loopback(urls)
    # (Chromium logs the one refused mean of the street light, asked for above, as an error.)
    refused_mean = "/v1/devices/dev-light/series?interval_s=60&agg=mean - Failed to load resource"
    assert not (severe := _severe(browser, allowed=(refused_mean,))), severe


def _click(browser: Any, selector: str) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By

    try:
        browser.find_element(By.CSS_SELECTOR, selector).click()
    except (StaleElementReferenceException, WebDriverException):
        return False
    return True


@pytest.fixture
def tile_server() -> Iterator[tuple[str, list[str]]]:
    """A map tile server on loopback: every path answers a one-colour PNG; the paths asked for."""
    asked: list[str] = []
    png = _png((214, 228, 240))

    class Tiles(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    thread = threading.Thread(target=server.serve_forever, name="tiles", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_map_takes_its_tiles_from_the_configured_server_only(
    cloud_factory: Any, influxdb: Any, browser: Any, tile_server: tuple[str, list[str]], tmp_path: Path
) -> None:
    base, asked = tile_server
    db = "dash_tiles"
    influxdb.create_database(db)
    inventory_path = tmp_path / "inventory.json"
    _placed_inventory(inventory_path)
    cloud = cloud_factory(
        influx_url=influxdb.url,
        influx_db=db,
        inventory=inventory_path,
        client_cert_mode="optional",
        dashboard_tile_url=base + "/{z}/{x}/{y}.png",
    )
    # The page's policy allows images from the tile server's origin, nothing more.
    csp = cloud.operator().get("/dashboard").headers["content-security-policy"]
    assert f"img-src 'self' data: {base};" in csp and "connect-src 'self';" in csp, csp
    _sign_in(browser, f"{cloud.url}/dashboard?poll=700")

    def loaded_tiles() -> int:
        n: int = browser.execute_script(
            "return document.querySelectorAll('#map img.leaflet-tile-loaded').length;"
        )
        return n

    _wait(lambda: len(_markers(browser)["devices"]) == 4, what="the device markers")
    _wait(lambda: loaded_tiles() > 0, what="map tiles")
    assert asked and all(re.fullmatch(r"/[0-9]+/[0-9]+/[0-9]+\.png", p) for p in asked), asked
    attribution: str = browser.execute_script(
        "return document.querySelector('#map .leaflet-control-attribution').innerText;"
    )
    assert "map tiles: 127.0.0.1" in attribution and "no map tiles" not in attribution
    urls = _requested(browser)
    assert any(u.startswith(base + "/") for u in urls), urls
    assert not _outside_loopback(urls), _outside_loopback(urls)
    assert not (severe := _severe(browser)), severe
