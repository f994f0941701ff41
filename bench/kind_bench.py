#!/usr/bin/env python3
"""Benchmark of the kind provider next to the local provider, in the same run: bring-up
(warm), NotReady after a power cut of one node, and optionally the node image build from
scratch and the full e2e on both providers.

    python bench/kind_bench.py                   # bring-up and NotReady, kind and local, ×2 each
    python bench/kind_bench.py --cold-image      # also: rebuild the kind node image (tools kept)
    python bench/kind_bench.py --e2e             # also: `zoneproof e2e` on each provider

Results are printed as a table and written to reports/bench-kind.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoneproof.cluster import ClusterSpec, KindProvider, LocalProvider  # noqa: E402
from zoneproof.cluster import docker as docker_daemon  # noqa: E402
from zoneproof.cluster.nodeimage import NodeImageBuilder  # noqa: E402
from zoneproof.cluster.spec import parse_zones  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "reports" / "bench-kind.json"


def timed(fn) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def not_ready_after_power_cut(provider, name: str) -> float:
    started = time.monotonic()
    provider.stop_node(name)
    provider.wait_nodes_ready([name], ready=False, timeout=provider.spec.timings.not_ready_bound * 3)
    elapsed = time.monotonic() - started
    provider.start_node(name)
    provider.wait_nodes_ready([name], timeout=120)
    return elapsed


def cold_image() -> float:
    """Rebuild the node image (the Go tools and the Debian rootfs stay cached)."""
    with docker_daemon.borrowed("bench-cold-image") as docker:
        builder = NodeImageBuilder(docker)
        docker.run("rmi", builder.tag, check=False)
        return timed(builder.ensure)


def e2e(provider: str) -> float:
    cmd = [sys.executable, "-m", "zoneproof.cli", "e2e", "--provider", provider, "--name", f"zp-bench-{provider}",
           "--workers", "2", "--reports", str(ROOT / "reports" / f"bench-e2e-{provider}")]
    started = time.monotonic()
    code = subprocess.run(cmd, cwd=ROOT).returncode
    if code != 0:
        raise SystemExit(f"`zoneproof e2e --provider {provider}` failed ({code}); no figure taken")
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="bring-ups and power cuts per provider")
    parser.add_argument("--zones", default="cn-beijing-a,cn-beijing-b,cn-beijing-c")
    parser.add_argument("--nodes-per-zone", type=int, default=2)
    parser.add_argument("--cold-image", action="store_true", help="also time a node image build")
    parser.add_argument("--e2e", action="store_true", help="also time the full e2e on both providers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    spec = ClusterSpec(name="zp-bench-kind", zones=parse_zones(args.zones),
                       nodes_per_zone=args.nodes_per_zone).validate()
    result: dict = {"machine_cores": os.cpu_count(), "zones": len(spec.zones), "nodes_per_zone": spec.nodes_per_zone}
    if args.cold_image:
        result["node_image_build_seconds"] = round(cold_image(), 1)
    for name, cls in (("kind", KindProvider), ("local", LocalProvider)):
        ups, cuts = [], []
        with tempfile.TemporaryDirectory(prefix="zp-bench-") as state:
            for _ in range(args.runs):
                provider = cls(spec, workdir=Path(state))
                try:
                    ups.append(timed(provider.up))
                    worker = next(n for n in provider.nodes(spec.zones[0]))
                    cuts.append(not_ready_after_power_cut(provider, worker))
                finally:
                    provider.down()
        result[name] = {"bring_up_seconds": [round(x, 1) for x in ups],
                        "not_ready_seconds": [round(x, 1) for x in cuts]}
    if args.e2e:
        for name in ("kind", "local"):
            result[name]["e2e_seconds"] = round(e2e(name), 1)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(result, indent=2))

    print(f"\nkind vs local  ({result['machine_cores']} cores, {len(spec.zones)} zones x {spec.nodes_per_zone} nodes)")
    if "node_image_build_seconds" in result:
        print(f"  kind node image build     {result['node_image_build_seconds']:7.1f} s (Go tools and rootfs cached)")
    print(f"  {'':<26}{'kind':>12}{'local':>12}")
    for key, label in (("bring_up_seconds", "warm bring-up (median)"), ("not_ready_seconds", "NotReady after cut")):
        row = [statistics.median(result[p][key]) for p in ("kind", "local")]
        print(f"  {label:<26}{row[0]:>10.1f} s{row[1]:>10.1f} s")
    if args.e2e:
        print(f"  {'full e2e':<26}{result['kind']['e2e_seconds']:>10.0f} s{result['local']['e2e_seconds']:>10.0f} s")
    print(f"  written to {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
