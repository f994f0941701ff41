"""One run as the report sees it, read back from what the run left in its reports
directory (zoneproof.results): the JUnit XML of each phase (cases, outcomes, durations,
failures), the placement verdicts the suites recorded, the chaos experiments' metrics and
timelines, and the run's environment."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from zoneproof.results import PHASES, Results


class ReportError(RuntimeError):
    """The reports directory holds no run to report on."""


@dataclass
class Case:
    id: str  # module.py::name[params], as tally.current_test() names it
    phase: str
    outcome: str  # passed | failed | error | skipped
    seconds: float
    message: str = ""  # first line of the failure or skip
    details: str = ""  # the whole failure text
    verdicts: list[dict] = field(default_factory=list)  # tally entries made by this case, in order
    tags: dict = field(default_factory=dict)  # what the suite said of the case (zoneproof.results.tag_case)

    @property
    def anchor(self) -> str:
        return "case-" + re.sub(r"[^A-Za-z0-9]+", "-", self.id).strip("-")

    @property
    def module(self) -> str:
        return self.id.split("::", 1)[0]

    @property
    def matrix_cell(self) -> tuple[str, int, int] | None:
        """(scheme, zones, replicas) of the placement matrix, for a case its suite tagged so."""
        cell = self.tags.get("matrix")
        return (cell["scheme"], int(cell["zones"]), int(cell["replicas"])) if cell else None


@dataclass
class Run:
    cases: list[Case]
    chaos: list[dict]  # one per experiment run: experiment, recovery, seconds, timeline
    environment: dict
    unattributed_verdicts: int = 0  # verdicts whose test is not among the cases

    def count(self, *outcomes: str) -> int:
        return sum(1 for c in self.cases if c.outcome in outcomes)

    @property
    def ok(self) -> bool:
        return bool(self.cases) and not self.count("failed", "error") and self.count("passed") > 0

    @property
    def verdicts(self) -> list[dict]:
        return [v for c in self.cases for v in c.verdicts]

    def matrix(self) -> tuple[list[str], list[tuple[int, int]], dict[tuple[str, int, int], Case]]:
        """Schemes (rows), (zones, replicas) columns and the case of each cell."""
        cells = {c.matrix_cell: c for c in self.cases if c.matrix_cell}
        schemes = list(dict.fromkeys(cell[0] for cell in cells))
        columns = sorted({cell[1:] for cell in cells})
        return schemes, columns, cells


def _outcome(case: ET.Element) -> tuple[str, str, str]:
    for tag in ("failure", "error", "skipped"):
        found = case.find(tag)
        if found is not None:
            message = (found.get("message") or found.text or "").strip()
            return {"failure": "failed"}.get(tag, tag), message.splitlines()[0] if message else "", found.text or ""
    return "passed", "", ""


def read(reports: Path) -> Run:
    found = Results(reports)
    cases = []
    for phase in PHASES:
        path = found.junit(phase)
        if not path.exists():
            continue
        for element in ET.parse(path).getroot().iter("testcase"):
            module = element.get("classname", "").rsplit(".", 1)[-1]
            outcome, message, details = _outcome(element)
            cases.append(Case(f"{module}.py::{element.get('name')}", phase, outcome,
                              float(element.get("time") or 0), message, details))
    if not cases:
        raise ReportError(f"no JUnit results (junit-{{{','.join(PHASES)}}}.xml) in {reports}: no run to report on")
    by_id = {c.id: c for c in cases}
    for test, tags in found.case_tags().items():
        if test in by_id:
            by_id[test].tags = tags
    unattributed = 0
    for entry in found.verdicts():
        if entry["test"] in by_id:
            by_id[entry["test"]].verdicts.append(entry)
        else:
            unattributed += 1
    return Run(cases, found.chaos(), found.environment(), unattributed)


def history_entry(run: Run) -> dict:
    """The run's figures for the trend (zoneproof.report.trends)."""
    env = run.environment
    return {"started": env.get("started", ""), "provider": env.get("provider", ""), "profile": env.get("profile", ""),
            "seconds": env.get("seconds"), "passed": run.count("passed"), "failed": run.count("failed", "error"),
            "skipped": run.count("skipped"),
            "cases": {c.id: {"outcome": c.outcome, "seconds": round(c.seconds, 2)} for c in run.cases},
            "recovery": {e["experiment"]: e["recovery"] for e in run.chaos}}
