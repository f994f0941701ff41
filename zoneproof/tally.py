"""A running count of placement verdicts, for the end-of-run summary. Parallel workers
are separate processes, so when ``ZONEPROOF_TALLY_FILE`` is set each verdict is also
appended there as a JSON line, and the runner sums the file."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

counts: Counter = Counter()


def record(verdict) -> None:
    entry = {"verdicts": 1, "pods checked": len(verdict.pods), "violations": len(verdict.violations)}
    counts.update(entry)
    path = os.environ.get("ZONEPROOF_TALLY_FILE")
    if path:
        with open(path, "a") as out:  # one short line per write: appends do not interleave
            out.write(json.dumps(entry) + "\n")


def read(path: Path) -> Counter:
    total: Counter = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            total.update(json.loads(line))
    return total
