"""What must not happen: a pod forced away from its disk's zone never runs or attaches
there, and a StorageClass restricted to one zone provisions nowhere else."""

from __future__ import annotations

import random

import pytest
from kubernetes import client

from zoneproof import labels, manifests
from zoneproof.oracle import is_volume_zone_conflict
from zoneproof.waiting import hold_for, wait_for
from zoneproof.workloads import claim, pod_with_claims, storage_class


def test_a_pod_forced_into_another_zone_than_its_pv_waits_with_the_conflict(placement, cluster, seed):
    env = placement("topology")
    rng = random.Random(f"{seed}-forced")
    disk_zone, other = rng.sample(list(cluster.spec.zones), 2)
    disk_id = env.cloud().call("CreateDisk", RegionId=cluster.spec.region, ZoneId=disk_zone,
                               DiskCategory=env.profile.static_disks.category, Size=25)["DiskId"]
    env.static_disks.append(disk_id)
    pair = manifests.static_pair(0, disk_zone, cluster.spec.region, disk_id, env.profile, "nodeaffinity",
                                 pv_prefix=f"{env.suffix}-")
    cluster.core.create_persistent_volume(pair.pv)
    env.static_pvs.append(pair.pv["metadata"]["name"])
    cluster.core.create_namespaced_persistent_volume_claim(env.namespace, pair.pvc)
    claim_name = pair.pvc["metadata"]["name"]
    cluster.core.create_namespaced_pod(env.namespace, pod_with_claims("forced", [claim_name], {labels.ZONE: other}))

    def conflicted():
        pod = cluster.core.read_namespaced_pod("forced", env.namespace)
        messages = [c.message or "" for c in pod.status.conditions or [] if c.type == "PodScheduled"]
        return any(is_volume_zone_conflict(m) for m in messages) and not pod.spec.node_name, messages

    wait_for(conflicted, what="the volume zone conflict", timeout=60)

    def still_unplaced():
        ok, messages = conflicted()
        disk = {d["DiskId"]: d for d in env.ecs.state()["disks"]}[disk_id]
        attached = [a["InstanceId"] for a in disk["Attachments"]["Attachment"]]
        return ok and not attached, f"conditions {messages}, attached to {attached}"

    hold_for(still_unplaced, what="the pod staying Pending with no attachment", duration=10, interval=1)
    refused = [e for e in env.ecs.audit() if e["action"] == "AttachDisk" and e["disk_id"] == disk_id]
    assert not refused, f"attach attempts for a pod that must not run: {refused}"


def test_allowed_topologies_restricted_to_one_zone_only_provision_there(placement, cluster, seed):
    env = placement("topology")
    zone = random.Random(f"{seed}-allowed").choice(list(cluster.spec.zones))
    name = f"csi-disk-{zone}-{env.suffix}"
    client.StorageV1Api(cluster.api_client).create_storage_class(storage_class(
        name, env.profile.driver, {"type": "cloud_ssd"}, allowed_zones=(zone,), zone_key=env.profile.volume_zone_key))
    env.storage_classes.append(name)
    for n in range(3):
        cluster.core.create_namespaced_persistent_volume_claim(env.namespace, claim(f"data-{n}", name))

    def all_bound():
        claims = cluster.core.list_namespaced_persistent_volume_claim(env.namespace).items
        return all(c.status.phase == "Bound" for c in claims), [c.status.phase for c in claims]

    wait_for(all_bound, what="three claims to bind", timeout=60)
    disk_zones = {d["ZoneId"] for d in env.ecs.state()["disks"]
                  if any(t["TagValue"] == env.namespace for t in d["Tags"]["Tag"])}
    assert disk_zones == {zone}
