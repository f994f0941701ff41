#!/usr/bin/env python3
"""Benchmark of the end-to-end matrix: wall time of `zoneproof e2e` serial (1 worker) and
with pytest-xdist workers, each from a stopped cluster (bring-up and tear-down included).

    .venv/bin/python bench/e2e_bench.py                 # 1 worker, then 2
    .venv/bin/python bench/e2e_bench.py --workers 1 2 3

Results are printed and written to reports/bench-e2e.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "reports" / "bench-e2e.json"
SUMMARY = re.compile(r"zoneproof e2e on .*?: scenarios (\d+) \((\d+) passed, (\d+) failed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    results = []
    for workers in args.workers:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "zoneproof.cli", "e2e", "--name", "zp-bench-e2e",
                               "--workers", str(workers), "--reports", str(REPO / "reports" / f"bench-e2e-{workers}")],
                              cwd=REPO, capture_output=True, text=True)
        elapsed = time.monotonic() - started
        match = SUMMARY.search(proc.stdout)
        scenarios, passed, failed = (int(g) for g in match.groups()) if match else (0, 0, 0)
        results.append({"workers": workers, "seconds": round(elapsed, 1), "scenarios": scenarios, "passed": passed,
                        "failed": failed, "exit_code": proc.returncode})
        print(f"workers {workers}: {elapsed:6.1f} s  scenarios {scenarios}, passed {passed}, failed {failed}, "
              f"exit {proc.returncode}", flush=True)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps({"machine_cores": os.cpu_count(), "runs": results}, indent=2))
    print(f"written to {REPORT}")
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
