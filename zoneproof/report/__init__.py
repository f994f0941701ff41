"""Reports people open in a browser after a run: ``reports/index.html`` (zoneproof's own
page: verdict, placement matrix, zone maps, chaos timelines, trend, environment) and the
allure report in ``reports/allure-report``. ``build`` makes both from what a run left in
its reports directory; ``zoneproof e2e`` calls it at the end and ``zoneproof report``
makes them again."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from zoneproof.report import allure, page, trends
from zoneproof.report.run import ReportError, history_entry, read
from zoneproof.results import ALLURE_REPORT, Results

log = logging.getLogger(__name__)

__all__ = ["Built", "ReportError", "build"]


@dataclass
class Built:
    page: Path
    allure_report: Path | None  # None when the run left no allure results
    regressions: list[trends.Regression]


def build(reports: Path, *, with_allure: bool = True) -> Built:
    """Write ``index.html`` (and the allure report) for the run in ``reports``; the run's
    figures join ``history.jsonl`` once (building again does not count it twice)."""
    run = read(reports)
    history = trends.load(reports)
    entry = history_entry(run)
    if entry["started"] not in {h.get("started") for h in history}:
        trends.append(reports, entry)
        history.append(entry)
    allure_index = None
    results = Results(reports).allure_results
    if with_allure and results.is_dir():
        allure_index = allure.generate(results, reports / ALLURE_REPORT, run.environment)
    index = reports / "index.html"
    index.write_text(page.render(run, history, entry,
                                 allure_report=f"{ALLURE_REPORT}/index.html" if allure_index else ""))
    return Built(index, allure_index, trends.regressions(history, entry))
