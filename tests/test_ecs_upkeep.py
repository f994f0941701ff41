"""The ECS actions real drivers call beside the disk basics, driven by both official
Python SDKs: tags (the Alibaba disk plugin's disk tagging), ModifyDiskSpec with
DescribeTasks (volume modification), DescribeInstanceHistoryEvents (after every
DetachDisk), and what a zone outage does to a regional, batched DescribeDisks."""

from __future__ import annotations

import pytest

from tests.ecs_clients import SDKS, RpcSdk, V3Sdk, error_of, register_instances
from zoneproof.ecs.backend import EcsConfig
from zoneproof.ecs.server import DEFAULT_CREDENTIALS, EcsServer

KEY_ID, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))
REGION, ZONE_A, ZONE_B = "cn-beijing", "cn-beijing-a", "cn-beijing-b"


@pytest.fixture
def server():
    srv = EcsServer(EcsConfig(region=REGION, zones={ZONE_A: ("cloud_essd", "cloud_ssd"),
                                                    ZONE_B: ("cloud_essd",)})).start()
    register_instances(srv, {"i-a1": ZONE_A, "i-b1": ZONE_B})
    yield srv
    srv.stop()


@pytest.fixture(params=SDKS, ids=lambda cls: cls.name)
def sdk(request, server):
    return request.param(server.endpoint, KEY_ID, SECRET, REGION)


def create(sdk, zone=ZONE_A, size=20, **extra) -> str:
    return sdk.call("CreateDisk", RegionId=REGION, ZoneId=zone, DiskCategory="cloud_essd", Size=size,
                    **extra)["DiskId"]


def disk(sdk, disk_id) -> dict:
    (found,) = sdk.call("DescribeDisks", RegionId=REGION, DiskIds=[disk_id])["Disks"]["Disk"]
    return found


def tags_of(sdk, disk_id) -> dict:
    return {t["TagKey"]: t["TagValue"] for t in disk(sdk, disk_id)["Tags"]["Tag"]}


# ---------------------------------------------------------------- tags
def test_add_describe_and_remove_tags(sdk):
    disk_id = create(sdk, Tag=[{"Key": "createdby", "Value": "alibabacloud-csi-plugin"}])
    sdk.call("AddTags", RegionId=REGION, ResourceType="disk", ResourceId=disk_id,
             Tag=[{"Key": "k8s.aliyun.com", "Value": "true"}, {"Key": "createdby", "Value": "me"}])
    assert tags_of(sdk, disk_id) == {"createdby": "me", "k8s.aliyun.com": "true"}
    found = sdk.call("DescribeTags", RegionId=REGION, Tag=[{"Key": "k8s.aliyun.com", "Value": "true"}])
    assert [(t["TagKey"], t["TagValue"], t["ResourceTypeCount"]["Disk"]) for t in found["Tags"]["Tag"]] == \
        [("k8s.aliyun.com", "true", 1)]
    both = sdk.call("DescribeTags", RegionId=REGION, Tag=[{"Key": "k8s.aliyun.com"}, {"Key": "createdby"}])
    assert sorted(t["TagKey"] for t in both["Tags"]["Tag"]) == ["createdby", "k8s.aliyun.com"]
    sdk.call("RemoveTags", RegionId=REGION, ResourceType="disk", ResourceId=disk_id,
             Tag=[{"Key": "createdby", "Value": "someone else"}])
    assert "createdby" in tags_of(sdk, disk_id), "a value that does not match removes nothing"
    sdk.call("RemoveTags", RegionId=REGION, ResourceType="disk", ResourceId=disk_id, Tag=[{"Key": "createdby"}])
    assert tags_of(sdk, disk_id) == {"k8s.aliyun.com": "true"}


def test_describe_tags_without_region_takes_the_endpoints_like_the_plugin_sends_it(server):
    sdk = RpcSdk(server.endpoint, KEY_ID, SECRET, REGION)
    disk_id = create(sdk, Tag=[{"Key": "k8s.aliyun.com", "Value": "true"}])
    assert disk_id
    found = sdk.call("DescribeTags", Tag=[{"Key": "k8s.aliyun.com", "Value": "true"}])
    assert found["TotalCount"] == 1


def test_tag_refusals(sdk):
    disk_id = create(sdk)
    assert error_of(sdk.call, "AddTags", RegionId=REGION, ResourceType="disk", ResourceId="d-nothere",
                    Tag=[{"Key": "a", "Value": "b"}]).code == "InvalidResourceId.NotFound"
    assert error_of(sdk.call, "AddTags", RegionId=REGION, ResourceType="bucket", ResourceId=disk_id,
                    Tag=[{"Key": "a", "Value": "b"}]).code == "InvalidResourceType.NotFound"
    many = [{"Key": f"k{n}", "Value": "v"} for n in range(20)]
    sdk.call("AddTags", RegionId=REGION, ResourceType="disk", ResourceId=disk_id, Tag=many)
    assert error_of(sdk.call, "AddTags", RegionId=REGION, ResourceType="disk", ResourceId=disk_id,
                    Tag=[{"Key": "one-more", "Value": "v"}]).code == "InvalidTagCount"
    assert len(tags_of(sdk, disk_id)) == 20


# ---------------------------------------------------------------- ModifyDiskSpec and its task
def test_modify_disk_spec_changes_the_level_and_leaves_a_finished_task(sdk):
    disk_id = create(sdk, size=500)
    task_id = sdk.call("ModifyDiskSpec", DiskId=disk_id, PerformanceLevel="PL2")["TaskId"]
    assert disk(sdk, disk_id)["PerformanceLevel"] == "PL2"
    (task,) = sdk.call("DescribeTasks", RegionId=REGION, TaskIds=task_id)["TaskSet"]["Task"]
    assert (task["TaskId"], task["TaskAction"], task["TaskStatus"]) == (task_id, "ModifyDiskSpec", "Finished")
    by_resource = sdk.call("DescribeTasks", RegionId=REGION, TaskAction="ModifyDiskSpec",
                           **({"ResourceIds": [disk_id]} if isinstance(sdk, V3Sdk) else {"ResourceIds.1": disk_id}))
    assert [t["TaskId"] for t in by_resource["TaskSet"]["Task"]] == [task_id]


def test_modify_disk_spec_refusals_and_dry_run(sdk):
    disk_id = create(sdk, size=20)
    assert error_of(sdk.call, "ModifyDiskSpec", DiskId=disk_id, PerformanceLevel="PL1").code == \
        "NoChangeInDiskCategoryAndPerformanceLevel"
    assert error_of(sdk.call, "ModifyDiskSpec", DiskId=disk_id, PerformanceLevel="PL3").code == \
        "OperationDenied.PerformanceLevelNotMatch"
    assert error_of(sdk.call, "ModifyDiskSpec", DiskId=disk_id, DiskCategory="cloud_auto").code == \
        "InvalidDiskCategory.NotSupported"
    assert error_of(sdk.call, "ModifyDiskSpec", DiskId="d-nothere", PerformanceLevel="PL0").code == \
        "InvalidDiskId.NotFound"
    assert error_of(sdk.call, "ModifyDiskSpec", DiskId=disk_id, PerformanceLevel="PL0",
                    DryRun=True).code == "DryRunOperation"
    assert disk(sdk, disk_id)["PerformanceLevel"] == "PL1", "a dry run changes nothing"
    assert sdk.call("DescribeTasks", RegionId=REGION, TaskAction="ModifyDiskSpec")["TotalCount"] == 0


# ---------------------------------------------------------------- DescribeInstanceHistoryEvents
def test_instance_history_events_as_the_plugin_asks_after_detach(server):
    sdk = RpcSdk(server.endpoint, KEY_ID, SECRET, REGION)
    answer = sdk.call("DescribeInstanceHistoryEvents", RegionId=REGION, ResourceType="instance",
                      **{"ResourceId.1": "i-a1", "InstanceEventCycleStatus.1": "Scheduled",
                         "InstanceEventCycleStatus.2": "Executing"},
                      EventPublishTimeStart="2026-12-01T00:00:00Z", PageSize=100)
    assert answer["InstanceSystemEventSet"]["InstanceSystemEventType"] == []
    assert answer["TotalCount"] == 0
    assert error_of(sdk.call, "DescribeInstanceHistoryEvents", RegionId=REGION,
                    **{"InstanceEventCycleStatus.1": "Sleeping"}).code == "InvalidParameter"


# ---------------------------------------------------------------- a zone outage and a regional batch
def test_a_batched_describe_naming_a_dark_zone_disk_is_answered_in_full(sdk, server):
    disk_a, disk_b = create(sdk, zone=ZONE_A), create(sdk, zone=ZONE_B)
    sdk.call("AttachDisk", DiskId=disk_b, InstanceId="i-b1")
    server.faults.add({"kind": "zone_outage", "zone": ZONE_B})
    disks = sdk.call("DescribeDisks", RegionId=REGION, DiskIds=[disk_a, disk_b], PageSize=100)["Disks"]["Disk"]
    assert {d["DiskId"]: d["Status"] for d in disks} == {disk_a: "Available", disk_b: "In_use"}
    assert error_of(sdk.call, "DescribeDisks", RegionId=REGION, ZoneId=ZONE_B).code == "ServiceUnavailable"
    assert error_of(sdk.call, "DetachDisk", DiskId=disk_b, InstanceId="i-b1").code == "ServiceUnavailable"
