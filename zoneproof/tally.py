"""A running count of placement verdicts in this process, for the end-of-run summary."""

from __future__ import annotations

from collections import Counter

counts: Counter = Counter()


def record(verdict) -> None:
    counts["verdicts"] += 1
    counts["pods checked"] += len(verdict.pods)
    counts["violations"] += len(verdict.violations)
