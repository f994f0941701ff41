"""Preconditions of every placement check, on whatever cluster is under test: each node
states one zone under every zone key, one region under every region key, and every zone
can run pods. A cluster failing here would make placement verdicts meaningless."""

from __future__ import annotations

import pytest

from zoneproof import labels
from zoneproof.workloads import deploy_spread_statefulset


CONTROL_PLANE_ROLE = "node-role.kubernetes.io/control-plane"


def test_every_node_states_one_zone_and_region(cluster):
    disagreements = []
    workers = [n for n in cluster.core.list_node().items if CONTROL_PLANE_ROLE not in (n.metadata.labels or {})]
    assert workers, "the cluster has no worker node"
    for node in workers:  # a control-plane node (kind's) runs no workload and sits in no zone
        lab = node.metadata.labels or {}
        zones = {k: lab.get(k) for k in labels.NODE_ZONE_KEYS}
        regions = {k: lab.get(k) for k in (labels.REGION, labels.REGION_DEPRECATED)}
        if len(set(zones.values())) != 1 or None in zones.values():
            disagreements.append(f"{node.metadata.name}: zone keys {zones}")
        if len(set(regions.values())) != 1 or None in regions.values():
            disagreements.append(f"{node.metadata.name}: region keys {regions}")
    assert not disagreements, "\n".join(disagreements)


def test_cluster_has_the_requested_zones(cluster, cluster_spec):
    assert cluster.zones() == sorted(cluster_spec.zones)
    for zone in cluster_spec.zones:
        assert len(cluster.nodes(zone)) >= 1, f"zone {zone} has no node"


@pytest.mark.parametrize("per_zone", [1, 2])
def test_pods_run_in_every_zone(cluster, namespace, per_zone):
    zones = cluster.zones()
    pods = deploy_spread_statefulset(cluster.api_client, namespace, "web", per_zone * len(zones),
                                     containers_run=cluster.capabilities.runs_kubelets)
    node_zone = {n.metadata.name: n.metadata.labels.get(labels.ZONE, "") for n in cluster.core.list_node().items}
    counts = {z: 0 for z in zones}
    for pod in pods:
        counts[node_zone[pod.spec.node_name]] += 1
    assert counts == {z: per_zone for z in zones}
