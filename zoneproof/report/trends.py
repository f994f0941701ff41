"""Figures across runs: each run appends one line to ``history.jsonl`` beside its reports
(per-case durations and outcomes, recovery times, totals), and a case whose duration or
recovery grew beyond a stated tolerance over its recent median is flagged.

A figure is compared with runs of the same provider and driver profile only (a kind run is
slower by design), and only with runs in which that case passed (a failure's duration says
little about speed)."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

HISTORY_FILE = "history.jsonl"
BASELINE_RUNS = 5  # the median of at most this many earlier runs is the baseline


@dataclass(frozen=True)
class Tolerance:
    """A figure regressed when it exceeds its baseline by both ``ratio`` and ``seconds``:
    the ratio keeps long cases honest, the seconds keep short ones from flagging on noise."""

    ratio: float
    seconds: float

    def exceeded(self, value: float, baseline: float) -> bool:
        return value > baseline * (1 + self.ratio) and value - baseline > self.seconds

    def __str__(self) -> str:
        return f"more than {self.ratio:.0%} and {self.seconds:g} s over the median of the last {BASELINE_RUNS} runs"


DURATION = Tolerance(ratio=0.5, seconds=10.0)
RECOVERY = Tolerance(ratio=0.25, seconds=5.0)


@dataclass(frozen=True)
class Regression:
    what: str  # "duration" or "recovery"
    name: str  # the case or experiment
    value: float
    baseline: float
    runs: int  # how many earlier runs make the baseline

    def __str__(self) -> str:
        return (f"{self.what} of {self.name}: {self.value:.1f} s, median of the {self.runs} runs before "
                f"{self.baseline:.1f} s (+{self.value - self.baseline:.1f} s)")


def load(reports: Path) -> list[dict]:
    path = reports / HISTORY_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def append(reports: Path, entry: dict) -> None:
    with open(reports / HISTORY_FILE, "a") as out:
        out.write(json.dumps(entry, sort_keys=True) + "\n")


def comparable(history: list[dict], entry: dict) -> list[dict]:
    """The earlier runs this one is measured against, oldest first."""
    same = [h for h in history if h is not entry and h.get("provider") == entry.get("provider")
            and h.get("profile") == entry.get("profile") and h.get("started", "") < entry.get("started", "")]
    return same[-BASELINE_RUNS:]


def regressions(history: list[dict], entry: dict) -> list[Regression]:
    earlier = comparable(history, entry)
    found = []
    for case, now in sorted(entry.get("cases", {}).items()):
        if now["outcome"] != "passed":
            continue
        before = [h["cases"][case]["seconds"] for h in earlier
                  if h.get("cases", {}).get(case, {}).get("outcome") == "passed"]
        if before and DURATION.exceeded(now["seconds"], statistics.median(before)):
            found.append(Regression("duration", case, now["seconds"], statistics.median(before), len(before)))
    for experiment, now in sorted(entry.get("recovery", {}).items()):
        before = [h["recovery"][experiment] for h in earlier if experiment in h.get("recovery", {})]
        if before and RECOVERY.exceeded(now, statistics.median(before)):
            found.append(Regression("recovery", experiment, now, statistics.median(before), len(before)))
    return found
