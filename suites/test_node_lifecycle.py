"""Node lifecycle: a node whose instance is stopped and released, and whose Node object is
then deleted (as a cloud's node controller deletes the Node of an instance that is gone).

- While its pods' disks are attached: its VolumeAttachments must go, the driver must let
  the disks go although the instance no longer exists, and its pods must come back in
  their disks' zone, with their data.
- While a WaitForFirstConsumer claim is being provisioned for it: the pod must run on a
  node that exists, in its disk's zone, with no disk left over.
- Then made again under its name as another machine in another zone: the node must name
  only its new zone, and a new claim of a pod on it get its disk there.

And a node whose driver's node plugin restarts (a crash, an upgrade): registered again, the
node must name the zone it named before, its pods keep running with their data, and a new
claim of a pod on it gets its disk in its zone.

Each case deletes a node of the shared cluster (or restarts its node plugin), so it is
``disruptive`` (run alone), and makes it again afterwards, whatever happened; a provider
that cannot make a deleted node again (an existing cluster: zoneproof never deletes a
user's node, nor restarts a driver it did not deploy) skips it, saying so."""

from __future__ import annotations

import logging
import random
from contextlib import contextmanager

import pytest
from kubernetes import client

from zoneproof import labels, manifests, workloads
from zoneproof.cluster.nodes import instance_id, instance_of
from zoneproof.deploy.registrar import csinode_drivers
from zoneproof.oracle import SELECTED_NODE
from zoneproof.suites.capabilities import require_scheme
from zoneproof.suites.steps import attachments_to, deploy, wait_events, wait_placed, wait_running, wffc_class
from zoneproof.workloads import disks_created_for

log = logging.getLogger(__name__)

pytestmark = pytest.mark.disruptive

# The attach-detach controller waits this long before it detaches a volume the node still
# reported mounted when it went (maxWaitForUnmountDuration, not a flag upstream): a node
# with a kubelet reported its volumes in use; a kwok node reports none.
FORCE_DETACH_AFTER = 360


def after_node_gone(cluster) -> float:
    """Seconds the pods of a deleted node may take to run elsewhere: PodGC deletes them
    (after 40 s), and their disks attach once detached from the gone node, which a node
    with a kubelet holds until the attach-detach controller force-detaches."""
    return 120 + (FORCE_DETACH_AFTER if cluster.capabilities.runs_kubelets else 0)


def require_recreatable_nodes(cluster) -> None:
    if not cluster.capabilities.recreates_nodes:
        pytest.skip(f"the {type(cluster).__name__} cannot make a deleted node again, so this case would leave "
                    "the cluster a node short")
    if cluster.spec.nodes_per_zone < 2:
        pytest.skip(f"needs 2 nodes per zone (a zone keeps a node when one goes); the cluster has "
                    f"{cluster.spec.nodes_per_zone}")


@contextmanager
def node_gone(env, node: str):
    """The node's instance stopped and released, then its Node deleted; on the way out,
    whatever happened, the instance and the node back, registered as before."""
    gone = env.cluster.core.read_node(node)
    instance, zone = instance_of(gone), gone.metadata.labels[labels.ZONE]
    try:
        env.cloud.stop_instances([instance])
        env.cloud.release_instance(instance)
        env.cluster.core.delete_node(node)
        yield
    finally:
        if env.cloud.admin is not None and not env.cloud.describe_instances([instance]):
            env.cloud.admin.register_instance(instance, zone)
        if node not in env.cluster.nodes():
            env.cluster.recreate_node(node)
            env.driver.register_node(node)


@contextmanager
def made_again_elsewhere(env, node: str, zone: str, instance: str):
    """The deleted node made again under its name as instance ``instance`` in ``zone``, and
    the driver registered on it again; on the way out, whatever happened, that machine
    gone again (its pods, its instance, its Node), for node_gone to bring the old one back."""
    core = env.cluster.core
    env.cloud.admin.register_instance(instance, zone)
    try:
        env.cluster.recreate_node(node, zone=zone, instance_id=instance)
        env.driver.register_node(node)
        yield
    finally:
        try:  # its disks detached while the machine still exists, as a drained node lets them go
            for pod in core.list_namespaced_pod(env.namespace).items:
                if pod.spec.node_name == node:
                    core.delete_namespaced_pod(pod.metadata.name, env.namespace, grace_period_seconds=0)
            env.wait_for(lambda: (not (left := [va.metadata.name for va in attachments_to(env, node)]), left),
                         what=f"the VolumeAttachments to {node} as {instance} to go", timeout=60)
        finally:  # whatever happened: the machine gone, so that node_gone brings the old one back
            if node in env.cluster.nodes():
                env.cloud.stop_instances([instance])
                core.delete_node(node)
                env.cloud.release_instance(instance)
            else:  # never got a Node of its own
                env.cloud.admin.deregister_instance(instance)


def spread_with_a_victim(env, rng: random.Random) -> tuple[int, dict[str, str], str, dict[str, str]]:
    """Two WaitForFirstConsumer replicas per zone, running in place with their data; then
    the node of web-0 chosen to go. Returns the replica count, pod -> zone, that node, and
    uid -> name of the pods on it."""
    zones = sorted(env.cluster.spec.zones)
    replicas = 2 * len(zones)  # pods beside the node that goes, in its zone and the others
    deploy(env, "wait-for-first-consumer", zones, replicas, rng)
    before = wait_running(env, replicas)
    wait_placed(env, replicas)
    env.check_data(replicas)
    pods = {p.metadata.name: p for p in env.cluster.core.list_namespaced_pod(env.namespace).items}
    victim = pods[sorted(pods)[0]].spec.node_name
    return replicas, before, victim, {p.metadata.uid: name for name, p in pods.items() if p.spec.node_name == victim}


def zones_named(env, node: str) -> dict[str, str]:
    """The zone a node names under each zone key it carries."""
    node_labels = env.cluster.core.read_node(node).metadata.labels
    return {key: node_labels[key] for key in labels.NODE_ZONE_KEYS if key in node_labels}


def node_id_named(env, node: str) -> str:
    """The id the driver's node plugin gave the node, as registered in its CSINode ("" if none)."""
    entries = [d for d in csinode_drivers(env.cluster.api_client, node) or [] if d["name"] == env.profile.driver]
    return entries[0]["nodeID"] if entries else ""


def run_a_new_claim_on(env, node: str, name: str, replicas: int) -> dict[str, str]:
    """A pod pinned to ``node`` with a new WaitForFirstConsumer claim of its own (both
    named ``name``), run and placed beside the ``replicas`` pods already running; pod -> zone."""
    core = env.cluster.core
    core.create_namespaced_persistent_volume_claim(env.namespace, workloads.claim(name, wffc_class(env),
                                                                                  env.profile.size))
    core.create_namespaced_pod(env.namespace, env.runnable(workloads.pod_with_claims(name, [name],
                                                                                     {labels.HOSTNAME: node})))
    running = wait_running(env, replicas + 1)
    wait_placed(env, replicas + 1)
    return running


def test_a_deleted_node_lets_its_disks_go_and_its_pods_return_to_their_zones(placement, cluster, profile, seed):
    require_recreatable_nodes(cluster)
    require_scheme(profile, "wait-for-first-consumer")
    env = placement("topology")
    replicas, before, victim, on_victim = spread_with_a_victim(env, random.Random(f"{seed}-node-deleted"))
    log.info("releasing %s with %s on it, then deleting its Node", victim, ", ".join(sorted(on_victim.values())))
    with node_gone(env, victim):
        after = wait_running(env, replicas, not_uids=set(on_victim), timeout=after_node_gone(cluster))
        wait_placed(env, replicas)
        assert after == before, f"zones changed after node {victim} was deleted: {before} -> {after}"
        env.wait_for(lambda: (not (left := [va.metadata.name for va in attachments_to(env, victim)]), left),
                     what=f"the VolumeAttachments of deleted node {victim} to go", timeout=60)
        env.check_data(replicas)


def selected_node(env, claim_name: str) -> str:
    pvc = env.cluster.core.read_namespaced_persistent_volume_claim(claim_name, env.namespace)
    return (pvc.metadata.annotations or {}).get(SELECTED_NODE, "")


def test_a_claim_provisioning_for_a_deleted_node_ends_with_one_disk_where_its_pod_runs(placement, cluster, profile,
                                                                                      seed):
    """A WaitForFirstConsumer claim's disk is made in its selected node's zone, the answer is
    lost and the cloud stays out of the controller's reach for that claim; meanwhile the node
    goes. The call may have made the disk, so the driver's error must say "may still be in
    progress": the provisioner then keeps the claim in that zone and, once the cloud is back,
    ends with that one disk, the pod on another node of the zone. A driver that answers a
    final error lets the claim go to a node of another zone (the pod prefers one), where the
    disk made for it is refused; one that retries without idempotency makes a second disk."""
    require_recreatable_nodes(cluster)
    env = placement("topology")
    if env.cloud.admin is None:
        pytest.skip("needs the fake ECS's fault injection, to lose the claim's CreateDisk answer while its node goes")
    storage_class = wffc_class(env)
    # A node the pod can run on: one with a machine in ECS (kind's control plane has none, and a taint).
    workers = sorted(n.metadata.name for n in cluster.core.list_node().items if instance_of(n, required=False))
    victim = random.Random(f"{seed}-selected-node-deleted").choice(workers)
    zone = cluster.core.read_node(victim).metadata.labels[labels.ZONE]
    sts = manifests.statefulset(1, storage_class, profile.size)
    # The victim first, as long as it exists; then any node outside its zone.
    sts["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [
            {"key": labels.HOSTNAME, "operator": "In", "values": [victim]}]}},
        {"weight": 10, "preference": {"matchExpressions": [
            {"key": labels.ZONE, "operator": "NotIn", "values": [zone]}]}}]}}
    # The claim made ahead of the StatefulSet (which adopts it by name), for its uid: the
    # volume's name, and so every call of the driver's about it, carries that uid.
    claim_name = f"{sts['spec']['volumeClaimTemplates'][0]['metadata']['name']}-{sts['metadata']['name']}-0"
    body = workloads.claim(claim_name, storage_class, profile.size)
    body["metadata"]["labels"] = sts["spec"]["selector"]["matchLabels"]
    claim = cluster.core.create_namespaced_persistent_volume_claim(env.namespace, body)
    cut = env.cloud.admin.add_fault("cut_after", action="CreateDisk", match=claim.metadata.uid)
    try:
        cluster.core.create_namespaced_service(env.namespace, manifests.service())
        client.AppsV1Api(cluster.api_client).create_namespaced_stateful_set(env.namespace, env.runnable(sts))
        failure = wait_events(env, [claim_name], {"ProvisioningFailed"},
                              f"a CreateVolume for claim {claim_name} to fail")
        assert selected_node(env, claim_name) == victim, (f"claim {claim_name} was selected for "
                                                          f"{selected_node(env, claim_name)!r}, not the preferred "
                                                          f"{victim}: {failure}")
        made = [(d["DiskId"], d["ZoneId"]) for d in disks_created_for(env.cloud, env.namespace)]
        assert [z for _, z in made] == [zone], (f"claim {claim_name}, selected for {victim} in {zone}: its first "
                                                f"CreateDisk, whose answer was lost, made {made}; expected one disk "
                                                f"in {zone} ({failure[claim_name]})")
        log.info("claim %s: disk %s made in %s, the answer lost (%s); deleting node %s", claim_name, made[0][0], zone,
                 failure[claim_name], victim)
        with node_gone(env, victim):
            env.cloud.admin.remove_fault(cut["id"])
            cut = None
            wait_running(env, 1, timeout=240)
            wait_placed(env, 1)
            pod = cluster.core.list_namespaced_pod(env.namespace).items[0]
            assert pod.spec.node_name in cluster.nodes(), f"pod {pod.metadata.name} runs on {pod.spec.node_name}, " \
                                                          "which does not exist"
            pod_zone = cluster.core.read_node(pod.spec.node_name).metadata.labels[labels.ZONE]
            now = [(d["DiskId"], d["ZoneId"]) for d in disks_created_for(env.cloud, env.namespace)]
            assert now == made and pod_zone == zone, (
                f"claim {claim_name}, whose disk {made[0][0]} was made in {zone}: its pod runs on "
                f"{pod.spec.node_name} in {pod_zone}, and the claim has disks {now}; expected the one disk, the pod "
                f"in {zone}")
            log.info("claim %s bound to the disk of its lost answer, pod on %s", claim_name, pod.spec.node_name)
    finally:
        if cut is not None:
            env.cloud.admin.remove_fault(cut["id"])


def test_a_cut_off_node_keeps_its_disks_until_it_is_declared_out_of_service(placement, cluster, profile, seed):
    """A node's kubelet is cut off while its instance keeps running: nothing may detach its
    disks while it is only unreachable (its pods may still be writing to them); once it is
    declared out of service, its pods move to the other node of their zone, with their data."""
    if not cluster.capabilities.partitions_nodes:
        pytest.skip(f"the {type(cluster).__name__} cannot cut a node's kubelet off while its machine runs")
    if cluster.spec.nodes_per_zone < 2:
        pytest.skip(f"needs 2 nodes per zone (a zone keeps a node when one is cut off); the cluster has "
                    f"{cluster.spec.nodes_per_zone}")
    require_scheme(profile, "wait-for-first-consumer")
    env = placement("topology")
    replicas, before, victim, on_victim = spread_with_a_victim(env, random.Random(f"{seed}-node-cut-off"))
    instance = instance_of(cluster.core.read_node(victim))
    held = env.cloud.disks_held(instance)
    assert held, f"node {victim} runs {', '.join(on_victim.values())} but its instance {instance} holds no disk"
    log.info("cutting %s off, its instance %s running with %s", victim, instance, ", ".join(held))
    try:
        cluster.partition_node(victim)
        cluster.wait_nodes_ready([victim], ready=False, timeout=cluster.spec.timings.not_ready_bound + 30)

        def tainted():
            taints = cluster.core.read_node(victim).spec.taints or []
            return any(t.key == labels.TAINT_UNREACHABLE for t in taints), [t.key for t in taints]
        env.wait_for(tainted, what=f"node {victim} to be tainted unreachable", timeout=60)
        still = env.cloud.disks_held(instance)
        assert still == held, (f"disks of cut-off node {victim} detached before it was declared out of service: "
                               f"held {held}, now {still}")
        assert attachments_to(env, victim), f"the VolumeAttachments to cut-off node {victim} went before it " \
                                                "was declared out of service"
        cluster.set_out_of_service(victim)
        after = wait_running(env, replicas, not_uids=set(on_victim), timeout=180)
        wait_placed(env, replicas)
        assert after == before, f"zones changed after node {victim} was declared out of service: {before} -> {after}"
        env.check_data(replicas)
    finally:
        cluster.set_out_of_service(victim, on=False)
        cluster.heal_node(victim)
        cluster.wait_nodes_ready([victim], timeout=180)


def test_a_node_made_again_in_another_zone_names_only_its_new_zone(placement, cluster, profile, seed):
    """A node's machine goes and another, in another zone, joins under the same name (node
    pools that reuse names). Registered again, the node must name its new machine's zone,
    as ECS does, under every zone key it carries, never its old one; the pods of the old
    machine stay in their disks' zone; a new claim of a pod on it gets its disk there."""
    require_recreatable_nodes(cluster)
    if not cluster.capabilities.rezones_nodes:
        pytest.skip(f"the {type(cluster).__name__} makes a deleted node again only as it was, not in another zone")
    require_scheme(profile, "wait-for-first-consumer")
    env = placement("topology", watch_nodes=True)  # the node's zone changes under its name
    if env.cloud.admin is None:
        pytest.skip("needs the fake ECS, to give the node's new machine an instance in another zone")
    rng = random.Random(f"{seed}-node-made-again-elsewhere")
    replicas, before, victim, on_victim = spread_with_a_victim(env, rng)
    old_zone = cluster.core.read_node(victim).metadata.labels[labels.ZONE]
    new_zone = rng.choice(sorted(z for z in cluster.spec.zones if z != old_zone))
    new_instance = instance_id(cluster.spec.name, cluster.spec.region, f"{victim}@{new_zone}")
    with node_gone(env, victim):
        after = wait_running(env, replicas, not_uids=set(on_victim), timeout=after_node_gone(cluster))
        wait_placed(env, replicas)
        assert after == before, f"zones changed after node {victim} was deleted: {before} -> {after}"
        log.info("making %s again as %s in %s (it was in %s)", victim, new_instance, new_zone, old_zone)
        with made_again_elsewhere(env, victim, new_zone, new_instance):
            named = zones_named(env, victim)
            assert named and set(named.values()) == {new_zone}, (
                f"node {victim}, made again as {new_instance} in {new_zone} (in ECS), its old machine in {old_zone}, "
                f"names {named}")
            running = run_a_new_claim_on(env, victim, "made-again", replicas)
            assert running["made-again"] == new_zone, (f"a pod on {victim}, made again in {new_zone}, runs in "
                                                       f"{running['made-again']}")
            assert {pod: zone for pod, zone in running.items() if pod != "made-again"} == before, (
                f"the pods of {victim}'s old machine left their zones when it was made again in {new_zone}: "
                f"{before} -> {running}")


def test_a_restarted_node_plugin_names_the_same_zone_and_its_pods_keep_their_disks(placement, cluster, profile, seed):
    """The driver's node plugin on one node stops and starts again (a crash, an upgrade),
    and the node registers it again: the node must name the zone it named before, under
    every zone key, which is its instance's in ECS; its pods keep running where they ran,
    their data in place; and a new claim of a pod on it gets its disk in that zone."""
    require_scheme(profile, "wait-for-first-consumer")
    env = placement("topology")
    if not env.driver.runs_node_plugin:
        pytest.skip(f"the nodes are not served by a node plugin zoneproof runs (profile {profile.name!r} on the "
                    f"{type(cluster).__name__}), so there is none to restart")
    replicas, before, victim, on_victim = spread_with_a_victim(env, random.Random(f"{seed}-node-plugin-restart"))
    node = cluster.core.read_node(victim)
    instance = instance_of(node)
    zone = env.cloud.describe_instances([instance])[0]["ZoneId"]
    named_before, id_before = zones_named(env, victim), node_id_named(env, victim)
    assert id_before, f"node {victim} has no node id of {env.profile.driver} in its CSINode before the restart"
    uids = {p.metadata.uid for p in cluster.core.list_namespaced_pod(env.namespace).items}
    log.info("restarting the node plugin on %s (instance %s in %s), which runs %s", victim, instance, zone,
             ", ".join(sorted(on_victim.values())))
    env.driver.restart_node_plugin(victim)
    named = zones_named(env, victim)
    assert named == named_before and set(named.values()) == {zone}, (
        f"node {victim}, its instance {instance} in {zone} (in ECS), named {named_before} before its node plugin "
        f"restarted and {named} after")
    # Disks are attached under the node's id: a new one strands them and misdirects new attaches.
    id_after = node_id_named(env, victim)
    assert id_after == id_before, (f"node {victim}'s id for {env.profile.driver} was {id_before!r} before its node "
                                   f"plugin restarted and {id_after!r} after")
    running = run_a_new_claim_on(env, victim, "after-restart", replicas)
    assert running["after-restart"] == zone, f"a pod on {victim} in {zone} runs in {running['after-restart']}"
    assert {pod: z for pod, z in running.items() if pod != "after-restart"} == before, (
        f"pods left their zones when the node plugin on {victim} restarted: {before} -> {running}")
    restarted = {p.metadata.name for p in cluster.core.list_namespaced_pod(env.namespace).items
                 if p.metadata.name != "after-restart" and p.metadata.uid not in uids}
    assert not restarted, f"pods were made again when the node plugin on {victim} restarted: {sorted(restarted)}"
    env.check_data(replicas + 1)  # the old pods' data as it was, and the new pod's
