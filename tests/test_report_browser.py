"""The reports of real runs, looked at in a real browser: two `zoneproof e2e` runs on a local
cluster (a placement case and a chaos experiment, then the placement case again), each
page opened from file:// in headless Chromium (Debian's, driven by Playwright), with the
verdict, the matrix, a zone map, a chaos timeline and the trend found in it; the allure
report too. Screenshots go to reports/screenshots/ for people to look at."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
# As root on a machine with a closed network: no sandbox, and none of Chromium's own traffic.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "reports" / "screenshots"
CLUSTER = "zp-report"
PLACEMENT_CASE = "static-zone-labels-2zones-3replicas"


def zoneproof(*args: str, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "zoneproof.cli", *args], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"zoneproof {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-4000:]}" \
                                 f"\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The reports of two runs on one cluster: after the first (kept aside) and after both."""
    if not shutil.which(CHROMIUM.rsplit("/", 1)[-1]) and not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (`make test` does)")
    reports = tmp_path_factory.mktemp("reports")
    zoneproof("cluster", "up", "--name", CLUSTER, timeout=300)
    try:
        zoneproof("e2e", "--name", CLUSTER, "--reports", str(reports), "--seed", "7",
                  "-k", f"{PLACEMENT_CASE} or pod-delete", timeout=900)
        first = tmp_path_factory.mktemp("first")
        shutil.copytree(reports, first, dirs_exist_ok=True)
        zoneproof("e2e", "--name", CLUSTER, "--reports", str(reports), "--seed", "8", "-k", PLACEMENT_CASE,
                  timeout=600)
    finally:
        subprocess.run([sys.executable, "-m", "zoneproof.cli", "cluster", "down", "--name", CLUSTER],
                       capture_output=True, text=True, timeout=300)
    return first, reports


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(browser, path: Path):
    """The page, and every request it made for something not in the report (the network)."""
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    outside = []
    page.on("request", lambda request: None if request.url.startswith(("file:", "data:", "blob:"))
            else outside.append(request.url))
    page.goto(path.as_uri())
    return page, outside


def test_the_page_of_a_run_shows_its_verdict_matrix_zone_maps_and_chaos_timeline(two_runs, browser):
    first, _ = two_runs
    page, outside = open_page(browser, first / "index.html")
    assert page.locator("#verdict").inner_text().startswith("PASSED"), page.locator("#verdict").inner_text()
    cell = page.locator("#placement-matrix a.passed")
    assert cell.count() == 1, "the matrix has no passed cell for the one placement case that ran"
    cell.click()
    anchor = page.evaluate("location.hash")
    assert PLACEMENT_CASE in anchor
    case = page.locator(anchor)
    assert case.locator("svg.zone-map").count() == 2  # before and after every pod was deleted
    assert case.locator("svg.zone-map rect.pod").count() == 6  # 3 pods, twice
    assert case.locator("svg.zone-map .bad").count() == 0
    assert page.locator("#chaos-table tr").count() == 2  # the header and pod-delete
    assert page.locator("svg.chaos-timeline").count() == 1
    assert page.locator("svg.chaos-timeline .recovery").count() >= 1
    assert not outside, f"the page asked the network for: {outside}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto((first / "index.html").as_uri())
    page.screenshot(path=str(SCREENSHOTS / "index.png"), full_page=True)


def test_a_second_run_shows_the_first_in_its_trend(two_runs, browser):
    first, reports = two_runs
    page, _ = open_page(browser, reports / "index.html")
    runs = page.locator("#trend-table tr.trend-run")
    assert runs.count() == 2
    first_started = json.loads((first / "environment.json").read_text())["started"]
    assert first_started in runs.nth(1).inner_text()  # the latest run first, the earlier below it
    assert page.locator("svg.trend-chart rect").count() == 2


def test_the_allure_report_opens_offline_with_environment_categories_and_history(two_runs, browser):
    first, reports = two_runs
    page, outside = open_page(browser, reports / "allure-report" / "index.html")
    page.get_by_text(re.compile(r"^test cases?$")).first.wait_for(timeout=30_000)
    page.get_by_text("Environment").first.wait_for()
    assert page.get_by_text(CLUSTER, exact=True).count() >= 1  # the cluster, from the environment
    assert not outside, f"the allure report asked the network for: {outside}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "allure.png"), full_page=True)
    trend = json.loads((reports / "allure-report" / "history" / "history-trend.json").read_text())
    assert len(trend) == 2, "the allure history did not carry the first run over"
    categories = json.loads((first / "allure-results" / "categories.json").read_text())
    assert {c["name"] for c in categories} >= {"placement violation", "transient violation", "timeout",
                                               "infrastructure"}
