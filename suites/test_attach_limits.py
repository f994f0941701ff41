"""Attach limits per zone: each node plugin reports how many of the driver's volumes its node
can hold (NodeGetInfo ``max_volumes_per_node``, which the kubelet writes into the node's
CSINode and the scheduler keeps to). A limit above what the node's instance can hold sends
pods to nodes whose disks the cloud then refuses to attach; a zone whose nodes are full
must send a pod whose disk follows it to another zone, and keep a pod that follows its
disk Pending in its own.

The case fills every node of one zone to its limit, so it is ``disruptive`` (run alone)."""

from __future__ import annotations

import logging
import random

import pytest
from kubernetes import client

from zoneproof import data, labels
from zoneproof.cluster.nodes import instance_of
from zoneproof.suites.steps import attachments_to, wait_events, wait_placed, wait_running, wffc_class
from zoneproof.workloads import claim, pod_with_claims

log = logging.getLogger(__name__)

pytestmark = pytest.mark.disruptive


def attach_limit(env, node: str) -> int:
    """The node's limit for the driver under test, from its CSINode (0: none reported)."""
    csinode = client.StorageV1Api(env.cluster.api_client).read_csi_node(node)
    for entry in csinode.spec.drivers or []:
        if entry.name == env.profile.driver:
            return (entry.allocatable.count or 0) if entry.allocatable else 0
    raise AssertionError(f"node {node}'s CSINode has no entry for {env.profile.driver}: its node plugin is not "
                         "registered")


def volume_of(env, claim_name: str) -> str:
    return env.cluster.core.read_namespaced_persistent_volume_claim(claim_name, env.namespace).spec.volume_name


def test_a_full_zone_sends_new_disks_elsewhere_and_keeps_its_followers_waiting(placement, cluster, profile, seed):
    if profile.attach_limit == "none":
        pytest.skip(f"profile {profile.name!r} states its node plugin reports no attach limit (attach_limit: none)")
    if len(cluster.spec.zones) < 2:
        pytest.skip(f"needs 2 zones (a pod must have somewhere else to go); the cluster has {len(cluster.spec.zones)}")
    env = placement("topology")
    storage_class = wffc_class(env)
    zone = random.Random(f"{seed}-attach-limits").choice(sorted(cluster.spec.zones))
    nodes = cluster.nodes(zone)

    # Each node's limit, against what its instance can hold.
    limits = {node: attach_limit(env, node) for node in nodes}
    unlimited = [node for node, limit in limits.items() if not limit]
    assert not unlimited, (f"profile {profile.name!r} states the node plugin reports an attach limit, but the "
                           f"CSINode of {', '.join(unlimited)} has none")
    for node, limit in limits.items():
        instance = instance_of(cluster.core.read_node(node))
        quantity = env.cloud.disk_quantity(instance)
        assert limit <= quantity, (f"node {node} reports an attach limit of {limit} volumes, but its instance "
                                   f"{instance} can hold {quantity} disks: the scheduler will send pods whose disks "
                                   "the cloud refuses to attach")
    log.info("zone %s: attach limits %s", zone, limits)

    # A disk in the zone, whose pod then goes away: later, that pod follows its disk.
    cluster.core.create_namespaced_persistent_volume_claim(env.namespace, claim("kept", storage_class, profile.size))
    follower = pod_with_claims("follower", ["kept"], {labels.ZONE: zone})
    cluster.core.create_namespaced_pod(env.namespace, data.for_cluster(cluster, follower))
    wait_running(env, 1)
    wait_placed(env, 1)
    kept_volume = volume_of(env, "kept")
    cluster.core.delete_namespaced_pod("follower", env.namespace)
    env.wait_for(lambda: (not (held := [va.metadata.name for n in nodes for va in attachments_to(env, n)
                                        if va.spec.source.persistent_volume_name == kept_volume]), held),
                 what=f"the disk of claim kept ({kept_volume}) to detach once its pod is gone", timeout=120)

    # Fill every node of the zone to its limit, one pod per node.
    fillers, claims = [], 0
    for n, node in enumerate(nodes):
        free = limits[node] - len(attachments_to(env, node))
        assert free >= 0, f"node {node} holds {limits[node] - free} volumes, above its limit of {limits[node]}"
        names = [f"fill-{n}-{k}" for k in range(free)]
        for name in names:
            cluster.core.create_namespaced_persistent_volume_claim(env.namespace, claim(name, storage_class,
                                                                                        profile.size))
        if names:
            cluster.core.create_namespaced_pod(env.namespace, data.for_cluster(cluster, pod_with_claims(
                f"filler-{n}", names, {labels.HOSTNAME: node})))
            fillers.append(f"filler-{n}")
            claims += len(names)
    assert fillers, f"every node of zone {zone} was full before the case filled it: {limits}"
    log.info("filling zone %s: %d pods, %d claims", zone, len(fillers), claims)
    wait_running(env, len(fillers), timeout=240)
    wait_placed(env, len(fillers))
    for node in nodes:
        held = env.cloud.disks_held(instance_of(cluster.core.read_node(node)))
        assert len(held) == limits[node], (f"node {node} was filled to its limit of {limits[node]}, but its "
                                           f"instance holds {len(held)} disks: {held}")

    # Disk follows pod: a pod that would rather be in the full zone goes elsewhere, its disk with it.
    newcomer = pod_with_claims("newcomer", ["newcomer-data"])
    newcomer["spec"]["affinity"] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [
            {"key": labels.ZONE, "operator": "In", "values": [zone]}]}}]}}
    cluster.core.create_namespaced_persistent_volume_claim(env.namespace, claim("newcomer-data", storage_class,
                                                                                profile.size))
    cluster.core.create_namespaced_pod(env.namespace, data.for_cluster(cluster, newcomer))
    running = wait_running(env, len(fillers) + 1)
    verdict = wait_placed(env, len(fillers) + 1)
    assert running["newcomer"] != zone, f"pod newcomer was placed in full zone {zone}"
    newcomer_disks = [v.disk_zone for p in verdict.pods if p.pod == "newcomer" for v in p.volumes]
    assert newcomer_disks == [running["newcomer"]], f"newcomer runs in {running['newcomer']}, its disk in {newcomer_disks}"

    # Pod follows disk: the pod of the disk kept in the full zone waits, attached nowhere ...
    cluster.core.create_namespaced_pod(env.namespace, data.for_cluster(cluster, pod_with_claims("follower", ["kept"])))
    refusal = wait_events(env, ["follower"], {"FailedScheduling"}, "the scheduler to refuse pod follower a node")
    log.info("pod follower, its disk in full zone %s: %s", zone, refusal["follower"])
    pod = cluster.core.read_namespaced_pod("follower", env.namespace)
    assert pod.status.phase == "Pending" and not pod.spec.node_name, \
        f"pod follower left Pending for node {pod.spec.node_name!r} while every node of {zone} is full"
    stray = [va.spec.node_name for va in client.StorageV1Api(cluster.api_client).list_volume_attachment().items
             if va.spec.source.persistent_volume_name == kept_volume]
    assert not stray, f"the disk of waiting pod follower ({kept_volume}) is being attached to {stray}"

    # ... and runs in its disk's zone once a node there has room.
    cluster.core.delete_namespaced_pod(fillers[0], env.namespace)
    running = wait_running(env, len(fillers) + 1, timeout=240)
    wait_placed(env, len(fillers) + 1)
    assert running["follower"] == zone, f"pod follower runs in {running['follower']}, its disk in {zone}"
    for node in nodes:
        held = env.cloud.disks_held(instance_of(cluster.core.read_node(node)))
        assert len(held) <= limits[node], f"node {node} holds {len(held)} disks, above its limit of {limits[node]}"
    env.check_data(len(fillers) + 1)
