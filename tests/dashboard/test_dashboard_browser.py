"""The operator dashboard in headless Chromium against the real cloud service.

The page loads with its own assets only, signs in with an operator token,
shows the fleet, and reflects a gateway going offline. The screenshot it
takes is the one README links (docs/dashboard.png).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from citygate.contract.wire import GatewayHealth
from tests.cloud.conftest import OPERATOR_TOKEN, OTHER_GATEWAY

pytestmark = [
    pytest.mark.servers,
    # Skipped on a developer machine without a browser; never skipped in CI (CI=true).
    pytest.mark.skipif(
        not (shutil.which("chromium") and shutil.which("chromedriver")) and not os.environ.get("CI"),
        reason="Debian chromium and chromium-driver are needed (make test installs them)",
    ),
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


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


def test_dashboard_shows_the_fleet_and_a_gateway_going_offline(
    cloud_factory: Any, influxdb: Any, browser: Any
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    db = "dash"
    influxdb.create_database(db)
    cloud = cloud_factory(
        influx_url=influxdb.url,
        influx_db=db,
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

    browser.get(f"{cloud.url}/dashboard?poll=700")
    browser.find_element(By.ID, "token").send_keys(OPERATOR_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()

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
    # Keep gw-test alive; gw-cloud-b stops sending heartbeats and goes offline.
    deadline = time.monotonic() + 20
    while status_of(OTHER_GATEWAY) != "offline":
        assert time.monotonic() < deadline, "gateway never shown offline"
        a.post(
            "/v1/gateways/gw-test/heartbeat", content=_health(0), headers={"Content-Type": "application/json"}
        )
        time.sleep(0.5)
    assert status_of("gw-test") == "online"
    assert "1 offline" in text_of("#summary")

    def open_detail() -> bool:
        try:
            browser.find_element(By.CSS_SELECTOR, row_selector(OTHER_GATEWAY)).click()
        except StaleElementReferenceException:
            return False  # replaced between find and click: try again on the next row
        return True

    _wait(open_detail, what="click on the offline gateway's row")
    _wait(lambda: browser.find_element(By.ID, "detail").is_displayed(), what="detail view")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    # Nothing was loaded from anywhere else, and the page raised no script errors.
    logs = browser.get_log("browser") if hasattr(browser, "get_log") else []
    assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs
