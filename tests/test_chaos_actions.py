"""The chaos actions that are ours, against a real local cluster: a drain under a
disruption budget retries what the budget refuses, as kubectl drain does; the
out-of-service rollback finds every tainted node; bad targets are named."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from chaoslib.exceptions import ActivityFailed
from kubernetes import client

from zoneproof import labels
from zoneproof.waiting import wait_for
from zoneproof.workloads import wait_running
from zoneproof_chaos import actions

pytestmark = pytest.mark.cluster


def two_pods_on(node: str, spare: str, name: str = "drained") -> dict:
    """A Deployment of 2 pods that may run only on ``node`` or ``spare``, and prefer ``node``."""
    match = {"app": name}
    hostname = "kubernetes.io/hostname"
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 2, "selector": {"matchLabels": match}, "template": {
                "metadata": {"labels": match},
                "spec": {"containers": [{"name": "app", "image": "nginx"}], "affinity": {"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": hostname, "operator": "In", "values": [node, spare]}]}]},
                    "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {
                        "matchExpressions": [{"key": hostname, "operator": "In", "values": [node]}]}}]}}}}}}


def test_drain_under_a_budget_retries_refused_evictions(cluster, namespace, monkeypatch):
    """Both pods start on ``node``; the only other node they may use is cordoned, so the first
    evicted pod's replacement cannot start and the budget must refuse the second eviction
    until the spare node is uncordoned. The drain has to wait that out, not fail."""
    node, spare = cluster.nodes(cluster.zones()[0])[:2]
    config = {"zoneproof_cluster": cluster.spec.name}
    api = cluster.api_client
    client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(namespace, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "one-at-a-time"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "drained"}}}})
    client.AppsV1Api(api).create_namespaced_deployment(namespace, two_pods_on(node, spare))
    before = wait_running(cluster.core, namespace, 2)
    assert {p.spec.node_name for p in before} == {node}, "both pods should start on the preferred node"
    cluster.core.patch_node(spare, {"spec": {"unschedulable": True}})
    refusals, asked_again = [], threading.Event()
    evict = client.CoreV1Api.create_namespaced_pod_eviction

    def counting_evict(self, *args, **kwargs):  # the Eviction API as the drain calls it, counted
        try:
            return evict(self, *args, **kwargs)
        except client.ApiException as err:
            if err.status == 429:
                refusals.append(args[0])
                if len(refusals) >= 2:
                    asked_again.set()
            raise

    monkeypatch.setattr(client.CoreV1Api, "create_namespaced_pod_eviction", counting_evict)
    try:
        with ThreadPoolExecutor(1) as pool:
            draining = pool.submit(actions.drain_nodes, node=node, timeout=90, configuration=config)
            wait_for(lambda: (any(p.status.phase == "Pending" for p in cluster.core.list_namespaced_pod(
                namespace).items), "no replacement Pending yet"), what="the first replacement", timeout=30)
            assert asked_again.wait(30), f"the drain did not ask again after a refusal ({refusals})"
            assert not draining.done(), "the drain ended while the budget had to refuse it"
            cluster.core.patch_node(spare, {"spec": {"unschedulable": False}})
            result = draining.result(timeout=90)
        assert result["refused_evictions"] >= 1, "the budget never refused the second eviction"
        assert sorted(result["evicted"]) == sorted(f"{namespace}/{p.metadata.name}" for p in before)
        after = wait_running(cluster.core, namespace, 2, not_uids={p.metadata.uid for p in before})
        assert {p.spec.node_name for p in after} == {spare}
    finally:
        for name in (node, spare):
            cluster.core.patch_node(name, {"spec": {"unschedulable": False}})


def test_out_of_service_rollback_lifts_every_taint(cluster):
    config = {"zoneproof_cluster": cluster.spec.name}
    zone = cluster.zones()[-1]
    try:
        assert actions.set_out_of_service(zone=zone, configuration=config) == cluster.nodes(zone)
        assert sorted(actions.clear_out_of_service(configuration=config)) == cluster.nodes(zone)
    finally:
        for name in cluster.nodes(zone):
            cluster.set_out_of_service(name, False)
    assert not any(t.startswith(labels.TAINT_OUT_OF_SERVICE) for s in cluster.node_states() for t in s.taints)


@pytest.mark.parametrize(("target", "message"), [
    ({"zone": "nowhere-1"}, "no zone 'nowhere-1'"),
    ({"node": "nobody"}, "no node 'nobody'"),
    ({}, "name exactly one of zone or node"),
    ({"zone": "a", "node": "b"}, "name exactly one of zone or node"),
])
def test_a_bad_target_is_named(cluster, target, message):
    with pytest.raises(ActivityFailed, match=message):
        actions.power_off(**target, configuration={"zoneproof_cluster": cluster.spec.name})
