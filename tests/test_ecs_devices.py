"""The fake ECS's device hooks (``EcsBackend.devices``): an attach plugs the disk's device
into its instance after the commit, a detach unplugs it, a power cut unplugs every device
of the instance before the power goes and a start plugs them back after it returns, a plug
that fails undoes its attach, and a restart reconciles from the state. The devices here
record their calls; tests/test_blockdev.py and the kind test run the real ones."""

from __future__ import annotations

import pytest

from tests.ecs_clients import V3Sdk, error_of, register_instances
from zoneproof.ecs.backend import Attachment, Devices, EcsConfig
from zoneproof.ecs.catalog import DEFAULT_CATEGORIES
from zoneproof.ecs.server import DEFAULT_CREDENTIALS, EcsServer

REGION, ZONE = "cn-beijing", "cn-beijing-a"
KEY_ID, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))
CONFIG = EcsConfig(region=REGION, zones={ZONE: DEFAULT_CATEGORIES})


class RecordingDevices(Devices):
    def __init__(self, log: list):
        self.log, self.broken, self.reconciled = log, False, None

    def plug(self, attachment: Attachment) -> None:
        self.log.append(("plug", attachment.disk_id, attachment.instance_id, attachment.device, attachment.serial))
        if self.broken:
            raise OSError("no loop device free")

    def unplug(self, attachment: Attachment) -> None:
        self.log.append(("unplug", attachment.disk_id, attachment.instance_id, attachment.device, attachment.serial))

    def reconcile(self, attachments: list[Attachment]) -> None:
        self.reconciled = attachments

    def release_all(self) -> None:
        self.log.append(("release all",))


@pytest.fixture
def world(tmp_path):
    log: list = []
    made: list[RecordingDevices] = []

    def devices_for(storage):
        made.append(RecordingDevices(log))
        return made[-1]

    def power_switch(instance_id: str, on: bool) -> None:
        log.append(("power", instance_id, on))

    def start(db):
        server = EcsServer(CONFIG, db_path=db, disk_root=tmp_path / "disks", devices_for=devices_for,
                           power_switch=power_switch).start()
        register_instances(server, {"i-a1": ZONE})
        return server, V3Sdk(server.endpoint, KEY_ID, SECRET, REGION)

    server, sdk = start(str(tmp_path / "ecs.sqlite"))
    yield server, sdk, log, made, lambda: start(str(tmp_path / "ecs.sqlite"))
    server.stop()


def test_attach_plugs_detach_unplugs_and_power_cycles_the_instances_devices(world, tmp_path):
    server, sdk, log, made, _ = world
    disk = sdk.call("CreateDisk", RegionId=REGION, ZoneId=ZONE, DiskCategory="cloud_ssd", Size=20)["DiskId"]
    image = tmp_path / "disks" / ZONE / f"{disk}.img"
    assert image.stat().st_size == 20 << 30
    serial = sdk.call("DescribeDisks", RegionId=REGION, DiskIds=[disk])["Disks"]["Disk"][0]["SerialNumber"]
    sdk.call("AttachDisk", DiskId=disk, InstanceId="i-a1")
    assert log == [("plug", disk, "i-a1", "/dev/vdb", serial)]
    sdk.call("StopInstances", RegionId=REGION, InstanceId=["i-a1"], ForceStop=True)
    sdk.call("StartInstances", RegionId=REGION, InstanceId=["i-a1"])
    assert log[1:] == [("unplug", disk, "i-a1", "/dev/vdb", serial), ("power", "i-a1", False),
                       ("power", "i-a1", True), ("plug", disk, "i-a1", "/dev/vdb", serial)]
    sdk.call("DetachDisk", DiskId=disk, InstanceId="i-a1")
    assert log[-1] == ("unplug", disk, "i-a1", "/dev/vdb", serial)
    sdk.call("DeleteDisk", DiskId=disk)
    assert not image.exists()


def test_a_plug_that_fails_undoes_its_attach(world):
    server, sdk, log, made, _ = world
    disk = sdk.call("CreateDisk", RegionId=REGION, ZoneId=ZONE, DiskCategory="cloud_ssd", Size=20)["DiskId"]
    made[0].broken = True
    err = error_of(sdk.call, "AttachDisk", DiskId=disk, InstanceId="i-a1")
    assert err.code == "InternalError" and "no loop device free" in err.message
    assert sdk.call("DescribeDisks", RegionId=REGION, DiskIds=[disk])["Disks"]["Disk"][0]["Status"] == "Available"
    assert [e["code"] for e in server.store.audit() if e["action"] == "AttachDisk"] == ["InternalError"]


def test_a_restart_reconciles_the_devices_and_a_stop_releases_them(world):
    server, sdk, log, made, restart = world
    disk = sdk.call("CreateDisk", RegionId=REGION, ZoneId=ZONE, DiskCategory="cloud_ssd", Size=20)["DiskId"]
    sdk.call("AttachDisk", DiskId=disk, InstanceId="i-a1")
    server.stop()
    assert log[-1] == ("release all",)
    again, _ = restart()
    try:
        assert [(a.disk_id, a.instance_id, a.device) for a in made[-1].reconciled] == [(disk, "i-a1", "/dev/vdb")]
    finally:
        again.stop()


def test_what_a_node_plugin_asks_for_its_attach_limit_and_disk_labels(tmp_path):
    """The calls the upstream plugin's node side makes at registration: the instance type's
    disk quantity (its attach limit) and the categories its zone sells (its disktype labels)."""
    config = EcsConfig(region=REGION, zones={ZONE: ("cloud_ssd",), "cn-beijing-b": DEFAULT_CATEGORIES})
    with EcsServer(config) as server:
        register_instances(server, {"i-a1": ZONE})
        sdk = V3Sdk(server.endpoint, KEY_ID, SECRET, REGION)
        kind = sdk.call("DescribeInstances", RegionId=REGION, InstanceIds=["i-a1"])["Instances"]["Instance"][0][
            "InstanceType"]
        types = sdk.call("DescribeInstanceTypes", InstanceTypes=[kind], MaxResults=100)["InstanceTypes"]["InstanceType"]
        assert [(t["InstanceTypeId"], t["DiskQuantity"]) for t in types] == [(kind, 16)]
        assert sdk.call("DescribeInstanceTypes", InstanceTypes=["ecs.nosuch"])["InstanceTypes"]["InstanceType"] == []
        zonal = sdk.call("DescribeAvailableResource", RegionId=REGION, ZoneId=ZONE, InstanceType=kind,
                         DestinationResource="DataDisk", ResourceType="disk")["AvailableZones"]["AvailableZone"]
        assert [(z["ZoneId"], [r["Value"] for r in z["AvailableResources"]["AvailableResource"][0][
            "SupportedResources"]["SupportedResource"]]) for z in zonal] == [(ZONE, ["cloud_ssd"])]
        regional = sdk.call("DescribeAvailableResource", RegionId=REGION, InstanceType=kind, Scope="region",
                            DestinationResource="DataDisk", ResourceType="disk")
        assert regional["AvailableZones"]["AvailableZone"] == []  # no regional disks are sold
        assert error_of(sdk.call, "DescribeAvailableResource", RegionId=REGION, ZoneId=ZONE,
                        InstanceType="ecs.nosuch").code == "InvalidInstanceType.NotFound"
