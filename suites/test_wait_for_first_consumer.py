"""Disk follows pod: a WaitForFirstConsumer claim waits for its consumer and is then
provisioned in the zone of the node the scheduler selected for it (the claim's
``volume.kubernetes.io/selected-node``), not merely somewhere its pod can later be moved
to; a requirement no zone can meet fails provisioning instead of making a disk elsewhere;
a zone without stock sends the claim to another zone. Waiting and ordering are proven
from the watched history of the claims, not by sleeping."""

from __future__ import annotations

import random
import re

import pytest

from zoneproof import data, labels
from zoneproof.oracle import SELECTED_NODE, settled
from zoneproof.report.attachments import record_verdict
from zoneproof.suites.steps import wait_events, wffc_class
from zoneproof.waiting import WaitTimeout
from zoneproof.workloads import claim, disks_created_for, pod_with_claims, remove_workload


def scheduled_node(env, pod: str) -> str:
    """The pod's node once the scheduler has bound it (it binds only after the claims)."""
    def check():
        node = env.cluster.core.read_namespaced_pod(pod, env.namespace).spec.node_name
        return bool(node), node
    return env.wait_for(check, what=f"pod {pod} to be bound to a node", timeout=60)


def claim_states(env, name: str) -> list[tuple[str, str, str]]:
    """(phase, selected node, volume) of each version of a claim the watch recorded."""
    return [((v.get("status") or {}).get("phase", ""), (v["metadata"].get("annotations") or {}).get(SELECTED_NODE, ""),
             (v.get("spec") or {}).get("volumeName") or "") for v in env.watcher.versions("PersistentVolumeClaim", name)]


def node_zone(cluster, node: str) -> str:
    return cluster.core.read_node(node).metadata.labels[labels.ZONE]


@pytest.mark.parametrize("zone_ids", ["no-zoneId", "zoneId-every-zone"])
def test_claims_provision_in_their_consumers_zones(placement, cluster, zone_ids):
    """One claim and one consumer per zone: each claim waits Pending until its consumer is
    scheduled, then gets its disk in the zone of the node selected for it; deleting the
    claims deletes the disks."""
    env = placement("topology")
    zones = list(cluster.spec.zones)
    sc = wffc_class(env, None if zone_ids == "no-zoneId" else zones)
    claims = {zone: f"data-{n}" for n, zone in enumerate(zones)}
    for name in claims.values():
        cluster.core.create_namespaced_persistent_volume_claim(env.namespace, claim(name, sc, env.profile.size))
    wait_events(env, list(claims.values()), {"WaitForFirstConsumer"}, "every claim to report WaitForFirstConsumer")
    # The events are read from the API, the claims' history from the watch, which may lag.
    waiting = env.wait_for(lambda: (all((states := {name: claim_states(env, name) for name in claims.values()})
                                        .values()), states),
                           what="the watch to see every claim", timeout=30)
    assert all(states and all(p == "Pending" for p, _, _ in states) for states in waiting.values()), waiting

    for n, (zone, name) in enumerate(claims.items()):
        cluster.core.create_namespaced_pod(env.namespace, data.for_cluster(cluster, pod_with_claims(
            f"app-{n}", [name], {labels.ZONE: zone})))

    def all_bound():
        states = {name: claim_states(env, name) for name in claims.values()}
        # Judged after the watch was read, so a claim it saw bound is bound in the verdict.
        env.raise_lasting()  # e.g. a disk made outside its selected node's zone
        return all(any(p == "Bound" for p, _, _ in s) for s in states.values()), states
    histories = env.wait_for(all_bound, what=f"the watch to see {len(claims)} claims bound", timeout=90)
    for n, (zone, name) in enumerate(claims.items()):
        history = histories[name]
        first_selected = next(i for i, (_, node, _) in enumerate(history) if node)
        first_bound = next(i for i, (phase, _, _) in enumerate(history) if phase == "Bound")
        assert first_selected < first_bound, f"{name} bound before a consumer was scheduled: {history}"
        selected = history[first_bound][1]
        assert node_zone(cluster, selected) == zone, f"{name} was provisioned for {selected}, outside {zone}"
        assert selected == scheduled_node(env, f"app-{n}")

    # The oracle checks each disk against the zone of its claim's selected node.
    verdict = env.wait_for(lambda: (settled(v := env.verdict(), len(zones))[0], v),
                           what=f"{len(zones)} consumers running with their disks attached", timeout=60)
    record_verdict(verdict)
    assert verdict.ok, "\n".join(verdict.violations)
    placed = {p.pod: [v.disk_zone for v in p.volumes] for p in verdict.pods}
    assert placed == {f"app-{n}": [zone] for n, zone in enumerate(zones)}, verdict.table()

    made = {d["DiskId"] for d in disks_created_for(env.cloud, env.namespace)}
    assert len(made) == len(zones), f"expected {len(zones)} disks for the claims, found {sorted(made)}"
    remove_workload(cluster.api_client, env.namespace, wake=env.watcher)
    left = [f"{d['DiskId']} ({d['Status']})" for d in disks_created_for(env.cloud, env.namespace)]
    assert not left, f"the claims and their PVs are gone, but their disks are still in the cloud: {left}"


def test_several_claims_of_one_pod_land_in_one_zone(placement, cluster, seed):
    env = placement("topology")
    sc = wffc_class(env)
    names = [f"data-{n}" for n in range(3)]
    for name in names:
        cluster.core.create_namespaced_persistent_volume_claim(env.namespace, claim(name, sc, env.profile.size))
    cluster.core.create_namespaced_pod(env.namespace, data.for_cluster(cluster, pod_with_claims("app", names)))

    def bound():
        claims = cluster.core.list_namespaced_persistent_volume_claim(env.namespace).items
        return all(c.status.phase == "Bound" for c in claims), {c.metadata.name: c.status.phase for c in claims}

    env.wait_for(bound, what="every claim of the pod to bind", timeout=90)
    zone = node_zone(cluster, scheduled_node(env, "app"))
    verdict = env.wait_for(lambda: (settled(v := env.verdict(), 1)[0], v),
                           what="the pod running with every claim attached where it runs", timeout=60)
    record_verdict(verdict)
    assert [vol.disk_zone for p in verdict.pods for vol in p.volumes] == [zone] * len(names), verdict.table()


def test_a_zoneid_without_the_consumers_zone_fails_provisioning(placement, cluster, seed):
    """CSI: a created volume must be accessible from at least one requisite topology. A
    consumer pinned to a zone the StorageClass's zoneId leaves out cannot get a disk: the
    claim must stay unbound with a provisioning failure, and no disk be made elsewhere."""
    if len(cluster.spec.zones) < 2:
        pytest.skip(f"needs 2 zones; the cluster under test has {len(cluster.spec.zones)}")
    env = placement("topology")
    consumer_zone = random.Random(f"{seed}-conflict").choice(list(cluster.spec.zones))
    others = [z for z in cluster.spec.zones if z != consumer_zone]
    sc = wffc_class(env, others)
    cluster.core.create_namespaced_persistent_volume_claim(env.namespace, claim("data", sc, env.profile.size))
    cluster.core.create_namespaced_pod(env.namespace, data.for_cluster(cluster, pod_with_claims(
        "app", ["data"], {labels.ZONE: consumer_zone})))
    outcome = wait_events(env, ["data"], {"ProvisioningFailed", "ProvisioningSucceeded"},
                          "the provisioner's first answer for the claim")["data"]
    made = [f"{d['DiskId']} in {d['ZoneId']}" for d in disks_created_for(env.cloud, env.namespace)]
    assert not made, (f"CSI CreateVolume: a volume must be accessible from a requisite topology. The consumer runs "
                      f"in {consumer_zone}, zoneId allows {', '.join(others)}: no disk may be made, but {made} was "
                      f"({outcome})")
    assert outcome.startswith("ProvisioningFailed"), outcome
    phase = cluster.core.read_namespaced_persistent_volume_claim("data", env.namespace).status.phase
    assert phase == "Pending", f"claim data is {phase} without a disk"


@pytest.mark.serial  # the fault hits the next CreateDisk of whoever shares the fake ECS
def test_a_create_retried_after_throttling_stays_in_the_consumers_zone(placement, cluster, seed):
    """ECS answers the first CreateDisk with Throttling; the retry must still make the disk
    in the zone of the consumer's node."""
    env = placement("topology")
    if env.cloud.admin is None:
        pytest.skip("needs the fake ECS's fault injection (the cloud under test is not the fake)")
    zone = random.Random(f"{seed}-throttled").choice(list(cluster.spec.zones))
    sc = wffc_class(env)
    fault = env.cloud.admin.add_fault("fail_next", action="CreateDisk", count=1, code="Throttling")
    try:
        cluster.core.create_namespaced_persistent_volume_claim(env.namespace, claim("data", sc, env.profile.size))
        cluster.core.create_namespaced_pod(env.namespace, data.for_cluster(cluster, pod_with_claims(
            "app", ["data"], {labels.ZONE: zone})))
        wait_events(env, ["data"], {"ProvisioningSucceeded"}, "the claim to be provisioned", timeout=90)
    finally:
        if any(f["id"] == fault["id"] for f in env.cloud.admin.faults()):  # not spent: no CreateDisk came
            env.cloud.admin.remove_fault(fault["id"])
    throttled = [e for e in env.cloud.admin.audit() if e["action"] == "CreateDisk" and e.get("code") == "Throttling"]
    assert throttled, "no CreateDisk was answered Throttling, so no retry was tested"
    zones = [d["ZoneId"] for d in disks_created_for(env.cloud, env.namespace)]
    assert zones == [zone], f"the consumer runs in {zone}; the claim's disks are in {zones}"


NO_STOCK_RULE = ("CSI CreateVolume: a volume that cannot be made in the requisite topology for want of capacity "
                 "is RESOURCE_EXHAUSTED, on which csi-provisioner hands a WaitForFirstConsumer claim back to the "
                 "scheduler")


def set_unschedulable(cluster, nodes: list[str], value: bool) -> None:
    for node in nodes:
        cluster.core.patch_node(node, {"spec": {"unschedulable": value}})


@pytest.mark.serial  # it cordons nodes and stocks out a zone of the shared fake ECS
def test_a_claim_without_stock_in_its_zone_is_rescheduled(placement, cluster, seed):
    """CSI: a volume that cannot be made in the requisite topology answers
    RESOURCE_EXHAUSTED, on which csi-provisioner hands a WaitForFirstConsumer claim back to
    the scheduler. The consumer may run in two zones; the scheduler's first choice has no
    stock. Once capacity moves to the other zone (its nodes opened, the first zone's
    cordoned), the claim must be rescheduled there and the pod run with its disk."""
    if len(cluster.spec.zones) < 2:
        pytest.skip(f"needs 2 zones; the cluster under test has {len(cluster.spec.zones)}")
    env = placement("topology")
    if env.cloud.admin is None:
        pytest.skip("needs the fake ECS's fault injection (the cloud under test is not the fake)")
    empty, stocked = random.Random(f"{seed}-no-stock").sample(list(cluster.spec.zones), 2)
    nodes = {zone: [n.metadata.name for n in cluster.core.list_node(label_selector=f"{labels.ZONE}={zone}").items]
             for zone in (empty, stocked)}
    sc = wffc_class(env)
    fault = env.cloud.admin.add_fault("no_stock", zone=empty)
    set_unschedulable(cluster, nodes[stocked], True)  # the scheduler's first choice: the zone without stock
    try:
        pod = pod_with_claims("app", ["data"])
        pod["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": labels.ZONE, "operator": "In",
                                                         "values": [empty, stocked]}]}]}}}
        cluster.core.create_namespaced_persistent_volume_claim(env.namespace, claim("data", sc, env.profile.size))
        cluster.core.create_namespaced_pod(env.namespace, data.for_cluster(cluster, pod))
        failed = wait_events(env, ["data"], {"ProvisioningFailed"}, f"the first answer of no stock in {empty}")
        code = re.search(r"code = (\w+)", failed["data"])
        if code and code.group(1) != "ResourceExhausted":  # csi-provisioner retries the same node for ever
            raise AssertionError(f"{NO_STOCK_RULE}; the driver answered {code.group(1)}: {failed['data']}")
        set_unschedulable(cluster, nodes[stocked], False)
        set_unschedulable(cluster, nodes[empty], True)

        def rescheduled():
            verdict = env.verdict()
            selected = (cluster.core.read_namespaced_persistent_volume_claim("data", env.namespace)
                        .metadata.annotations or {}).get(SELECTED_NODE, "")
            done, off = settled(verdict, 1)
            return done, verdict if done else f"{off}; claim selected for {selected or 'no node'}"
        try:
            verdict = env.wait_for(rescheduled, what=f"the claim rescheduled to {stocked} and its pod running",
                                   timeout=90)
        except WaitTimeout as err:
            raise AssertionError(f"{NO_STOCK_RULE}; after {failed['data']}, the claim was not handed back to the "
                                 f"scheduler: {err}") from None
    finally:
        set_unschedulable(cluster, nodes[stocked] + nodes[empty], False)
        env.cloud.admin.remove_fault(fault["id"])
    record_verdict(verdict)
    assert verdict.ok, "\n".join(verdict.violations)
    assert [v.disk_zone for p in verdict.pods for v in p.volumes] == [stocked], verdict.table()
