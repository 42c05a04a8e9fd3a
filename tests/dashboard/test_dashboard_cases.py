"""The dashboard's cases panel in headless Chromium against the real cloud with the service layer on.

The panel lists the open cases seeded into the cloud's store, filters them, opens one with
its history, and acknowledges and assigns it from the page: the store records the changes
under the operator token's name. Without the service layer the panel says it is off.

The screenshot stays in the test's directory (as test_dashboard_browser.py's does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.cloud.service_cloud import condition, seed, service_cloud
from tests.dashboard.test_dashboard_browser import (
    _outside_loopback,
    _requested,
    _severe,
    _sign_in,
    _wait,
    browser,
    pytestmark,
)

__all__ = ["browser", "pytestmark"]


def _text(browser: Any, selector: str) -> str:
    text: str = browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", selector
    )
    return text


def _rows(browser: Any) -> dict[int, str]:
    """The listed cases: {id: status}, read in one call (the list is redrawn on every poll)."""
    got: dict[str, str] = browser.execute_script(
        """
        const out = {};
        for (const r of document.querySelectorAll("#case-list tbody tr[data-case]")) {
          out[r.dataset.case] = r.dataset.status;
        }
        return out;
        """
    )
    return {int(k): v for k, v in got.items()}


def _detail_status(browser: Any) -> str | None:
    status: str | None = browser.execute_script(
        "const d = document.querySelector('#case-detail');"
        "return d.hidden ? null : (d.dataset.status || null);"
    )
    return status


def _history(browser: Any) -> list[tuple[str, str, str]]:
    got: list[list[str]] = browser.execute_script(
        """
        return [...document.querySelectorAll("#case-history tbody tr")].map(
          (r) => [r.dataset.actor, r.dataset.action, r.querySelector(".case-note").innerText]);
        """
    )
    return [(a, b, c) for a, b, c in got]


def _enabled(browser: Any) -> dict[str, bool]:
    got: dict[str, bool] = browser.execute_script(
        """
        const out = {};
        for (const b of document.querySelectorAll("#case-actions button[data-action]")) {
          out[b.dataset.action] = !b.disabled;
        }
        return out;
        """
    )
    return got


def test_cases_panel_lists_filters_and_acknowledges(
    cloud_factory: Any, influxdb: Any, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    influxdb.create_database("dash_cases")
    cloud, store = service_cloud(
        cloud_factory, tmp_path, influx_url=influxdb.url, influx_db="dash_cases", client_cert_mode="optional"
    )
    bin_case, river_case = seed(
        store,
        condition("bin-1", title="Bin full at the market"),
        condition(
            "gauge-1", rule_id="water_level.high", service="flood", district="south", title="River high"
        ),
    )
    assert cloud.operator().get("/dashboard/context").json()["service_layer"] is True
    _sign_in(browser, f"{cloud.url}/dashboard?poll=700")

    _wait(lambda: _rows(browser) == {bin_case: "new", river_case: "new"}, what="both cases listed")
    assert "Bin full at the market" in _text(browser, "#case-list") and "River high" in _text(
        browser, "#case-list"
    )
    assert "open: 2 new" in _text(browser, "#cases-counts")
    assert browser.find_element(By.ID, "cases-off").is_displayed() is False

    # Filters: the services and districts seen are the choices.
    _wait(lambda: "flood" in _text(browser, "#case-service"), what="the service filter's choices")
    Select(browser.find_element(By.ID, "case-service")).select_by_value("flood")
    _wait(lambda: _rows(browser) == {river_case: "new"}, what="only the flood case")
    Select(browser.find_element(By.ID, "case-service")).select_by_value("")
    Select(browser.find_element(By.ID, "case-district")).select_by_value("north")
    _wait(lambda: _rows(browser) == {bin_case: "new"}, what="only the case in the north")
    Select(browser.find_element(By.ID, "case-district")).select_by_value("")
    _wait(lambda: len(_rows(browser)) == 2, what="both cases again")

    # The case with its history; only what its status allows is enabled.
    _wait(lambda: _click_row(browser, bin_case), what="a click on the bin's case")
    _wait(lambda: _detail_status(browser) == "new", what="the case's detail")
    assert _text(browser, "#case-detail-id") == str(bin_case)
    assert _text(browser, '#case-facts [data-fact="rule"]') == "waste_bin.bin_full"
    assert _history(browser) == [("rules", "opened", "fill_level 91 > 85")]
    assert _enabled(browser) == {"acknowledge": True, "assign": True, "resolve": True, "close": True}

    browser.find_element(By.ID, "case-note").send_keys("crew on the way")
    browser.find_element(By.CSS_SELECTOR, '#case-actions button[data-action="acknowledge"]').click()
    _wait(lambda: _detail_status(browser) == "acknowledged", what="the case acknowledged")
    _wait(lambda: _rows(browser).get(bin_case) == "acknowledged", what="the list showing it acknowledged")
    _wait(lambda: len(_history(browser)) == 2, what="the acknowledgement in the history")
    assert _history(browser)[-1] == ("ops", "acknowledged", "crew on the way")
    assert _enabled(browser)["acknowledge"] is False and _enabled(browser)["resolve"] is True
    assert [(h["actor"], h["action"]) for h in store.history(bin_case)][-1] == ("ops", "acknowledged")
    assert store.get(bin_case)["status"] == "acknowledged"  # type: ignore[index]
    assert store.get(river_case)["status"] == "new"  # type: ignore[index]

    # Assign needs someone to assign to.
    browser.find_element(By.CSS_SELECTOR, '#case-actions button[data-action="assign"]').click()
    assert "assignee" in _text(browser, "#case-action-error")
    browser.find_element(By.ID, "case-assignee").send_keys("crew-7")
    browser.find_element(By.CSS_SELECTOR, '#case-actions button[data-action="assign"]').click()
    _wait(lambda: _detail_status(browser) == "assigned", what="the case assigned")
    _wait(lambda: _text(browser, '#case-facts [data-fact="assignee"]') == "crew-7", what="the assignee shown")
    assert store.get(bin_case)["assignee"] == "crew-7"  # type: ignore[index]
    browser.find_element(By.ID, "cases").location_once_scrolled_into_view  # noqa: B018 - scrolls
    browser.save_screenshot(str(tmp_path / "dashboard-cases.png"))

    urls = _requested(browser)
    assert not _outside_loopback(urls), _outside_loopback(urls)
    assert not (severe := _severe(browser)), severe


def _click_row(browser: Any, case_id: int) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By

    try:
        browser.find_element(By.CSS_SELECTOR, f'#case-list tr[data-case="{case_id}"]').click()
    except (StaleElementReferenceException, WebDriverException):
        return False  # replaced by a poll between find and click: again
    return True


def test_cases_panel_says_when_the_service_layer_is_off(cloud_factory: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    cloud = cloud_factory(client_cert_mode="optional")
    _sign_in(browser, f"{cloud.url}/dashboard?poll=700")
    _wait(
        lambda: browser.find_element(By.ID, "cases-off").is_displayed(), what="the 'service layer off' note"
    )
    assert _text(browser, "#cases-off").startswith("service layer off")
    assert not browser.find_element(By.ID, "cases-body").is_displayed()
    assert _text(browser, "#cases-error") == ""
    # The dashboard's context said so: the page never asked for cases (no 404 in its console).
    assert cloud.operator().get("/dashboard/context").json()["service_layer"] is False
    asked = [urlsplit(u).path for u in _requested(browser)]
    assert "/dashboard/context" in asked and "/v1/cases" not in asked, asked
