#!/usr/bin/env python3
"""Benchmark of the kind provider next to the local provider, in the same run: bring-up
(warm), NotReady after a power cut of one node, and optionally the node image build from
scratch and the full e2e on both providers.

    python bench/kind_bench.py                   # bring-up and NotReady, kind and local, ×2 each
    python bench/kind_bench.py --cold-image      # also: rebuild the kind node image (tools kept)
    python bench/kind_bench.py --e2e             # also: `zoneproof e2e` on each provider, and the
                                                 # kind placement matrix's time per case
    python bench/kind_bench.py --devices 5       # also: disks as block devices on kind, 5 rounds:
                                                 # attach to device shown, stage (format + mount)

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


# A stage as the reference node plugin makes it, timed in its container.
STAGE = ("import os, subprocess, time; t = time.monotonic(); "
         "subprocess.run(['mkfs.ext4', '-F', '-q', '-m0', '{device}'], check=True); "
         "os.makedirs('/tmp/bench', exist_ok=True); "
         "subprocess.run(['mount', '-t', 'ext4', '{device}', '/tmp/bench'], check=True); "
         "print(time.monotonic() - t); subprocess.run(['umount', '/tmp/bench'], check=True)")


def _in_container(provider, pod, container: str, command: list[str]) -> str:
    from kubernetes import client
    from kubernetes.stream import stream

    return stream(client.CoreV1Api(provider.api_client).connect_get_namespaced_pod_exec, pod.metadata.name,
                  pod.metadata.namespace, container=container, command=command, stderr=False, stdin=False,
                  stdout=True, tty=False)


def devices(spec: ClusterSpec, state: Path, rounds: int) -> dict:
    """On a kind cluster with the reference driver: from AttachDisk to the device shown in
    the instance's node, and a stage as the reference node plugin does it (mkfs.ext4 on the
    fresh device, then mount), in the node plugin's container."""
    from zoneproof import labels
    from zoneproof.deploy import incluster
    from zoneproof.deploy.driver import DriverDeployment
    from zoneproof.profile import load_profile

    provider = KindProvider(spec, workdir=state)
    attach, stage = [], []
    try:
        provider.up()
        deployment = DriverDeployment(provider, load_profile("reference"), logs=state / "driver-logs")
        deployment.up()
        cloud = deployment.cloud()
        node = next(n for n in provider.core.list_node().items if labels.INSTANCE_ID in (n.metadata.labels or {}))
        name, zone, instance = node.metadata.name, node.metadata.labels[labels.ZONE], node.metadata.labels[
            labels.INSTANCE_ID]
        plugin = next(p for p in provider.core.list_namespaced_pod(
            incluster.NAMESPACE, label_selector=f"app={incluster.NAME}").items if p.spec.node_name == name)
        for _ in range(rounds):
            disk = cloud.api.call("CreateDisk", RegionId=cloud.region, ZoneId=zone, DiskCategory="cloud_ssd",
                                  Size=20)["DiskId"]
            started = time.monotonic()
            cloud.api.call("AttachDisk", DiskId=disk, InstanceId=instance)
            link = f"/dev/disk/by-id/virtio-{cloud.describe_disks([disk])[0]['SerialNumber']}"
            provider.run_on_node(name, "sh", "-c", f"until [ -b {link} ]; do sleep 0.05; done")
            attach.append(time.monotonic() - started)
            out = _in_container(provider, plugin, "node-plugin", ["python3", "-c", STAGE.format(device=link)])
            stage.append(float(out.strip().splitlines()[-1]))
            cloud.api.call("DetachDisk", DiskId=disk, InstanceId=instance)
            cloud.api.wait_disk(disk, {"Available"})
            cloud.api.call("DeleteDisk", DiskId=disk)
        deployment.down()
    finally:
        provider.down()
    return {"attach_to_device_seconds": [round(x, 2) for x in attach],
            "stage_format_mount_seconds": [round(x, 2) for x in stage]}


def placement_case_seconds(reports: Path) -> list[float]:
    """Durations of the placement matrix's cases in an e2e run's JUnit files."""
    import xml.etree.ElementTree as ET

    found = []
    for junit in sorted(reports.glob("junit-*.xml")):
        for case in ET.parse(junit).getroot().iter("testcase"):
            if case.get("name", "").startswith("test_pods_follow_their_disks[") and case.find("skipped") is None:
                found.append(round(float(case.get("time", 0)), 1))
    return found


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
    parser.add_argument("--devices", type=int, default=0, metavar="N",
                        help="also time N attaches to a shown block device and N stages (format + mount) on kind")
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
    if args.devices:
        with tempfile.TemporaryDirectory(prefix="zp-bench-") as state:
            result["kind"].update(devices(spec, Path(state), args.devices))
    if args.e2e:
        for name in ("kind", "local"):
            result[name]["e2e_seconds"] = round(e2e(name), 1)
        result["kind"]["placement_case_seconds"] = placement_case_seconds(ROOT / "reports" / "bench-e2e-kind")
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(result, indent=2))

    print(f"\nkind vs local  ({result['machine_cores']} cores, {len(spec.zones)} zones x {spec.nodes_per_zone} nodes)")
    if "node_image_build_seconds" in result:
        print(f"  kind node image build     {result['node_image_build_seconds']:7.1f} s (Go tools and rootfs cached)")
    print(f"  {'':<26}{'kind':>12}{'local':>12}")
    for key, label in (("bring_up_seconds", "warm bring-up (median)"), ("not_ready_seconds", "NotReady after cut")):
        row = [statistics.median(result[p][key]) for p in ("kind", "local")]
        print(f"  {label:<26}{row[0]:>10.1f} s{row[1]:>10.1f} s")
    if args.devices:
        for key, label in (("attach_to_device_seconds", "attach to device (median)"),
                           ("stage_format_mount_seconds", "stage: mkfs + mount")):
            print(f"  {label:<26}{statistics.median(result['kind'][key]):>10.2f} s")
    if args.e2e:
        print(f"  {'full e2e':<26}{result['kind']['e2e_seconds']:>10.0f} s{result['local']['e2e_seconds']:>10.0f} s")
        cases = result["kind"]["placement_case_seconds"]
        if cases:
            print(f"  {'kind placement case':<26}{statistics.median(cases):>10.1f} s (median of {len(cases)})")
    print(f"  written to {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
