"""The end-to-end run behind ``make e2e``: one local cluster and one driver deployment
shared by parallel pytest workers, then the suites that must redeploy the driver (marked
``serial``) on their own, then the chaos experiments (marked ``disruptive``) alone, then
one summary for people, with the recovery time of each experiment."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from zoneproof import tally
from zoneproof.cluster import ClusterSpec, LocalProvider
from zoneproof.csi.deploy import LocalDriver
from zoneproof_chaos.running import recovery_seconds

log = logging.getLogger(__name__)
SUITES = Path(__file__).resolve().parent.parent / "suites"
JUNIT_FILES = ("junit-parallel.xml", "junit-serial.xml", "junit-chaos.xml")


def _pytest(args: list[str], env: dict[str, str]) -> int:
    cmd = [sys.executable, "-m", "pytest", str(SUITES), "-o", "log_cli=true", "--log-cli-level=INFO", *args]
    log.info("running %s", " ".join(cmd))
    return subprocess.run(cmd, env=env).returncode


def _junit_counts(path: Path) -> dict[str, int]:
    if not path.exists():
        return {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    return {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}


def chaos_summary(path: Path) -> str:
    """One line per chaos experiment: its longest recovery and its wall time."""
    if not path.exists():
        return "chaos: no experiment ran"
    lines = ["chaos experiments (recovery = fault or repair -> every pod Running in its disk's zone):"]
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        seconds = entry["seconds"]
        lines.append(f"  {entry['experiment']:<20} recovery {recovery_seconds(seconds):6.1f}s   "
                     f"wall time {seconds.get('wall time', 0):6.1f}s")
    return "\n".join(lines)


def run_e2e(name: str, workers: int, reports: Path, pytest_args: list[str]) -> int:
    started = time.monotonic()
    reports.mkdir(parents=True, exist_ok=True)
    tally_file = reports / "placement-tally.jsonl"
    tally_file.unlink(missing_ok=True)
    metrics_file = reports / "chaos-metrics.jsonl"
    metrics_file.unlink(missing_ok=True)
    for phase in JUNIT_FILES:  # a phase that never ran must not be counted from an old run
        (reports / phase).unlink(missing_ok=True)
    env = dict(os.environ, ZONEPROOF_TALLY_FILE=str(tally_file.resolve()),
               ZONEPROOF_CHAOS_METRICS_FILE=str(metrics_file.resolve()))
    provider = LocalProvider(ClusterSpec(name=name))
    own_cluster = not (provider.exists() and provider.is_up())
    driver = None
    codes = []
    try:
        if own_cluster:
            provider.up()
        provider = LocalProvider.attach(name)
        driver = LocalDriver(provider, zone_policy="topology")
        if driver.running_policy() != "topology":
            if driver.is_up():
                driver.down()
            driver.up()
        common = [f"--cluster-name={name}", f"--alluredir={reports / 'allure-results'}", *pytest_args]
        parallel = ["-n", str(workers), "--dist", "load"] if workers > 1 else ["-p", "no:xdist"]
        codes.append(_pytest([*common, *parallel, "-m", "not serial and not disruptive",
                              f"--junitxml={reports / 'junit-parallel.xml'}"], env))
        driver.down()  # the serial suites deploy the driver they need
        codes.append(_pytest([*common, "-m", "serial and not disruptive",
                              f"--junitxml={reports / 'junit-serial.xml'}"], env))
        codes.append(_pytest([*common, "-p", "no:xdist", "-m", "disruptive",
                              f"--junitxml={reports / 'junit-chaos.xml'}"], env))
    finally:
        if driver is not None:
            driver.down()
        if own_cluster:
            provider.down()
    counts = [_junit_counts(reports / f) for f in JUNIT_FILES]
    total = {k: sum(c[k] for c in counts) for k in counts[0]}
    placed = tally.read(tally_file)
    failed = total["failures"] + total["errors"]
    print(f"\nzoneproof e2e: scenarios {total['tests']} ({total['tests'] - failed - total['skipped']} passed, "
          f"{failed} failed, {total['skipped']} skipped), placement verdicts {placed['verdicts']}, "
          f"pods checked {placed['pods checked']}, violations {placed['violations']}, "
          f"time {time.monotonic() - started:.0f}s ({workers} worker{'s' if workers > 1 else ''})")
    print(chaos_summary(metrics_file))
    if total["tests"] == 0:
        print("error: no scenario ran", file=sys.stderr)
        return 1
    # A phase that selected nothing (pytest's 5) is fine as long as some scenario ran.
    return next((c for c in codes if c not in (0, 5)), 0)
