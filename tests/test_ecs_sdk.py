"""The fake ECS driven by both official Python SDKs as real clients over HTTP."""

from __future__ import annotations

import time

import pytest

from tests.ecs_clients import SDKS, ApiError, error_of, register_instances
from zoneproof.ecs.backend import EcsConfig, Latencies
from zoneproof.ecs.catalog import DEFAULT_CATEGORIES
from zoneproof.ecs.server import DEFAULT_CREDENTIALS, EcsServer

REGION = "cn-beijing"
ZONE_A, ZONE_B, ZONE_C = "cn-beijing-a", "cn-beijing-b", "cn-beijing-c"
KEY_ID, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))
INSTANCES = {"i-a1": ZONE_A, "i-a2": ZONE_A, "i-b1": ZONE_B}


def make_server(latencies: Latencies | None = None) -> EcsServer:
    config = EcsConfig(region=REGION, latencies=latencies or Latencies(), zones={
        ZONE_A: DEFAULT_CATEGORIES, ZONE_B: DEFAULT_CATEGORIES,
        ZONE_C: tuple(c for c in DEFAULT_CATEGORIES if c != "cloud_ssd")})  # zone c sells no cloud_ssd
    server = EcsServer(config).start()
    register_instances(server, INSTANCES)
    return server


@pytest.fixture
def server():
    srv = make_server()
    yield srv
    srv.stop()


@pytest.fixture(params=SDKS, ids=lambda cls: cls.name)
def sdk(request, server):
    return request.param(server.endpoint, KEY_ID, SECRET, REGION)


def create(sdk, zone=ZONE_A, category="cloud_ssd", size=20, **extra) -> str:
    return sdk.call("CreateDisk", RegionId=REGION, ZoneId=zone, DiskCategory=category, Size=size, **extra)["DiskId"]


def describe(sdk, disk_id) -> dict:
    disks = sdk.call("DescribeDisks", RegionId=REGION, DiskIds=[disk_id])["Disks"]["Disk"]
    assert len(disks) == 1
    return disks[0]


def test_attach_in_the_same_zone(sdk):
    disk_id = create(sdk, Tag=[{"Key": "csi.alibabacloud.com/volume-name", "Value": "pv-1"}])
    assert describe(sdk, disk_id)["Status"] == "Available"
    sdk.call("AttachDisk", DiskId=disk_id, InstanceId="i-a1")
    disk = describe(sdk, disk_id)
    assert disk["Status"] == "In_use"
    assert disk["ZoneId"] == ZONE_A
    assert disk["InstanceId"] == "i-a1"
    assert [a["InstanceId"] for a in disk["Attachments"]["Attachment"]] == ["i-a1"]
    assert disk["SerialNumber"] == disk_id[2:]
    assert disk["Tags"]["Tag"] == [{"TagKey": "csi.alibabacloud.com/volume-name", "TagValue": "pv-1"}]
    sdk.call("DetachDisk", DiskId=disk_id, InstanceId="i-a1")
    assert describe(sdk, disk_id)["Status"] == "Available"
    sdk.call("DeleteDisk", DiskId=disk_id)
    assert sdk.call("DescribeDisks", RegionId=REGION, DiskIds=[disk_id])["Disks"]["Disk"] == []


def test_cross_zone_attach_is_refused_and_audited(sdk, server):
    disk_id = create(sdk, zone=ZONE_A)
    err = error_of(sdk.call, "AttachDisk", DiskId=disk_id, InstanceId="i-b1")
    assert (err.code, err.status) == ("ResourcesNotInSameZone", 403)
    assert describe(sdk, disk_id)["Status"] == "Available"
    attempts = [e for e in server.store.audit() if e["action"] == "AttachDisk"]
    assert attempts[-1]["code"] == "ResourcesNotInSameZone"
    assert (attempts[-1]["disk_zone"], attempts[-1]["instance_zone"]) == (ZONE_A, ZONE_B)
    assert attempts[-1]["style"] == ("v3" if sdk.name == "alibabacloud-ecs20140526" else "rpc")


def test_a_plain_disk_attaches_to_one_instance_a_shared_one_to_several(sdk):
    plain = create(sdk)
    sdk.call("AttachDisk", DiskId=plain, InstanceId="i-a1")
    err = error_of(sdk.call, "AttachDisk", DiskId=plain, InstanceId="i-a2")
    assert (err.code, err.status) == ("IncorrectDiskStatus", 403)
    err = error_of(sdk.call, "DeleteDisk", DiskId=plain)
    assert err.code == "IncorrectDiskStatus"

    shared = create(sdk, category="cloud_essd", MultiAttach="Enabled")
    sdk.call("AttachDisk", DiskId=shared, InstanceId="i-a1")
    sdk.call("AttachDisk", DiskId=shared, InstanceId="i-a2")
    disk = describe(sdk, shared)
    assert disk["MultiAttach"] == "Enabled"
    assert sorted(a["InstanceId"] for a in disk["Attachments"]["Attachment"]) == ["i-a1", "i-a2"]


def test_create_disk_is_idempotent_by_client_token(sdk):
    first = create(sdk, ClientToken="n:pvc-123")
    assert create(sdk, ClientToken="n:pvc-123") == first
    err = error_of(create, sdk, size=30, ClientToken="n:pvc-123")
    assert (err.code, err.status) == ("IdempotentParameterMismatch", 400)
    disks = sdk.call("DescribeDisks", RegionId=REGION)["Disks"]["Disk"]
    assert [d["DiskId"] for d in disks] == [first]


def test_paging_by_page_number_and_by_next_token(sdk):
    ids = [create(sdk, DiskName=f"d{i}") for i in range(7)]
    pages = [sdk.call("DescribeDisks", RegionId=REGION, PageNumber=n, PageSize=3) for n in (1, 2, 3)]
    assert [len(p["Disks"]["Disk"]) for p in pages] == [3, 3, 1]
    assert all(p["TotalCount"] == 7 for p in pages)
    assert [d["DiskId"] for p in pages for d in p["Disks"]["Disk"]] == ids

    seen, token = [], None
    while True:
        params = {"MaxResults": 2, **({"NextToken": token} if token else {})}
        page = sdk.call("DescribeDisks", RegionId=REGION, **params)
        seen += [d["DiskId"] for d in page["Disks"]["Disk"]]
        token = page["NextToken"]
        if not token:
            break
    assert seen == ids


def test_size_and_category_rules(sdk):
    assert error_of(create, sdk, size=19).code == "InvalidDataDiskSize.ValueNotSupported"
    assert error_of(create, sdk, category="cloud_essd", size=460, PerformanceLevel="PL2").code \
        == "InvalidDataDiskSize.ValueNotSupported"
    create(sdk, category="cloud_essd", size=461, PerformanceLevel="PL2")
    create(sdk, category="cloud_essd", size=1, PerformanceLevel="PL0")
    assert error_of(create, sdk, category="cloud_essd", PerformanceLevel="PL9").code \
        == "InvalidPerformanceLevel.Malformed"
    err = error_of(create, sdk, zone=ZONE_C, category="cloud_ssd")
    assert (err.code, err.status) == ("InvalidDataDiskCategory.NotSupported", 403)
    assert error_of(create, sdk, zone="cn-beijing-z").code == "InvalidZoneId.NotFound"
    err = error_of(sdk.call, "CreateDisk", RegionId=REGION, ZoneId=ZONE_A)
    assert (err.code, err.status) == ("MissingParameter", 400)


def test_unknown_ids(sdk):
    disk_id = create(sdk)
    err = error_of(sdk.call, "AttachDisk", DiskId="d-doesnotexist", InstanceId="i-a1")
    assert (err.code, err.status) == ("InvalidDiskId.NotFound", 404)
    err = error_of(sdk.call, "AttachDisk", DiskId=disk_id, InstanceId="i-nobody")
    assert (err.code, err.status) == ("InvalidInstanceId.NotFound", 404)


def test_resize_and_describe_the_region(sdk):
    disk_id = create(sdk)
    sdk.call("ResizeDisk", DiskId=disk_id, NewSize=40)
    assert describe(sdk, disk_id)["Size"] == 40
    assert error_of(sdk.call, "ResizeDisk", DiskId=disk_id, NewSize=30).code == "InvalidDiskSize.TooSmall"
    zones = sdk.call("DescribeZones", RegionId=REGION)["Zones"]["Zone"]
    assert {z["ZoneId"] for z in zones} == {ZONE_A, ZONE_B, ZONE_C}
    assert sdk.call("DescribeRegions")["Regions"]["Region"][0]["RegionId"] == REGION
    available = sdk.call("DescribeAvailableResource", RegionId=REGION, ZoneId=ZONE_C,
                         DestinationResource="DataDisk", ResourceType="disk")
    zone = available["AvailableZones"]["AvailableZone"][0]
    offered = {r["Value"] for r in zone["AvailableResources"]["AvailableResource"][0]
               ["SupportedResources"]["SupportedResource"]}
    assert "cloud_ssd" not in offered and "cloud_essd" in offered
    instances = sdk.call("DescribeInstances", RegionId=REGION, ZoneId=ZONE_A)["Instances"]["Instance"]
    assert sorted(i["InstanceId"] for i in instances) == ["i-a1", "i-a2"]


def test_wrong_secret_is_a_client_error(server):
    for cls in SDKS:
        err = error_of(cls(server.endpoint, KEY_ID, "not-the-secret", REGION).call, "DescribeRegions")
        assert (err.code, err.status) == ("SignatureDoesNotMatch", 400), cls.name
        assert "server string to sign is:" in err.message  # the RPC SDK parses this part
        err = error_of(cls(server.endpoint, "NOSUCHKEY", SECRET, REGION).call, "DescribeRegions")
        assert err.code == "InvalidAccessKeyId.NotFound", cls.name


# ------------------------------------------------------------------ faults
def test_zone_outage_fails_calls_touching_the_zone(sdk, server):
    disk_b = create(sdk, zone=ZONE_B)
    server.faults.add({"kind": "zone_outage", "zone": ZONE_B})
    err = error_of(create, sdk, zone=ZONE_B)
    assert (err.code, err.status) == ("ServiceUnavailable", 503)
    assert error_of(sdk.call, "AttachDisk", DiskId=disk_b, InstanceId="i-b1").status == 503
    create(sdk, zone=ZONE_A)  # other zones carry on
    server.faults.clear()
    sdk.call("AttachDisk", DiskId=disk_b, InstanceId="i-b1")


def test_no_stock_for_a_zone_and_category(sdk, server):
    server.faults.add({"kind": "no_stock", "zone": ZONE_A, "category": "cloud_ssd"})
    err = error_of(create, sdk, zone=ZONE_A, category="cloud_ssd")
    assert (err.code, err.status) == ("OperationDenied.NoStock", 403)
    create(sdk, zone=ZONE_A, category="cloud_essd")
    create(sdk, zone=ZONE_B, category="cloud_ssd")


def test_throttling_uses_the_exact_code(sdk, server):
    server.faults.add({"kind": "throttle", "rate": 1.0, "action": "DescribeDisks"})
    err = error_of(sdk.call, "DescribeDisks", RegionId=REGION)
    assert (err.code, err.status) == ("Throttling", 400)
    sdk.call("DescribeRegions")


def test_throttling_at_a_rate(server):
    sdk = SDKS[0](server.endpoint, KEY_ID, SECRET, REGION)
    server.faults.add({"kind": "throttle", "rate": 0.5})
    outcomes = []
    for _ in range(60):
        try:
            sdk.call("DescribeRegions")
            outcomes.append("ok")
        except ApiError as err:
            outcomes.append(err.code)
    assert set(outcomes) == {"ok", "Throttling"}
    assert 10 <= outcomes.count("Throttling") <= 50


def test_latency_per_action(sdk, server):
    server.faults.add({"kind": "latency", "action": "DescribeRegions", "seconds": 0.4})
    started = time.monotonic()
    sdk.call("DescribeRegions")
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    sdk.call("DescribeZones", RegionId=REGION)
    assert time.monotonic() - started < 0.4


def test_failure_of_the_next_n_calls(sdk, server):
    server.faults.add({"kind": "fail_next", "action": "CreateDisk", "count": 2})
    for _ in range(2):
        err = error_of(create, sdk)
        assert (err.code, err.status) == ("InternalError", 500)
    create(sdk)
    assert server.faults.list() == []


def test_a_lost_answer_leaves_the_call_carried_out(sdk, server):
    server.faults.add({"kind": "lose_answer", "action": "CreateDisk", "count": 1})
    with pytest.raises(Exception) as lost:  # what each SDK raises for a closed connection differs
        create(sdk, ClientToken="lost-answer-1")
    # The client's own error: no answer came, so no HTTP status.
    assert getattr(lost.value, "status", None) is None, f"an error answer ({lost.value!r}), not a lost one"
    assert server.faults.list() == []
    made = [d["DiskId"] for d in sdk.call("DescribeDisks", RegionId=REGION)["Disks"]["Disk"]]
    assert len(made) == 1, made
    assert create(sdk, ClientToken="lost-answer-1") == made[0]  # the token answers the disk the lost call made


def test_a_cut_after_a_call_loses_its_answer_and_cuts_what_mentions_the_text_until_removed(sdk, server):
    fault = server.faults.add({"kind": "cut_after", "action": "CreateDisk", "match": "claim-7"})
    create(sdk, DiskName="other-disk")  # mentions another text: not the call the cut comes after
    with pytest.raises(Exception) as lost:
        create(sdk, DiskName="pvc-claim-7", ClientToken="cut-1")
    assert getattr(lost.value, "status", None) is None, f"an error answer ({lost.value!r}), not a lost one"

    def named(name):
        return sdk.call("DescribeDisks", RegionId=REGION, DiskName=name)["Disks"]["Disk"]
    assert len(named("other-disk")) == 1  # calls that do not mention the text go on
    with pytest.raises(Exception) as cut:
        named("pvc-claim-7")
    assert getattr(cut.value, "status", None) is None, f"an error answer ({cut.value!r}), not a cut call"
    with pytest.raises(Exception):  # cut before it reaches ECS: the token's disk is not made again, nor a new one
        create(sdk, DiskName="pvc-claim-7", ClientToken="cut-2")
    server.faults.remove(fault.id)
    made = named("pvc-claim-7")
    assert [d["DiskName"] for d in made] == ["pvc-claim-7"], made  # the first call's disk, and only it
    assert create(sdk, DiskName="pvc-claim-7", ClientToken="cut-1") == made[0]["DiskId"]


@pytest.mark.parametrize("spec, named", [
    ({"kind": "cut_after", "match": "x"}, "needs 'action'"),
    ({"kind": "cut_after", "action": "CreateDisk", "match": ""}, "match must be a non-empty string"),
    ({"kind": "fail_next", "action": "CreateDisk", "count": 1, "match": "x"}, "takes no match"),
    ({"kind": "lose_answer", "action": "CreateDisk"}, "needs 'count'"),
    ({"kind": "lose_answer", "action": "CreateDisk", "count": 0}, "count must be a positive integer"),
    ({"kind": "lose_answer", "count": 1}, "needs 'action'"),
    ({"kind": "lose_answer", "action": "CreateDisk", "count": 1, "code": "Throttling"}, "takes no code"),
])
def test_a_bad_lost_answer_or_cut_fault_is_refused_by_name(server, spec, named):
    with pytest.raises(ValueError, match=named):
        server.faults.add(spec)


# ------------------------------------------------------------------ status transitions
def test_statuses_move_with_latency():
    server = make_server(Latencies(create=0.3, attach=0.3, detach=0.3))
    now = [time.time()]
    server.backend.clock = lambda: now[0]  # the transitions' clock, moved by hand (signatures keep real time)
    try:
        sdk = SDKS[1](server.endpoint, KEY_ID, SECRET, REGION)
        disk_id = create(sdk)
        assert describe(sdk, disk_id)["Status"] == "Creating"
        assert error_of(sdk.call, "AttachDisk", DiskId=disk_id, InstanceId="i-a1").code == "IncorrectDiskStatus"
        assert error_of(sdk.call, "DeleteDisk", DiskId=disk_id).code == "IncorrectDiskStatus.Initializing"
        now[0] += 0.35
        assert describe(sdk, disk_id)["Status"] == "Available"
        sdk.call("AttachDisk", DiskId=disk_id, InstanceId="i-a1")
        attaching = describe(sdk, disk_id)
        assert attaching["Status"] == "Attaching"
        assert attaching["Attachments"]["Attachment"][0]["InstanceId"] == "i-a1"
        now[0] += 0.35
        assert describe(sdk, disk_id)["Status"] == "In_use"
        sdk.call("DetachDisk", DiskId=disk_id, InstanceId="i-a1")
        assert describe(sdk, disk_id)["Status"] == "Detaching"
        now[0] += 0.35
        assert describe(sdk, disk_id)["Status"] == "Available"
    finally:
        server.stop()
