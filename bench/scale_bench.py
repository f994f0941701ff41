#!/usr/bin/env python3
"""Scale benchmark: the article's StatefulSets at the size of a real cluster.

A local cluster of 3 zones × 100 nodes (by default) and the reference driver; one
namespace per scheme of the article (static PVs with zone labels, static PVs with
nodeAffinity, dynamic PVs with a zoneId list, WaitForFirstConsumer), each with the
article's StatefulSet ``web`` (Parallel pod management: this measures the cluster and the
oracle, not the one-pod-at-a-time start of OrderedReady). The StatefulSets grow in steps
until their replicas total each step (30, 100, 300), and at every step this measures:

- provisioning: until every claim is Bound;
- scheduling: until every pod is Running;
- attaching: until every pod's disks are attached to its node (the oracle's "settled");
- the oracle: its snapshot (Kubernetes lists and ECS reads) and its verdict, each timed
  on its own, over every pod of the cluster. The verdict must judge exactly the step's
  pods, all placed, none in violation; anything else fails the benchmark.

    .venv/bin/python bench/scale_bench.py                      # 3 zones × 100 nodes, 30/100/300
    .venv/bin/python bench/scale_bench.py --nodes-per-zone 10 --steps 12 30

Results are printed and written to reports/bench-scale.json. The cluster, the driver and
every disk go at the end, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from kubernetes import client

from zoneproof import manifests, workloads
from zoneproof.cluster import ClusterSpec, LocalProvider, Timings
from zoneproof.cluster.spec import DEFAULT_ZONES
from zoneproof.deploy.driver import DriverDeployment
from zoneproof.oracle import check, settled, take_snapshot
from zoneproof.profile import load_profile
from zoneproof.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "reports" / "bench-scale.json"
SCHEMES = ("static-zone-labels", "static-nodeaffinity", "dynamic-zoneid", "wait-for-first-consumer")
log = logging.getLogger("scale-bench")


def shares(total: int, parts: int) -> list[int]:
    """``total`` replicas split over ``parts`` StatefulSets as evenly as they go."""
    return [total // parts + (1 if n < total % parts else 0) for n in range(parts)]


class Workloads:
    """One namespace per scheme with the article's objects in it; ``grow`` scales them."""

    def __init__(self, cluster: LocalProvider, driver: DriverDeployment, profile):
        self.cluster, self.driver, self.profile = cluster, driver, profile
        self.apps = client.AppsV1Api(cluster.api_client)
        self.replicas = {scheme: 0 for scheme in SCHEMES}
        self.zones = list(cluster.spec.zones)

    def namespace(self, scheme: str) -> str:
        return f"scale-{scheme}"

    def create(self) -> None:
        storage = client.StorageV1Api(self.cluster.api_client)
        for scheme in SCHEMES:
            ns = self.namespace(scheme)
            self.cluster.core.create_namespace({"metadata": {"name": ns}})
            self.cluster.core.create_namespaced_service(ns, manifests.service())
            storage_class = ""
            if not scheme.startswith("static-"):
                sc = manifests.storage_class(self.profile, scheme, self.zones, name=f"scale-{scheme}")
                storage.create_storage_class(sc)
                storage_class = sc["metadata"]["name"]
            sts = manifests.statefulset(0, storage_class, self.profile.size, pod_management="Parallel")
            self.apps.create_namespaced_stateful_set(ns, sts)

    def grow(self, total: int) -> None:
        cloud = self.driver.cloud()
        for scheme, replicas in zip(SCHEMES, shares(total, len(SCHEMES))):
            ns = self.namespace(scheme)
            if scheme.startswith("static-"):  # a disk, a PV and a claim per new ordinal, made first
                pairs = []
                for n in range(self.replicas[scheme], replicas):
                    zone = manifests.static_zone(self.zones, n)
                    disk = cloud.api.call("CreateDisk", RegionId=cloud.region, ZoneId=zone,
                                          DiskCategory=self.profile.disk_categories[0],
                                          Size=self.profile.min_size_gib, DiskName=f"{ns}-web-{n}")["DiskId"]
                    pairs.append(manifests.static_pair(n, zone, cloud.region, disk, self.profile,
                                                       scheme.removeprefix("static-"), size=self.profile.size,
                                                       pv_prefix=f"{scheme}-"))
                workloads.create_static_pvs(self.cluster.core, [pair.pv for pair in pairs])
                for pair in pairs:
                    self.cluster.core.create_namespaced_persistent_volume_claim(ns, pair.pvc)
            self.apps.patch_namespaced_stateful_set_scale(manifests.STATEFULSET, ns, {"spec": {"replicas": replicas}})
            self.replicas[scheme] = replicas


def timed(what: str, wait) -> float:
    started = time.monotonic()
    wait()
    seconds = time.monotonic() - started
    log.info("%s: %.1fs", what, seconds)
    return round(seconds, 2)


def claims_bound(core: client.CoreV1Api, total: int):
    def check_bound():
        claims = [c for c in core.list_persistent_volume_claim_for_all_namespaces().items
                  if c.metadata.namespace.startswith("scale-")]
        bound = sum(1 for c in claims if c.status.phase == "Bound")
        return len(claims) == total and bound == total, f"{bound}/{total} claims Bound ({len(claims)} made)"
    return lambda: wait_for(check_bound, what=f"{total} claims Bound", timeout=600, interval=0.25)


def pods_running(core: client.CoreV1Api, total: int):
    def check_running():
        pods = [p for p in core.list_pod_for_all_namespaces().items if p.metadata.namespace.startswith("scale-")]
        running = sum(1 for p in pods if p.status.phase == "Running")
        return len(pods) == total and running == total, f"{running}/{total} pods Running ({len(pods)} made)"
    return lambda: wait_for(check_running, what=f"{total} pods Running", timeout=600, interval=0.25)


def judge(cluster, cloud, driver: str, total: int) -> dict:
    """The oracle over the whole cluster, its snapshot and its verdict timed apart."""
    started = time.monotonic()
    snapshot = take_snapshot(cluster.api_client, cloud, None, driver=driver)
    snapshot_seconds = time.monotonic() - started
    started = time.monotonic()
    verdict = check(snapshot, driver=driver)
    verdict_seconds = time.monotonic() - started
    done, state = settled(verdict, total)
    if not verdict.ok:
        raise SystemExit("placement violations:\n" + "\n".join(verdict.violations))
    if len(verdict.pods) != total or not done:
        raise SystemExit(f"the oracle judged {len(verdict.pods)} pods, expected {total} placed: {state}")
    return {"snapshot": round(snapshot_seconds, 3), "verdict": round(verdict_seconds, 3),
            "per 100 pods": round((snapshot_seconds + verdict_seconds) * 100 / total, 3)}


def run(args: argparse.Namespace) -> dict:
    result: dict = {"zones": len(args.zones), "nodes per zone": args.nodes_per_zone,
                    "heartbeat factor": args.heartbeat_factor, "steps": []}
    started = time.monotonic()
    # No node fails here: slower heartbeats keep hundreds of nodes' upkeep off the machine.
    cluster = LocalProvider(ClusterSpec(name=args.name, zones=tuple(args.zones), nodes_per_zone=args.nodes_per_zone,
                                        timings=Timings(heartbeat_factor=args.heartbeat_factor)))
    profile = load_profile("reference")
    driver = DriverDeployment(cluster, profile, logs=REPO / "reports" / "bench-scale-logs")
    try:
        result["bring-up"] = timed(f"bring-up of {len(args.zones)} × {args.nodes_per_zone} nodes", cluster.up)
        result["driver up"] = timed("driver up", driver.up)
        cloud = driver.cloud()
        work = Workloads(cluster, driver, profile)
        work.create()
        for total in args.steps:
            step_started = time.monotonic()
            log.info("growing the StatefulSets to %d replicas in all", total)
            work.grow(total)
            step = {"replicas": total, "provisioning": timed("provisioning", claims_bound(cluster.core, total)),
                    "scheduling": timed("scheduling", pods_running(cluster.core, total))}

            def attached():
                wait_for(lambda: settled(check(take_snapshot(cluster.api_client, cloud, None, driver=profile.driver),
                                               driver=profile.driver), total),
                         what=f"{total} pods with their disks attached", timeout=600, interval=0.25)
            step["attaching"] = timed("attaching", attached)
            step["oracle"] = judge(cluster, cloud, profile.driver, total)
            step["step"] = round(time.monotonic() - step_started, 1)
            log.info("%d replicas: %s", total, step)
            result["steps"].append(step)
    finally:
        torn_down = time.monotonic()
        try:
            driver.down()
        finally:
            cluster.down()
        result["tear-down"] = round(time.monotonic() - torn_down, 1)
    result["total"] = round(time.monotonic() - started, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zones", nargs="+", default=list(DEFAULT_ZONES))
    parser.add_argument("--nodes-per-zone", type=int, default=100)
    parser.add_argument("--steps", type=int, nargs="+", default=[30, 100, 300],
                        help="replicas in all after each step (ascending)")
    parser.add_argument("--name", default="zp-scale-bench", help="cluster name")
    parser.add_argument("--heartbeat-factor", type=float, default=3.0,
                        help="multiplies the nodes' heartbeat timings (no node fails in this benchmark)")
    args = parser.parse_args()
    if args.steps != sorted(set(args.steps)) or args.steps[0] < len(SCHEMES):
        parser.error(f"--steps must ascend, each at least {len(SCHEMES)} (one replica per scheme)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
    result = run(args)
    print(f"\nscale benchmark: {result['zones']} zones × {result['nodes per zone']} nodes, "
          f"bring-up {result['bring-up']}s, driver up {result['driver up']}s, total {result['total']}s")
    print(f"{'replicas':>8} {'provision':>9} {'schedule':>9} {'attach':>8} {'snapshot':>9} {'verdict':>8} "
          f"{'oracle/100 pods':>15}")
    for s in result["steps"]:
        o = s["oracle"]
        print(f"{s['replicas']:>8} {s['provisioning']:>8}s {s['scheduling']:>8}s {s['attaching']:>7}s "
              f"{o['snapshot']:>8}s {o['verdict']:>7}s {o['per 100 pods']:>14}s")
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps({"machine_cores": os.cpu_count(), **result}, indent=2))
    print(f"written to {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
