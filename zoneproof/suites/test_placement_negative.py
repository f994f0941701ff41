"""What must not happen: a pod forced away from its disk's zone never runs or attaches
there, and a StorageClass restricted to one zone provisions nowhere else."""

from __future__ import annotations

import random

import pytest
from kubernetes import client

from zoneproof import data, labels, manifests
from zoneproof.oracle import is_volume_zone_conflict
from zoneproof.suites.capabilities import require_scheme
from zoneproof.waiting import hold_for
from zoneproof.workloads import claim, pod_with_claims


@pytest.mark.parametrize("style", manifests.STATIC_STYLES)
def test_a_pod_forced_into_another_zone_than_its_pv_waits_with_the_conflict(placement, cluster, seed, style):
    """Both ways a static PV states its zone pin its pod: nodeAffinity (the scheduler's
    VolumeBinding) and zone labels (its VolumeZone plugin)."""
    env = placement("topology")
    rng = random.Random(f"{seed}-forced")
    disk_zone, other = rng.sample(list(cluster.spec.zones), 2)
    disk_id = env.static_disk(disk_zone, f"{env.namespace}-forced")
    pair = manifests.static_pair(0, disk_zone, cluster.spec.region, disk_id, env.profile, style,
                                 size=env.profile.size, pv_prefix=f"{env.suffix}-")
    env.create_static_pvs([pair.pv])
    cluster.core.create_namespaced_persistent_volume_claim(env.namespace, pair.pvc)
    claim_name = pair.pvc["metadata"]["name"]
    cluster.core.create_namespaced_pod(env.namespace, data.for_cluster(cluster, pod_with_claims(
        "forced", [claim_name], {labels.ZONE: other})))

    def conflicted():
        pod = cluster.core.read_namespaced_pod("forced", env.namespace)
        assert not pod.spec.node_name, (f"the pod was scheduled on {pod.spec.node_name} in {other}, though its PV "
                                        f"states zone {disk_zone} ({style})")
        messages = [c.message or "" for c in pod.status.conditions or [] if c.type == "PodScheduled"]
        return any(is_volume_zone_conflict(m) for m in messages) and not pod.spec.node_name, messages

    env.wait_for(conflicted, what="the volume zone conflict", timeout=60)

    def still_unplaced():
        ok, messages = conflicted()
        disk = env.cloud.describe_disks([disk_id])[0]
        attached = [a["InstanceId"] for a in disk["Attachments"]["Attachment"]]
        return ok and not attached, f"conditions {messages}, attached to {attached}"

    hold_for(still_unplaced, what="the pod staying Pending with no attachment", duration=10, interval=1)
    # The fake ECS logs refused calls too; a real cloud's refusals show in the watcher's
    # Kubernetes history (the VolumeAttachment) instead.
    if env.cloud.admin:
        refused = [e for e in env.cloud.admin.audit() if e["action"] == "AttachDisk" and e["disk_id"] == disk_id]
        assert not refused, f"attach attempts for a pod that must not run: {refused}"
    attachments = [va.metadata.name for va in client.StorageV1Api(cluster.api_client).list_volume_attachment().items
                   if va.spec.source.persistent_volume_name == pair.pv["metadata"]["name"]]
    assert not attachments, f"VolumeAttachments for a pod that must not run: {attachments}"


def test_allowed_topologies_restricted_to_one_zone_only_provision_there(placement, cluster, seed):
    env = placement("topology")
    env.watched_kinds = ("PersistentVolumeClaim", "PersistentVolume")  # claims only, no pod
    require_scheme(env.profile, "wait-for-first-consumer")
    zone = random.Random(f"{seed}-allowed").choice(list(cluster.spec.zones))
    name = f"csi-disk-{zone}-{env.suffix}"
    # The profile's WaitForFirstConsumer parameters, bound at once: only allowedTopologies
    # can keep the disks in one zone.
    client.StorageV1Api(cluster.api_client).create_storage_class(env.profile.storage_class(
        "wait-for-first-consumer", name, cluster.spec.zones, binding="Immediate", allowed_zones=(zone,)))
    env.storage_classes.append(name)
    for n in range(3):
        cluster.core.create_namespaced_persistent_volume_claim(env.namespace, claim(f"data-{n}", name,
                                                                                    env.profile.size))

    def all_bound():
        claims = cluster.core.list_namespaced_persistent_volume_claim(env.namespace).items
        return all(c.status.phase == "Bound" for c in claims), [c.status.phase for c in claims]

    env.wait_for(all_bound, what="three claims to bind", timeout=60)
    volumes = [c.spec.volume_name for c in cluster.core.list_namespaced_persistent_volume_claim(env.namespace).items]
    handles = [cluster.core.read_persistent_volume(v).spec.csi.volume_handle for v in volumes]
    disks = env.cloud.describe_disks(handles)
    assert len(disks) == 3, f"three claims bound, but ECS knows {len(disks)} of their disks {handles}"
    assert {d["ZoneId"] for d in disks} == {zone}, {d["DiskId"]: d["ZoneId"] for d in disks}
