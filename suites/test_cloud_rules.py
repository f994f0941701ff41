"""The cloud's own rules, which every placement check stands on: a disk attaches only to an
instance of its zone, and a disk without MultiAttach to one instance at a time. Checked
through the ECS API with a disk of the test's own, on instances of the cluster's nodes."""

from __future__ import annotations

import random

import pytest

from zoneproof import labels
from zoneproof.cloud import CloudError


def instances_by_zone(cluster) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for node in cluster.core.list_node().items:
        node_labels = node.metadata.labels or {}
        if node_labels.get(labels.INSTANCE_ID) and node_labels.get(labels.ZONE):
            found.setdefault(node_labels[labels.ZONE], []).append(node_labels[labels.INSTANCE_ID])
    return {zone: sorted(ids) for zone, ids in found.items()}


class Attachments:
    """Attaches made by a test, undone afterwards so that its disk can be deleted."""

    def __init__(self, cloud):
        self.cloud, self.made = cloud, []

    def attach(self, disk_id: str, instance_id: str) -> None:
        self.cloud.api.call("AttachDisk", DiskId=disk_id, InstanceId=instance_id)
        self.made.append((disk_id, instance_id))
        self.cloud.api.wait_disk(disk_id, {"In_use"})

    def undo(self) -> None:
        for disk_id, instance_id in self.made:
            self.cloud.api.call("DetachDisk", DiskId=disk_id, InstanceId=instance_id)
        for disk_id in {d for d, _ in self.made}:
            self.cloud.api.wait_disk(disk_id, {"Available"})


@pytest.fixture
def cloud_env(placement):
    env = placement("topology")
    env.watched_kinds = ()  # the test makes no Kubernetes object
    attachments = Attachments(env.cloud)
    yield env, attachments
    attachments.undo()


def test_a_disk_attaches_only_to_an_instance_of_its_zone(cloud_env, cluster, seed):
    env, attachments = cloud_env
    by_zone = instances_by_zone(cluster)
    if len(by_zone) < 2:
        pytest.skip(f"needs nodes in 2 zones; the cluster under test has them in {sorted(by_zone)}")
    disk_zone, other_zone = random.Random(f"{seed}-cloud-zone").sample(sorted(by_zone), 2)
    disk_id = env.static_disk(disk_zone, f"{env.namespace}-zone-rule")
    env.cloud_probes.add(disk_id)
    instance = by_zone[other_zone][0]
    with pytest.raises(CloudError) as refused:
        attachments.attach(disk_id, instance)
    assert refused.value.code == "ResourcesNotInSameZone", refused.value


def test_a_disk_without_multiattach_attaches_to_one_instance(cloud_env, cluster, seed):
    env, attachments = cloud_env
    crowded = {zone: ids for zone, ids in instances_by_zone(cluster).items() if len(ids) >= 2}
    if not crowded:
        pytest.skip("needs 2 nodes in one zone; the cluster under test has at most 1 per zone")
    zone = random.Random(f"{seed}-cloud-holder").choice(sorted(crowded))
    first, second = crowded[zone][:2]
    disk_id = env.static_disk(zone, f"{env.namespace}-one-holder")
    env.cloud_probes.add(disk_id)
    attachments.attach(disk_id, first)
    with pytest.raises(CloudError) as refused:
        attachments.attach(disk_id, second)
    assert refused.value.code.startswith("IncorrectDiskStatus"), refused.value
    holders = [a["InstanceId"] for a in env.cloud.describe_disks([disk_id])[0]["Attachments"]["Attachment"]]
    assert holders == [first], f"disk {disk_id} without MultiAttach is held by {holders}"
