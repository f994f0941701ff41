"""The kind provider end to end: node containers with real kubelets, the reference driver's
node plugin registered by them, the article's StatefulSet over three zones with data in its
volumes, a node power cut, the pod back in its zone with its data, and nothing left after."""

from __future__ import annotations

import json
import logging
import subprocess
from datetime import datetime, timezone

import pytest
from kubernetes import client

from zoneproof import data, labels, manifests, oracle
from zoneproof.cluster import docker as docker_daemon
from zoneproof.cluster.kind import KIND_CLUSTER_LABEL, KindProvider
from zoneproof.cluster.spec import ClusterSpec
from zoneproof.csi import incluster
from zoneproof.csi.deploy import DriverDeployment
from zoneproof.processes import processes_under
from zoneproof.profile import load_profile
from zoneproof.waiting import wait_for

# A first run builds the node image's tools and the images (about 10 minutes here).
pytestmark = [pytest.mark.cluster, pytest.mark.kind, pytest.mark.timeout(3600)]
log = logging.getLogger(__name__)

NAME = "zp-kindtest"
ZONES = ("cn-beijing-a", "cn-beijing-b", "cn-beijing-c")
NAMESPACE = "zp-kind-data"


def _leftovers(provider: KindProvider, private: bool, made_network: bool) -> list[str]:
    found = []
    if provider.cluster_dir.exists():
        found.append(f"cluster directory {provider.cluster_dir}")
    if private and docker_daemon.attached().private:
        found.append("the private Docker daemon, still running")
    # Look into the daemon's state too (a stopped private daemon keeps its containers).
    with docker_daemon.borrowed(f"{NAME}-check") as daemon:
        out = daemon.run("ps", "-a", "--filter", f"label={KIND_CLUSTER_LABEL}={NAME}", "--format", "{{.Names}}")
        found += [f"container {n}" for n in out.stdout.decode().split()]
        if made_network and daemon.run("network", "inspect", "kind", check=False).returncode == 0:
            found.append("the kind network")
    mounts = subprocess.run(["grep", "-c", NAME, "/proc/self/mountinfo"], capture_output=True, text=True)
    if mounts.stdout.strip() not in ("", "0"):
        found.append(f"{mounts.stdout.strip()} mounts naming {NAME}")
    return found


def _placed(provider: KindProvider, cloud, profile, replicas: int) -> oracle.Verdict:
    def check():
        verdict = oracle.check(oracle.take_snapshot(provider.api_client, cloud, NAMESPACE, driver=profile.driver),
                               driver=profile.driver)
        if any(not p.ok for p in verdict.pods):  # a violation fails at once; no pod yet is waited for
            raise AssertionError(f"placement violation:\n{verdict.table()}")
        return oracle.settled(verdict, replicas)[0], oracle.settled(verdict, replicas)[1]

    wait_for(check, what=f"{replicas} pods placed in their disks' zones", timeout=240)
    return oracle.check(oracle.take_snapshot(provider.api_client, cloud, NAMESPACE, driver=profile.driver),
                        driver=profile.driver)


def _running_again(core: client.CoreV1Api, pod_name: str, since: datetime) -> None:
    """Until the pod's container runs again, started after ``since`` (the kubelet of a
    node that lost power restarts everything; the API may still show the old state)."""
    def check():
        try:
            pod = core.read_namespaced_pod(pod_name, NAMESPACE)
        except client.exceptions.ApiException as err:
            if err.status == 404:
                return False, "pod not recreated yet"
            raise
        statuses = pod.status.container_statuses or []
        running = [c.state.running for c in statuses if c.state and c.state.running and c.ready]
        fresh = [r for r in running if r.started_at and r.started_at > since]
        return bool(fresh), f"{pod_name} {pod.status.phase} on {pod.spec.node_name or 'no node'}"

    wait_for(check, what=f"{pod_name} to run again after the power cut", timeout=180)


def test_statefulset_data_follows_its_disk_through_a_power_cut():
    spec = ClusterSpec(name=NAME, zones=ZONES, nodes_per_zone=1)
    provider = KindProvider(spec)
    profile = load_profile("reference")
    private = made_network = False
    deployment = None
    try:
        provider.up()
        private, made_network = provider._state()["private_docker"], provider._state()["made_network"]
        workers = [w for w in provider.nodes() if not w.endswith("-control-plane")]
        assert len(workers) == len(ZONES)
        for node in provider.core.list_node().items:
            if node.metadata.name in workers:
                assert node.spec.provider_id.startswith("alicloud://cn-beijing.i-")
                assert node.metadata.labels[labels.INSTANCE_ID] in node.spec.provider_id

        deployment = DriverDeployment(provider, profile, logs=provider.cluster_dir / "driver-logs")
        deployment.up()
        # The driver image is in the nodes now: loading it again does nothing (no kind call).
        loaded = json.loads(provider.state_file.read_text())["loaded_images"]
        assert len(loaded) == 1, loaded
        real_kind, provider._kind = provider._kind, None  # calling it would fail the test
        provider.load_images(*loaded)
        provider._kind = real_kind
        # The kubelet, not zoneproof, labelled each worker from NodeGetInfo.
        for node in provider.core.list_node().items:
            if node.metadata.name in workers:
                assert node.metadata.labels[labels.DISK_ZONE] == node.metadata.labels[labels.ZONE]

        api = provider.api_client
        cloud = deployment.cloud()
        provider.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        scheme = profile.storage_classes["wait-for-first-consumer"]
        sc = profile.storage_class("wait-for-first-consumer", f"{NAMESPACE}-wffc", list(ZONES))
        client.StorageV1Api(api).create_storage_class(sc)
        assert scheme.binding == "WaitForFirstConsumer"
        sts = data.runnable(manifests.statefulset(len(ZONES), sc["metadata"]["name"], size=profile.size))
        client.AppsV1Api(api).create_namespaced_stateful_set(NAMESPACE, sts)

        verdict = _placed(provider, cloud, profile, len(ZONES))
        ledger = data.DataLedger()
        assert ledger.check(provider.core, NAMESPACE, expected=len(ZONES)) == len(ZONES)
        pods = provider.core.list_namespaced_pod(NAMESPACE).items

        # Power cut on the node of web-1: the kubelet dies with its container.
        victim = next(p for p in pods if p.metadata.name.endswith("-1"))
        node, zone = victim.spec.node_name, next(p.node_zone for p in verdict.pods if p.pod == victim.metadata.name)
        cut = datetime.now(timezone.utc).replace(microsecond=0)
        provider.stop_node(node)
        provider.wait_nodes_ready([node], ready=False, timeout=spec.timings.not_ready_bound + 30)
        provider.start_node(node)
        provider.wait_nodes_ready([node], timeout=120)
        _running_again(provider.core, victim.metadata.name, cut)

        verdict = _placed(provider, cloud, profile, len(ZONES))
        back = next(p for p in verdict.pods if p.pod == victim.metadata.name)
        assert back.node_zone == zone
        assert ledger.check(provider.core, NAMESPACE, expected=len(ZONES)) == len(ZONES)

        # A driver taken down is gone when down() returns: the next deployment must not
        # meet its DaemonSet still being deleted.
        deployment.down()
        deployment = None
        left = client.AppsV1Api(api).list_daemon_set_for_all_namespaces(field_selector=f"metadata.name={incluster.NAME}")
        assert not left.items, [d.metadata.deletion_timestamp for d in left.items]
    finally:
        try:
            if deployment is not None:
                deployment.down()
        finally:
            provider.down()
    assert not processes_under(provider.cluster_dir)
    assert _leftovers(provider, private, made_network) == []
