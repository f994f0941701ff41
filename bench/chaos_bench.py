#!/usr/bin/env python3
"""Benchmark of the chaos set: each shipped experiment run through chaoslib on a local
cluster (started for the run unless --cluster-name names a running one), reporting the
recovery time of each next to the Kubernetes timings the cluster is configured with, and
the wall time of the whole set against its 5-minute target.

    .venv/bin/python bench/chaos_bench.py
    .venv/bin/python bench/chaos_bench.py --rounds 3 --only zone-loss partial-zone-loss

Recovery = from the fault (or, where pods cannot recover while it lasts, the repair) to
every pod Running in its disk's zone. Results are printed and written to
reports/bench-chaos.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

from zoneproof.cluster import ClusterSpec, LocalProvider
from zoneproof.deploy.driver import DriverDeployment
from zoneproof.profile import load_profile
from zoneproof_chaos import running
from zoneproof_chaos.context import configuration_for

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "reports" / "bench-chaos.json"
TARGET_SECONDS = 300
PODGC_PERIOD = 20  # kube-controller-manager's pod garbage collector runs every 20 s (not a flag)


def timings_table(spec: ClusterSpec) -> list[str]:
    t = spec.timings.scaled()
    return [
        "Kubernetes timings configured:",
        f"  node-monitor-grace-period          {t.node_monitor_grace_period:g} s (upstream 50 s)",
        f"  node-monitor-period                {t.node_monitor_period:g} s (upstream 5 s)",
        f"  node lease duration                {t.node_lease_duration} s (upstream 40 s)",
        f"  default not-ready toleration       {t.not_ready_toleration} s (upstream 300 s)",
        f"  default unreachable toleration     {t.unreachable_toleration} s (upstream 300 s)",
        f"  node eviction rate                 {t.node_eviction_rate:g} node/s (upstream 0.1)",
        f"  pod GC period (force-delete after out-of-service)  {PODGC_PERIOD} s (fixed upstream)",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1, help="runs of each experiment (default 1)")
    parser.add_argument("--only", nargs="+", default=None, help="experiment names (default: all)")
    parser.add_argument("--cluster-name", default=None, help="use this running local cluster")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("chaostoolkit").setLevel(logging.ERROR)  # its per-run notices drown the table
    paths = [p for p in running.experiments() if not args.only or p.stem in args.only]
    if not paths:
        print(f"no experiment named {args.only}; known: {[p.stem for p in running.experiments()]}", file=sys.stderr)
        return 2

    provider = LocalProvider(ClusterSpec(name=args.cluster_name or "zp-bench-chaos"))
    own = args.cluster_name is None
    if own:
        provider.up()
    elif not provider.is_up():
        print(f"cluster {args.cluster_name!r} is not running", file=sys.stderr)
        return 2
    provider = LocalProvider.attach(provider.spec.name)
    driver = DriverDeployment(provider, load_profile("reference"))
    own_driver = not driver.is_up()
    results: dict[str, list[dict]] = {p.stem: [] for p in paths}
    try:
        if own_driver:
            driver.up()
        started = time.monotonic()
        with running.kubeconfig(provider.kubeconfig):
            for round_no in range(1, args.rounds + 1):
                for path in paths:
                    journal = running.run(path, configuration_for(provider, "reference"))
                    measured = running.metrics(journal)
                    problems = running.problems(journal)
                    results[path.stem].append({"seconds": measured, "problems": problems})
                    print(f"round {round_no} {path.stem:<20} recovery {running.recovery_seconds(measured):6.1f} s  "
                          f"wall {measured['wall time']:6.1f} s  {'ok' if not problems else 'FAILED: ' + problems[0]}",
                          flush=True)
    finally:
        if own_driver:
            driver.down()
        if own:
            provider.down()
    set_seconds = (time.monotonic() - started) / args.rounds

    lines = ["", *timings_table(provider.spec), "",
             f"{'experiment':<20} {'recovery (median)':>18} {'max':>7} {'NotReady after':>15} {'wall time':>10}"]
    for name, runs in results.items():
        recoveries = [running.recovery_seconds(r["seconds"]) for r in runs]
        detected = [v for r in runs for k, v in r["seconds"].items() if k.endswith("(NotReady after)")]
        walls = [r["seconds"]["wall time"] for r in runs]
        lines.append(f"{name:<20} {statistics.median(recoveries):>16.1f} s {max(recoveries):>5.1f} s "
                     f"{(f'{statistics.median(detected):.1f} s' if detected else '-'):>15} "
                     f"{statistics.median(walls):>8.1f} s")
    lines.append(f"\nwhole chaos set: {set_seconds:.0f} s per round, workloads and clean-up included, "
                 f"cluster and driver start-up not (target under {TARGET_SECONDS} s)")
    print("\n".join(lines))
    failed = [name for name, runs in results.items() if any(r["problems"] for r in runs)]
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps({"machine_cores": os.cpu_count(), "timings": provider.spec.to_dict()["timings"],
                                  "set_seconds_per_round": round(set_seconds, 1), "target_seconds": TARGET_SECONDS,
                                  "experiments": results, "failed": failed}, indent=2))
    print(f"written to {REPORT}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
