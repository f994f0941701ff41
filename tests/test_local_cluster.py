"""The local provider against real control-plane processes: nodes, workloads, outages."""

from __future__ import annotations

import subprocess
import time

import pytest
from kubernetes import client

from zoneproof import labels, toolchain
from zoneproof.cluster import ClusterError, LocalProvider
from zoneproof.waiting import hold_for, wait_for
from zoneproof.workloads import deploy_spread_statefulset, wait_running

pytestmark = pytest.mark.cluster

REPLICAS = 3


def pods(cluster, namespace) -> list[client.V1Pod]:
    return cluster.core.list_namespaced_pod(namespace).items


def deploy(cluster, namespace) -> None:
    deploy_spread_statefulset(cluster.api_client, namespace, "web", REPLICAS)


def zone_of_node(cluster, node: str) -> str:
    return cluster.core.read_node(node).metadata.labels[labels.ZONE]


def test_every_zone_has_ready_nodes_with_ack_labels(cluster):
    spec = cluster.spec
    assert cluster.zones() == sorted(spec.zones)
    for zone in spec.zones:
        names = cluster.nodes(zone)
        assert len(names) == spec.nodes_per_zone
        for name in names:
            node = cluster.core.read_node(name)
            lab = node.metadata.labels
            assert lab[labels.ZONE] == lab[labels.ZONE_DEPRECATED] == lab[labels.DISK_ZONE] == zone
            assert lab[labels.REGION] == lab[labels.REGION_DEPRECATED] == spec.region
            assert node.spec.provider_id == f"alicloud://{spec.region}.{lab[labels.INSTANCE_ID]}"
            assert node.metadata.annotations[labels.CONTROLLER_MANAGED_ATTACH_DETACH] == "true"
    assert all(s.is_ready for s in cluster.node_states())
    instance_ids = [cluster.core.read_node(n).metadata.labels[labels.INSTANCE_ID] for n in cluster.nodes()]
    assert len(set(instance_ids)) == len(instance_ids)


def test_kubectl_works_with_the_kubeconfig(cluster):
    out = subprocess.run([str(toolchain.binary("kubectl")), "--kubeconfig", str(cluster.kubeconfig),
                          "get", "nodes", "-o", "name"], capture_output=True, text=True, check=True).stdout
    assert sorted(out.split()) == sorted(f"node/{n}" for n in cluster.nodes())


def test_unknown_zone_or_node_is_named(cluster):
    with pytest.raises(ClusterError, match="no zone 'atlantis-1'"):
        cluster.nodes("atlantis-1")
    with pytest.raises(ClusterError, match="no node named 'ghost'"):
        cluster.stop_node("ghost")


def test_statefulset_without_volumes_runs(cluster, namespace):
    deploy(cluster, namespace)
    zones = {zone_of_node(cluster, p.spec.node_name) for p in pods(cluster, namespace)}
    assert len(zones) == min(REPLICAS, len(cluster.spec.zones))


def test_second_up_says_the_cluster_is_running(cluster):
    with pytest.raises(ClusterError, match="is already running"):
        LocalProvider(cluster.spec).up()
    assert cluster.is_up()
    assert all(s.is_ready for s in cluster.node_states())


def test_stop_zone_is_an_outage_and_start_zone_ends_it(cluster, namespace):
    deploy(cluster, namespace)
    victim = next(p for p in pods(cluster, namespace))
    zone = zone_of_node(cluster, victim.spec.node_name)
    in_zone = set(cluster.nodes(zone))
    elsewhere = set(cluster.nodes()) - in_zone
    bound = cluster.spec.timings.not_ready_bound

    stopped_at = time.monotonic()
    cluster.stop_zone(zone)

    def zone_not_ready():
        states = {s.name: s for s in cluster.node_states()}
        healthy_lost = sorted(n for n in elsewhere if not states[n].is_ready)
        assert not healthy_lost, f"nodes outside {zone} went NotReady: {healthy_lost}"
        still_ready = sorted(n for n in in_zone if states[n].is_ready)
        return not still_ready, f"still Ready in {zone}: {still_ready}"

    wait_for(zone_not_ready, what=f"every node of {zone} NotReady", timeout=bound)
    detected = time.monotonic() - stopped_at
    assert detected <= bound

    def tainted_unreachable():
        missing = [s.name for s in cluster.node_states()
                   if s.name in in_zone and f"{labels.TAINT_UNREACHABLE}:NoExecute" not in s.taints]
        return not missing, f"no unreachable NoExecute taint yet on {missing}"

    wait_for(tainted_unreachable, what="unreachable taints", timeout=30)

    def victim_terminating():
        pod = cluster.core.read_namespaced_pod(victim.metadata.name, namespace)
        return pod.metadata.deletion_timestamp is not None and pod.metadata.uid == victim.metadata.uid, \
            f"{pod.metadata.name} on {pod.spec.node_name}, deletionTimestamp={pod.metadata.deletion_timestamp}"

    tolerations = cluster.spec.timings.unreachable_toleration
    wait_for(victim_terminating, what=f"{victim.metadata.name} to be evicted", timeout=tolerations + 30)
    # Nobody confirms the deletion while the zone is dark: the pod stays Terminating.
    hold_for(victim_terminating, what=f"{victim.metadata.name} staying Terminating", duration=10)
    hold_for(zone_not_ready, what=f"{zone} staying NotReady", duration=1)

    cluster.start_zone(zone)
    cluster.wait_nodes_ready(sorted(in_zone), timeout=30)
    wait_running(cluster.core, namespace, REPLICAS)
    replaced = cluster.core.read_namespaced_pod(victim.metadata.name, namespace)
    assert replaced.metadata.uid != victim.metadata.uid


def test_out_of_service_taint_releases_a_dead_nodes_pods(cluster, namespace):
    deploy(cluster, namespace)
    victim = pods(cluster, namespace)[0]
    node = victim.spec.node_name
    cluster.stop_node(node)
    try:
        cluster.wait_nodes_ready([node], ready=False, timeout=cluster.spec.timings.not_ready_bound)
        cluster.set_out_of_service(node)

        def victim_replaced():
            pod = cluster.core.read_namespaced_pod(victim.metadata.name, namespace)
            return pod.metadata.uid != victim.metadata.uid and pod.spec.node_name not in (None, node), \
                f"uid {'same' if pod.metadata.uid == victim.metadata.uid else 'new'}, node {pod.spec.node_name}"

        wait_for(victim_replaced, what="the pod to be force-deleted and rescheduled", timeout=60)
    finally:
        cluster.start_node(node)
        cluster.set_out_of_service(node, on=False)
    cluster.wait_nodes_ready([node], timeout=30)
    taints = next(s.taints for s in cluster.node_states() if s.name == node)
    assert not any(t.startswith(labels.TAINT_OUT_OF_SERVICE) for t in taints)


def test_every_node_becomes_an_instance_of_the_fake_ecs(cluster):
    from zoneproof.ecs.admin import EcsAdmin
    from zoneproof.ecs.backend import EcsConfig
    from zoneproof.ecs.server import EcsServer

    config = EcsConfig(region=cluster.spec.region, zones={z: ("cloud_ssd",) for z in cluster.spec.zones})
    with EcsServer(config) as ecs:
        instances = cluster.instances()
        assert len(instances) == len(cluster.nodes())
        EcsAdmin(ecs.endpoint).register_instances(instances)
        held = {i["InstanceId"]: i["ZoneId"] for i in EcsAdmin(ecs.endpoint).state()["instances"]}
    assert held == instances
    for name in cluster.nodes():
        lab = cluster.core.read_node(name).metadata.labels
        assert held[lab[labels.INSTANCE_ID]] == lab[labels.ZONE]
