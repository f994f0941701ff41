"""Placement verdicts as they are made, for the end-of-run summary and the report. Parallel
workers are separate processes, so when ``ZONEPROOF_TALLY_FILE`` is set each verdict is
also appended there as one JSON line (with the test that made it and every pod and node it
judged, from which the report draws its zone maps), and the runner reads the file."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import allure

from zoneproof.report import zonemap

counts: Counter = Counter()


def current_test() -> str:
    """The running test as ``module.py::name[params]`` (pytest's own variable, so it also
    names the test from inside a chaos experiment run in the test's process)."""
    running = os.environ.get("PYTEST_CURRENT_TEST", "")
    return running.rsplit(" (", 1)[0].rsplit("/", 1)[-1]


def record(verdict) -> None:
    """Count a verdict, keep it for the report, and attach its zone map to the running test's
    allure result (a no-op outside an allure run)."""
    entry = {"verdicts": 1, "pods checked": len(verdict.pods), "violations": len(verdict.violations)}
    counts.update(entry)
    plain = asdict(verdict)
    allure.attach(zonemap.zone_map(plain), name="zone map", attachment_type=allure.attachment_type.SVG)
    path = os.environ.get("ZONEPROOF_TALLY_FILE")
    if path:
        line = json.dumps({"counts": entry, "test": current_test(), "at": time.time(), "verdict": plain})
        # One unbuffered O_APPEND write per line, so the workers' lines never interleave.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def read(path: Path) -> Counter:
    total: Counter = Counter()
    for entry in entries(path):
        total.update(entry["counts"])
    return total
