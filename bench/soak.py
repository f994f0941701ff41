#!/usr/bin/env python3
"""Soak: the full `zoneproof e2e` N times back to back on this machine, each from a stopped
cluster, to find what fails only sometimes and what is left behind.

After every run it records the run's result and time, each failed or errored test with the
first line of its failure, what the run itself found left behind (namespaces, volumes,
disks, stopped instances: ``reports/leftovers.json`` of the run), and any process still
running from the run's cluster. At the end it prints, per test, the runs it failed in, and
per run what leaked.

    .venv/bin/python bench/soak.py --runs 10
    .venv/bin/python bench/soak.py --runs 3 -- --workers 1      # options after -- go to zoneproof e2e

Each run's reports are kept in reports/soak/run-NN/; the summary is written to
reports/soak.json. Exit 1 when any run failed or leaked.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from zoneproof import leftovers
from zoneproof.results import Results
from zoneproof.cluster.local import state_root
from zoneproof.processes import processes_under
from zoneproof.report import ReportError, run as report_run

REPO = Path(__file__).resolve().parent.parent
SOAK_DIR = REPO / "reports" / "soak"
REPORT = REPO / "reports" / "soak.json"
CLUSTER = "zp-soak"


def leaked_processes(cluster: str) -> list[str]:
    """Processes still running from the cluster's directory (control plane, kwok, driver,
    sidecars, fake ECS all name a path inside it)."""
    found = []
    for pid in processes_under(state_root() / "kwok" / "clusters" / cluster):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # it ended meanwhile
        found.append(f"{pid} {cmdline[:120]}")
    return found


def one_run(number: int, e2e_args: list[str]) -> dict:
    reports = SOAK_DIR / f"run-{number:02d}"
    started = time.monotonic()
    with open(SOAK_DIR / f"run-{number:02d}.log", "w") as log:
        code = subprocess.run([sys.executable, "-m", "zoneproof.cli", "e2e", "--name", CLUSTER,
                               "--reports", str(reports), *e2e_args],
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = round(time.monotonic() - started, 1)
    result = {"run": number, "exit code": code, "seconds": seconds, "failed": {}, "scenarios": 0}
    try:
        ran = report_run.read(reports)
    except ReportError as err:
        result["failed"]["(no results)"] = str(err)
    else:
        result["scenarios"] = len(ran.cases)
        result["passed"] = ran.count("passed")
        result["failed"] = {c.id: c.message for c in ran.cases if c.outcome in ("failed", "error")}
        result["phases"] = ran.environment.get("phases", {})
    left_path = Results(reports).leftovers_file
    left = json.loads(left_path.read_text()) if left_path.exists() else {"(not checked)": ["no leftovers.json"]}
    left["processes"] = leaked_processes(CLUSTER)
    result["left behind"] = {kind: items for kind, items in left.items() if items}
    return result


def summary(runs: list[dict]) -> list[str]:
    lines = [f"soak: {len(runs)} runs of zoneproof e2e"]
    for r in runs:
        state = "passed" if r["exit code"] == 0 else f"FAILED (exit {r['exit code']})"
        lines.append(f"  run {r['run']:2d}: {state}, {r.get('passed', 0)}/{r['scenarios']} scenarios passed, "
                     f"{r['seconds']:.0f}s" + (f", left behind: {r['left behind']}" if r["left behind"] else ""))
    failing: dict[str, list[tuple[int, str]]] = {}
    for r in runs:
        for test, message in r["failed"].items():
            failing.setdefault(test, []).append((r["run"], message))
    if failing:
        lines.append("tests that failed:")
        for test, where in sorted(failing.items()):
            lines.append(f"  {test}: failed in {len(where)} of {len(runs)} runs")
            lines += [f"    run {n}: {message}" for n, message in where]
    failed_runs = sum(1 for r in runs if r["exit code"] != 0)
    leaky_runs = sum(1 for r in runs if r["left behind"])
    seconds = [r["seconds"] for r in runs]
    lines.append(f"runs failed {failed_runs} of {len(runs)}, tests that failed {len(failing)}, runs that left "
                 f"something behind {leaky_runs}; run time min {min(seconds):.0f}s, median "
                 f"{sorted(seconds)[len(seconds) // 2]:.0f}s, max {max(seconds):.0f}s")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("e2e_args", nargs="*", help="options for zoneproof e2e (after --)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    SOAK_DIR.mkdir(parents=True, exist_ok=True)
    runs = []
    for number in range(1, args.runs + 1):
        print(f"run {number} of {args.runs} ...", flush=True)
        runs.append(one_run(number, args.e2e_args))
        print("\n".join(summary(runs)[-1:]), flush=True)
        REPORT.write_text(json.dumps({"machine_cores": os.cpu_count(), "runs": runs}, indent=2))
    print("\n".join(summary(runs)))
    print(f"written to {REPORT}")
    return 0 if all(r["exit code"] == 0 and not r["left behind"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
