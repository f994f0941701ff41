"""What must not happen: a pod forced away from its disk's zone never runs or attaches
there, and a StorageClass restricted to one zone (under any zone key, with either binding)
provisions nowhere else."""

from __future__ import annotations

import random

import pytest
from kubernetes import client

from zoneproof import data, labels, manifests
from zoneproof.oracle import is_volume_zone_conflict, settled
from zoneproof.report.attachments import record_verdict
from zoneproof.suites.capabilities import require_scheme
from zoneproof.waiting import hold_for
from zoneproof.workloads import claim, pod_with_claims

CLAIMS_PER_POD = 2


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


@pytest.mark.parametrize("binding", ["Immediate", "WaitForFirstConsumer"])
@pytest.mark.parametrize("key_name", ["driver-key", "well-known-key"])
def test_allowed_topologies_keep_every_claim_of_a_pod_in_their_zone(placement, cluster, seed, key_name, binding):
    """A StorageClass whose allowedTopologies name one zone, under the driver's own zone key
    and under topology.kubernetes.io/zone, bound at once or by the first consumer: every
    claim of a pod with several provisions in that zone, and the pod runs there. Bound at
    once, the provisioner hands the allowedTopologies to the driver as the requisite;
    bound by the consumer, the scheduler keeps the pod to them."""
    env = placement("topology")
    require_scheme(env.profile, "wait-for-first-consumer")
    key = env.profile.volume_zone_key if key_name == "driver-key" else labels.ZONE
    if binding == "Immediate" and key not in env.profile.zone_keys:
        pytest.skip(f"profile {env.profile.name!r} names zones under {', '.join(env.profile.zone_keys)} only: "
                    f"a requisite under {key} is not its to serve")
    zone = random.Random(f"{seed}-allowed-{key_name}-{binding}").choice(list(cluster.spec.zones))
    name = f"csi-disk-{zone}-{key_name}-{binding.lower()}-{env.suffix}"
    # The profile's WaitForFirstConsumer parameters (no zoneId): only allowedTopologies keep
    # the disks in one zone.
    client.StorageV1Api(cluster.api_client).create_storage_class(env.profile.storage_class(
        "wait-for-first-consumer", name, cluster.spec.zones, binding=binding, allowed_zones=(zone,),
        zone_key=key))
    env.storage_classes.append(name)
    names = [f"data-{n}" for n in range(CLAIMS_PER_POD)]
    for claim_name in names:
        cluster.core.create_namespaced_persistent_volume_claim(env.namespace, claim(claim_name, name,
                                                                                    env.profile.size))
    cluster.core.create_namespaced_pod(env.namespace, env.runnable(pod_with_claims("app", names)))

    verdict = env.wait_for(lambda: (settled(v := env.verdict(), 1)[0], v),
                           what=f"the pod running with its {len(names)} claims attached where it runs", timeout=90)
    record_verdict(verdict)
    [pod] = verdict.pods
    placed = {vol.claim: vol.disk_zone for vol in pod.volumes}
    assert placed == dict.fromkeys(names, zone), (
        f"allowedTopologies {key}={zone} ({binding}): the claims' disks are in {placed}")
    assert pod.node_zone == zone, f"the pod runs in {pod.node_zone}, its allowed zone is {zone}"
    env.check_data(1)
