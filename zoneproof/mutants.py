"""``zoneproof bugs run`` (``make mutants``): the proof that the suites catch the bugs of
the catalogue. Each bug is switched on alone and the cases it names are run against it
on a local cluster; a bug that no case catches fails the run. Then the same cases run
once more with no bug, and every one must pass: a case that fails on a clean driver
catches nothing.

The result is a kill matrix (bug × case), written as JSON to ``reports/kill-matrix.json``
and printed as a table, with each failure's first line beside it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

from zoneproof import bugs as bug_catalogue
from zoneproof.cluster import ClusterSpec, LocalProvider
from zoneproof.cluster.base import ClusterError
from zoneproof.deploy.driver import attach as attach_driver
from zoneproof.deploy.driver import running_deployment
from zoneproof.report import killmatrix

log = logging.getLogger(__name__)

SUITES = Path(__file__).parent / "suites"
CLEAN = "(no bug)"
KILLING = ("failure", "error")
RANK = {"passed": 0, "skipped": 1, "error": 2, "failure": 3}


@dataclass
class CaseResult:
    case: str
    outcome: str  # passed | failure | error | skipped | not run
    first_line: str = ""


@dataclass
class BugRun:
    bug: str
    layer: str
    seconds: float
    results: list[CaseResult] = field(default_factory=list)

    @property
    def caught(self) -> bool:
        return any(r.outcome in KILLING for r in self.results)

    @property
    def clean(self) -> bool:
        """Every case ran and passed (what the run without a bug must show)."""
        return bool(self.results) and all(r.outcome == "passed" for r in self.results)


def case_key(case: str) -> tuple[str, str]:
    """(module, test name) of a node id ``test_x.py::test_y[param]``, as JUnit names them."""
    path, _, name = case.partition("::")
    return Path(path).stem, name


def results_of(junit: Path, cases: tuple[str, ...]) -> list[CaseResult]:
    """The outcome of each wanted case in a JUnit file; a case missing from it did not run."""
    found: dict[tuple[str, str], CaseResult] = {}
    if junit.exists():
        for element in ET.parse(junit).getroot().iter("testcase"):
            key = (element.get("classname", "").rsplit(".", 1)[-1], element.get("name", ""))
            outcome, line = "passed", ""
            for tag in ("failure", "error", "skipped"):
                child = element.find(tag)
                if child is not None:
                    outcome = tag
                    text = child.get("message") or child.text or ""
                    lines = [part.strip() for part in text.splitlines() if part.strip()] + [""]
                    # A heading ("...cannot heal:") says less than what follows it.
                    line = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") else lines[0]
                    break
            if found.get(key) and RANK[found[key].outcome] >= RANK[outcome]:
                continue  # a case failing in its call and in its teardown: the call's failure tells
            found[key] = CaseResult("", outcome, line[:300])
    out = []
    for case in cases:
        result = found.get(case_key(case))
        out.append(CaseResult(case, result.outcome, result.first_line) if result else CaseResult(case, "not run"))
    return out


def run_cases(cases: tuple[str, ...], bugs: tuple[str, ...], cluster: str, reports: Path, label: str,
              seed: int) -> list[CaseResult]:
    junit = reports / f"{label}.xml"
    junit.unlink(missing_ok=True)
    env = dict(os.environ, **{bug_catalogue.ENV: ",".join(bugs)})
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-o", "log_cli=true",
           "--log-cli-level=INFO", f"--cluster-name={cluster}", f"--junitxml={junit}", f"--seed={seed}",
           f"--driver-logs={reports / 'driver-logs' / label}", *(str(SUITES / case) for case in cases)]
    log.info("%s: running %d case(s) with bug(s) %s", label, len(cases), ", ".join(bugs) or "none")
    subprocess.run(cmd, env=env, check=False)
    return results_of(junit, cases)


class ClusterFor:
    """A local cluster for a run, started here and always stopped here (driver included)."""

    def __init__(self, name: str, bugs: tuple[str, ...] = ()):
        self.provider = LocalProvider(ClusterSpec(name=name, bugs=bugs))

    def __enter__(self) -> str:
        if self.provider.exists():
            raise ClusterError(f"a local cluster named {self.provider.spec.name!r} exists; `zoneproof bugs run` "
                               f"starts its own: run `zoneproof cluster down --name {self.provider.spec.name}`")
        self.provider.up()
        return self.provider.spec.name

    def __exit__(self, *exc) -> None:
        try:
            if self.provider.is_up():
                if running_deployment(self.provider) is not None:
                    attach_driver(self.provider).down()
        finally:
            self.provider.down()


def run_catalogue(names: tuple[str, ...], reports: Path, *, cluster: str = "zoneproof-mutants",
                  seed: int = 1) -> int:
    started = time.monotonic()
    chosen = [bug_catalogue.BY_NAME[n] for n in (names or bug_catalogue.NAMES)]
    reports = reports / "mutants"
    reports.mkdir(parents=True, exist_ok=True)
    runs: list[BugRun] = []

    def run(bug_names: tuple[str, ...], cases: tuple[str, ...], cluster_name: str, label: str, layer: str) -> None:
        begun = time.monotonic()
        results = run_cases(cases, bug_names, cluster_name, reports, label, seed)
        runs.append(BugRun(label, layer, round(time.monotonic() - begun, 1), results))
        log.info("%s: %s (%.0fs)", label, "; ".join(f"{r.case}: {r.outcome}" for r in results),
                 runs[-1].seconds)

    in_cluster = [b for b in chosen if b.layer == "cluster"]
    elsewhere = [b for b in chosen if b.layer != "cluster"]
    every_case = tuple(dict.fromkeys(c for b in chosen for c in b.caught_by))
    with ClusterFor(cluster) as name:
        run((), every_case, name, "clean", "-")
        for bug in elsewhere:
            run((bug.name,), bug.caught_by, name, bug.name, bug.layer)
    for bug in in_cluster:  # one cluster at a time: the machine is small
        with ClusterFor(cluster, (bug.name,)) as name:
            run((bug.name,), bug.caught_by, name, bug.name, bug.layer)
    return report(runs, reports.parent / "kill-matrix.json", time.monotonic() - started)


def report(runs: list[BugRun], path: Path, seconds: float) -> int:
    clean = next(r for r in runs if r.bug == "clean")
    mutants = [r for r in runs if r.bug != "clean"]
    survivors = [r.bug for r in mutants if not r.caught]
    path.write_text(json.dumps({"seconds": round(seconds, 1), "clean": asdict(clean),
                                "bugs": [{**asdict(r), "caught": r.caught} for r in mutants],
                                "survivors": survivors}, indent=2))
    page = killmatrix.write(path)
    print(kill_table(runs))
    print(f"\nkill matrix: {len(mutants) - len(survivors)}/{len(mutants)} bugs caught, clean run "
          f"{'passed' if clean.clean else 'FAILED'}, {seconds:.0f}s; written to {path} and {page}")
    problems = [f"bug {b} was caught by no case" for b in survivors]
    problems += [f"clean run: {r.case} {r.outcome}: {r.first_line}" for r in clean.results if r.outcome != "passed"]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems or not mutants else 0


def kill_table(runs: list[BugRun]) -> str:
    """Bugs down, cases across (numbered, with a legend): KILLED where a case failed with
    the bug on, 'passed' where it did not, '.' where the bug does not name the case."""
    cases = list(dict.fromkeys(r.case for run in runs for r in run.results))
    header = ["bug", "layer", *(f"#{i + 1}" for i in range(len(cases))), "seconds", "first failure"]
    rows = []
    for run in runs:
        by_case = {r.case: r for r in run.results}
        cells = []
        for case in cases:
            result = by_case.get(case)
            cells.append("." if result is None else "KILLED" if result.outcome in KILLING else result.outcome)
        first = next((r.first_line for r in run.results if r.outcome in KILLING), "")
        rows.append([CLEAN if run.bug == "clean" else run.bug, run.layer, *cells, f"{run.seconds:.0f}",
                     first[:90]])
    widths = [max(len(str(row[c])) for row in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.append("")
    lines += [f"#{i + 1} {case}" for i, case in enumerate(cases)]
    return "\n".join(lines)
