"""Placement verdicts as they are made: counted for this process's summary, and recorded as
plain data (zoneproof.results) with the test that made them, for the runner's summary and
the report, which draws them; parallel workers are separate processes."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict

from zoneproof import results

counts: Counter = Counter()


def current_test() -> str:
    """The running test as ``module.py::name[params]`` (pytest's own variable, so it also
    names the test from inside a chaos experiment run in the test's process)."""
    running = os.environ.get("PYTEST_CURRENT_TEST", "")
    return running.rsplit(" (", 1)[0].rsplit("/", 1)[-1]


def record(verdict) -> dict:
    """Count a verdict and record it (every pod and node it judged) for the report; the
    verdict as plain data, for whoever draws it."""
    entry = {"verdicts": 1, "pods checked": len(verdict.pods), "violations": len(verdict.violations)}
    counts.update(entry)
    plain = asdict(verdict)
    results.add_verdict({"counts": entry, "test": current_test(), "at": time.time(), "verdict": plain})
    return plain


def total(entries: list[dict]) -> Counter:
    """The counts of recorded verdicts, summed."""
    found: Counter = Counter()
    for entry in entries:
        found.update(entry["counts"])
    return found
