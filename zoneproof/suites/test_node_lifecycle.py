"""Node lifecycle: a node whose instance is stopped and released while its pods' disks are
attached, and whose Node object is then deleted (as a cloud's node controller deletes the
Node of an instance that is gone). Its VolumeAttachments must go, the driver must let the
disks go although the instance no longer exists, and its pods must come back in their
disks' zone, with their data.

The case deletes a node of the shared cluster, so it is ``disruptive`` (run alone), and
makes it again afterwards, whatever happened; a provider that cannot make a deleted node
again (an existing cluster: zoneproof never deletes a user's node) skips it, saying so."""

from __future__ import annotations

import logging
import random

import pytest
from kubernetes import client

from zoneproof import labels
from zoneproof.suites.capabilities import require_scheme
from zoneproof.suites.test_placement import deploy, wait_placed, wait_running

log = logging.getLogger(__name__)

pytestmark = pytest.mark.disruptive

# The attach-detach controller waits this long before it detaches a volume the node still
# reported mounted when it went (maxWaitForUnmountDuration, not a flag upstream): a node
# with a kubelet reported its volumes in use; a kwok node reports none.
FORCE_DETACH_AFTER = 360


def attachments_to(cluster, node: str) -> list[str]:
    return sorted(va.metadata.name for va in client.StorageV1Api(cluster.api_client).list_volume_attachment().items
                  if va.spec.node_name == node)


def test_a_deleted_node_lets_its_disks_go_and_its_pods_return_to_their_zones(placement, cluster, profile, seed):
    if not cluster.recreates_nodes:
        pytest.skip(f"the {type(cluster).__name__} cannot make a deleted node again, so this case would leave "
                    "the cluster a node short")
    require_scheme(profile, "wait-for-first-consumer")
    zones = sorted(cluster.spec.zones)
    if cluster.spec.nodes_per_zone < 2:
        pytest.skip(f"needs 2 nodes per zone (a zone keeps a node when one goes); the cluster has "
                    f"{cluster.spec.nodes_per_zone}")
    env = placement("topology")
    replicas = 2 * len(zones)  # pods beside the node that goes, in its zone and the others
    deploy(env, "wait-for-first-consumer", zones, replicas, random.Random(f"{seed}-node-deleted"))
    before = wait_running(env, replicas)
    wait_placed(env, replicas)
    env.check_data(replicas)

    pods = {p.metadata.name: p for p in cluster.core.list_namespaced_pod(env.namespace).items}
    victim = pods[sorted(pods)[0]].spec.node_name
    on_victim = {p.metadata.uid: name for name, p in pods.items() if p.spec.node_name == victim}
    victim_labels = cluster.core.read_node(victim).metadata.labels
    instance, victim_zone = victim_labels[labels.INSTANCE_ID], victim_labels[labels.ZONE]
    log.info("releasing %s (%s) with %s on it, then deleting its Node", victim, instance,
             ", ".join(sorted(on_victim.values())))
    try:
        env.cloud.stop_instances([instance])
        env.cloud.release_instance(instance)
        cluster.core.delete_node(victim)

        # PodGC deletes the pods of a node that is gone (after 40 s); the StatefulSet makes
        # them again, and their disks attach once detached from the gone node.
        timeout = 120 + (FORCE_DETACH_AFTER if cluster.runs_kubelets else 0)
        after = wait_running(env, replicas, not_uids=set(on_victim), timeout=timeout)
        wait_placed(env, replicas)
        assert after == before, f"zones changed after node {victim} was deleted: {before} -> {after}"
        env.wait_for(lambda: (not (left := attachments_to(cluster, victim)), left),
                     what=f"the VolumeAttachments of deleted node {victim} to go", timeout=60)
        env.check_data(replicas)
    finally:
        # Whatever happened: the instance and the node back, registered as before.
        if env.cloud.admin is not None and not env.cloud.describe_instances([instance]):
            env.cloud.admin.register_instance(instance, victim_zone)
        if victim not in cluster.nodes():
            cluster.recreate_node(victim)
            env.driver.register_node(victim)
