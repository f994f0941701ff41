"""A run's results, kept in one place: every file a run leaves in its reports directory and
the environment variables that tell the run's processes (parallel workers, the chaos
experiments' test) where to add to them. What goes in is plain data (verdicts as dicts,
chaos metrics, the environment); what comes out is that data again, for the summary and
the report. Drawing it is the report's job (zoneproof.report)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

PHASES = ("rules", "parallel", "serial")  # in the order zoneproof e2e runs them
VERDICTS_FILE = "placement-verdicts.jsonl"
CHAOS_FILE = "chaos-metrics.jsonl"
CASE_TAGS_FILE = "case-tags.jsonl"
ENVIRONMENT_FILE = "environment.json"
LEFTOVERS_FILE = "leftovers.json"
ALLURE_RESULTS = "allure-results"
ALLURE_REPORT = "allure-report"
DRIVER_LOGS = "driver-logs"
# Where a process of the run appends its records (set by zoneproof e2e for its pytest runs).
VERDICTS_ENV = "ZONEPROOF_TALLY_FILE"
CHAOS_ENV = "ZONEPROOF_CHAOS_METRICS_FILE"
CASE_TAGS_ENV = "ZONEPROOF_CASE_TAGS_FILE"


@dataclass(frozen=True)
class Results:
    """The reports directory of one run."""

    dir: Path

    def junit(self, phase: str) -> Path:
        return self.dir / f"junit-{phase}.xml"

    @property
    def verdicts_file(self) -> Path:
        return self.dir / VERDICTS_FILE

    @property
    def chaos_file(self) -> Path:
        return self.dir / CHAOS_FILE

    @property
    def case_tags_file(self) -> Path:
        return self.dir / CASE_TAGS_FILE

    @property
    def environment_file(self) -> Path:
        return self.dir / ENVIRONMENT_FILE

    @property
    def leftovers_file(self) -> Path:
        return self.dir / LEFTOVERS_FILE

    @property
    def allure_results(self) -> Path:
        return self.dir / ALLURE_RESULTS

    @property
    def allure_report(self) -> Path:
        return self.dir / ALLURE_REPORT

    @property
    def driver_logs(self) -> Path:
        return self.dir / DRIVER_LOGS

    def clear(self) -> None:
        """Make the directory and remove what an earlier run left there: a phase that never
        runs must not be counted from an old run."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in (self.verdicts_file, self.chaos_file, self.case_tags_file, self.environment_file,
                      *map(self.junit, PHASES)):
            stale.unlink(missing_ok=True)
        for stale_dir in (self.allure_results, self.driver_logs):
            shutil.rmtree(stale_dir, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """The variables that make a child process of the run add its records here."""
        return {VERDICTS_ENV: str(self.verdicts_file.resolve()), CHAOS_ENV: str(self.chaos_file.resolve()),
                CASE_TAGS_ENV: str(self.case_tags_file.resolve())}

    def verdicts(self) -> list[dict]:
        """Every placement verdict recorded, in order: {counts, test, at, verdict}."""
        return _lines(self.verdicts_file)

    def chaos(self) -> list[dict]:
        """Every chaos experiment recorded: {experiment, recovery, seconds, timeline}."""
        return _lines(self.chaos_file)

    def case_tags(self) -> dict[str, dict]:
        """What the suites said of each case (``module.py::name[params]`` -> tags), such as
        the cell of the placement matrix a case fills."""
        tags: dict[str, dict] = {}
        for record in _lines(self.case_tags_file):
            tags.setdefault(record["test"], {}).update(record["tags"])
        return tags

    def environment(self) -> dict:
        return json.loads(self.environment_file.read_text()) if self.environment_file.exists() else {}

    def write_environment(self, environment: dict) -> None:
        self.environment_file.write_text(json.dumps(environment, indent=2))

    def write_leftovers(self, left: dict[str, list[str]]) -> None:
        self.leftovers_file.write_text(json.dumps(left, indent=2))


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _append(env_var: str, record: dict) -> None:
    """Add a record as one JSON line to the file ``env_var`` names, if the run set it: one
    unbuffered O_APPEND write per line, so the lines of parallel workers never interleave."""
    path = os.environ.get(env_var)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def add_verdict(record: dict) -> None:
    _append(VERDICTS_ENV, record)


def add_chaos(record: dict) -> None:
    _append(CHAOS_ENV, record)


def tag_case(test: str, **tags) -> None:
    """Say something of a case for the report (``test``: ``module.py::name[params]``)."""
    _append(CASE_TAGS_ENV, {"test": test, "tags": tags})
