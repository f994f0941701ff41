#!/usr/bin/env python3
"""Benchmark of the local provider: bring-up time (warm, and optionally cold) and how
long Kubernetes takes to notice a powered-off node or zone.

    python bench/cluster_bench.py                # warm bring-up ×3, detection per node and zone
    python bench/cluster_bench.py --cold         # also: build every tool from empty caches first

Results are printed as a table and written to reports/bench-cluster.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoneproof import toolchain  # noqa: E402
from zoneproof.cluster import ClusterSpec, LocalProvider  # noqa: E402
from zoneproof.cluster.spec import Timings, parse_zones  # noqa: E402

REPORT = Path(__file__).resolve().parent.parent / "reports" / "bench-cluster.json"


def timed(fn) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def cold_build() -> dict:
    """Build every tool set into empty tool and Go build caches (the module download cache
    is kept: on a new machine downloads add roughly a minute)."""
    with tempfile.TemporaryDirectory(prefix="zp-cold-") as tmp:
        saved = {k: os.environ.get(k) for k in ("ZONEPROOF_CACHE_DIR", "GOCACHE")}
        os.environ["ZONEPROOF_CACHE_DIR"] = f"{tmp}/cache"
        os.environ["GOCACHE"] = f"{tmp}/gocache"
        try:
            per_set = {name: timed(lambda ts=ts: toolchain.build(ts)) for name, ts in toolchain.TOOL_SETS.items()}
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return {"tool_build_seconds": per_set, "total_seconds": sum(per_set.values())}


def detection(provider: LocalProvider, names: list[str]) -> float:
    """Seconds from power-off until every named node is NotReady; powers them on again."""
    started = time.monotonic()
    for name in names:
        provider.stop_node(name)
    provider.wait_nodes_ready(names, ready=False, timeout=provider.spec.timings.not_ready_bound * 3)
    elapsed = time.monotonic() - started
    for name in names:
        provider.start_node(name)
    provider.wait_nodes_ready(names, timeout=60)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="bring-ups and detections to time")
    parser.add_argument("--zones", default="cn-beijing-a,cn-beijing-b,cn-beijing-c")
    parser.add_argument("--nodes-per-zone", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="also time a build from empty caches")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    result: dict = {"kubernetes": toolchain.KUBERNETES_VERSION, "machine_cores": os.cpu_count()}
    if args.cold:
        result["cold"] = cold_build()
    toolchain.build_all()  # make sure the warm runs below measure bring-up only

    spec = ClusterSpec(name="zp-bench", zones=parse_zones(args.zones), nodes_per_zone=args.nodes_per_zone,
                       timings=Timings()).validate()
    result["cluster"] = {"zones": len(spec.zones), "nodes_per_zone": spec.nodes_per_zone,
                         "timings": spec.to_dict()["timings"], "not_ready_bound_seconds": spec.timings.not_ready_bound}
    ups, node_det, zone_det = [], [], []
    with tempfile.TemporaryDirectory(prefix="zp-bench-") as state:
        for i in range(args.runs):
            provider = LocalProvider(spec, workdir=Path(state))
            try:
                ups.append(timed(provider.up))
                zone = spec.zones[i % len(spec.zones)]
                node_det.append(detection(provider, provider.nodes(zone)[:1]))
                zone_det.append(detection(provider, provider.nodes(zone)))
            finally:
                provider.down()

    def stats(xs):
        return {"runs": [round(x, 2) for x in xs], "median": round(statistics.median(xs), 2), "max": round(max(xs), 2)}

    result["warm_bring_up_seconds"] = stats(ups)
    result["node_not_ready_seconds"] = stats(node_det)
    result["zone_not_ready_seconds"] = stats(zone_det)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(result, indent=2))

    print()
    print(f"zoneproof cluster benchmark  (Kubernetes {result['kubernetes']}, {result['machine_cores']} cores, "
          f"{len(spec.zones)} zones x {spec.nodes_per_zone} nodes)")
    if "cold" in result:
        builds = ", ".join(f"{k} {v:.0f}s" for k, v in result["cold"]["tool_build_seconds"].items())
        print(f"  cold tool build            {result['cold']['total_seconds']:7.1f} s   ({builds})")
    for key, label in (("warm_bring_up_seconds", "warm bring-up"),
                       ("node_not_ready_seconds", "node NotReady detection"),
                       ("zone_not_ready_seconds", "zone NotReady detection")):
        s = result[key]
        print(f"  {label:<26} {s['median']:7.1f} s median, {s['max']:.1f} s max  (runs: {s['runs']})")
    t = spec.timings
    print(f"  configured: grace {t.node_monitor_grace_period:g}s, monitor period {t.node_monitor_period:g}s, "
          f"lease {t.node_lease_duration}s -> NotReady bound {t.not_ready_bound:g}s")
    print(f"  written to {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
