"""The reference driver in the local cluster with the real sidecars and controllers:
provisioning by topology and by zoneId, attachment, clean deletion, type fall-through,
and clear failures for bad StorageClasses."""

from __future__ import annotations

import pytest
from kubernetes import client

from zoneproof.fixtures.driver import provide_driver
from zoneproof import labels
from zoneproof.csi.identity import DRIVER_NAME
from zoneproof.ecs.admin import EcsAdmin
from zoneproof.waiting import wait_for
from zoneproof.workloads import claim, pod_with_claims, storage_class

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def driver(cluster):
    # The last zone sells no cloud_ssd, so that type fall-through can be seen.
    yield from provide_driver(cluster, zone_categories={cluster.spec.zones[-1]: ("cloud_essd", "cloud_efficiency")})


@pytest.fixture
def make_storage_class(cluster, namespace):
    storage = client.StorageV1Api(cluster.api_client)
    made = []

    def make(suffix: str, parameters: dict, **kwargs) -> str:
        name = f"{namespace}-{suffix}"
        storage.create_storage_class(storage_class(name, DRIVER_NAME, parameters, **kwargs))
        made.append(name)
        return name

    yield make
    for name in made:
        storage.delete_storage_class(name)


def ecs_disks(driver) -> dict[str, dict]:
    return {d["DiskId"]: d for d in EcsAdmin(driver.ecs_endpoint).state()["disks"]}


def bound_pv(cluster, namespace: str, claim_name: str, timeout: float = 60) -> client.V1PersistentVolume:
    def check():
        pvc = cluster.core.read_namespaced_persistent_volume_claim(claim_name, namespace)
        return pvc.status.phase == "Bound", f"claim {claim_name} is {pvc.status.phase}"
    wait_for(check, what=f"claim {claim_name} to bind", timeout=timeout)
    pvc = cluster.core.read_namespaced_persistent_volume_claim(claim_name, namespace)
    return cluster.core.read_persistent_volume(pvc.spec.volume_name)


def pv_zone(pv: client.V1PersistentVolume) -> list[str]:
    terms = pv.spec.node_affinity.required.node_selector_terms
    return [v for t in terms for e in t.match_expressions if e.key == labels.DISK_ZONE for v in e.values]


def attachment_of(cluster, pv_name: str) -> client.V1VolumeAttachment | None:
    for va in client.StorageV1Api(cluster.api_client).list_volume_attachment().items:
        if va.spec.source.persistent_volume_name == pv_name:
            return va
    return None


def wait_attached(cluster, pv_name: str) -> client.V1VolumeAttachment:
    def check():
        va = attachment_of(cluster, pv_name)
        return bool(va and va.status and va.status.attached), f"VolumeAttachment {va.metadata.name if va else 'none'}"
    wait_for(check, what=f"{pv_name} to be attached", timeout=60)
    return attachment_of(cluster, pv_name)


def failure_events(cluster, namespace: str, claim_name: str) -> list[str]:
    events = cluster.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={claim_name}").items
    return [e.message for e in events if e.reason == "ProvisioningFailed"]


def test_wait_for_first_consumer_provisions_in_the_pods_zone_and_attaches(cluster, namespace, driver,
                                                                          make_storage_class):
    zone = cluster.spec.zones[1]
    sc = make_storage_class("wffc", {"type": "cloud_ssd"}, binding="WaitForFirstConsumer")
    cluster.core.create_namespaced_persistent_volume_claim(namespace, claim("data", sc))
    cluster.core.create_namespaced_pod(namespace, pod_with_claims("app", ["data"], {labels.ZONE: zone}))
    pv = bound_pv(cluster, namespace, "data")
    assert pv_zone(pv) == [zone]
    disk = ecs_disks(driver)[pv.spec.csi.volume_handle]
    assert disk["ZoneId"] == zone

    va = wait_attached(cluster, pv.metadata.name)
    pod = cluster.core.read_namespaced_pod("app", namespace)
    assert va.spec.node_name == pod.spec.node_name
    node_instance = cluster.core.read_node(pod.spec.node_name).metadata.labels[labels.INSTANCE_ID]
    disk = ecs_disks(driver)[pv.spec.csi.volume_handle]
    assert [a["InstanceId"] for a in disk["Attachments"]["Attachment"]] == [node_instance]
    assert disk["Status"] == "In_use"

    # Deleting the pod and the claim detaches and deletes the disk: nothing leaks in ECS.
    cluster.core.delete_namespaced_pod("app", namespace)
    cluster.core.delete_namespaced_persistent_volume_claim("data", namespace)
    wait_for(lambda: (pv.spec.csi.volume_handle not in ecs_disks(driver), "disk still in ECS"),
             what="the disk to be deleted", timeout=90)
    assert attachment_of(cluster, pv.metadata.name) is None
    audit = [(e["action"], e["code"]) for e in EcsAdmin(driver.ecs_endpoint).audit()
             if e["disk_id"] == pv.spec.csi.volume_handle and e["action"] in ("AttachDisk", "DetachDisk", "DeleteDisk")]
    assert audit == [("AttachDisk", "OK"), ("DetachDisk", "OK"), ("DeleteDisk", "OK")]


def test_immediate_claim_with_zone_id_lands_in_that_zone(cluster, namespace, driver, make_storage_class):
    zone = cluster.spec.zones[0]
    sc = make_storage_class("zoneid", {"type": "cloud_ssd", "zoneId": zone})
    cluster.core.create_namespaced_persistent_volume_claim(namespace, claim("data", sc))
    pv = bound_pv(cluster, namespace, "data")
    assert pv_zone(pv) == [zone]
    assert ecs_disks(driver)[pv.spec.csi.volume_handle]["ZoneId"] == zone


def test_a_type_the_zone_lacks_falls_through_the_type_list(cluster, namespace, driver, make_storage_class):
    zone = cluster.spec.zones[-1]  # sells no cloud_ssd in this deployment
    sc = make_storage_class("fallthrough", {"type": "cloud_ssd,cloud_essd", "zoneId": zone})
    cluster.core.create_namespaced_persistent_volume_claim(namespace, claim("data", sc))
    pv = bound_pv(cluster, namespace, "data")
    disk = ecs_disks(driver)[pv.spec.csi.volume_handle]
    assert (disk["ZoneId"], disk["Category"]) == (zone, "cloud_essd")
    refused = [e for e in EcsAdmin(driver.ecs_endpoint).audit() if e["action"] == "CreateDisk"
               and e["code"] == "InvalidDataDiskCategory.NotSupported" and e["params"].get("ZoneId") == zone]
    assert refused, "cloud_ssd was never tried first"


@pytest.mark.parametrize(("parameters", "size", "problem"), [
    ({"type": "cloud_floppy"}, "20Gi", "unknown disk type cloud_floppy"),
    ({"type": "cloud_ssd"}, "5Gi", "below its minimum of 20 GiB"),
    ({"type": "cloud_ssd", "zoneId": "cn-shanghai-a"}, "20Gi", "zoneId cn-shanghai-a is not a zone of region"),
], ids=["unknown-type", "too-small", "foreign-zone"])
def test_bad_storage_class_parameters_are_named_in_events(cluster, namespace, driver, make_storage_class,
                                                          parameters, size, problem):
    before = set(ecs_disks(driver))
    sc = make_storage_class("bad", parameters)
    cluster.core.create_namespaced_persistent_volume_claim(namespace, claim("data", sc, size))
    messages = wait_for(lambda: (bool(m := failure_events(cluster, namespace, "data")), m),
                        what="a ProvisioningFailed event", timeout=60)
    assert any(problem in m for m in messages), messages
    pvc = cluster.core.read_namespaced_persistent_volume_claim("data", namespace)
    assert pvc.status.phase == "Pending"
    assert set(ecs_disks(driver)) == before  # nothing left behind in ECS
