"""kill -9 of a busy fake ECS and a restart on the same database lose nothing acknowledged."""

from __future__ import annotations

import threading
import time

from tests.ecs_clients import RpcSdk, V3Sdk
from zoneproof.ecs.admin import EcsAdmin, EcsProcess
from zoneproof.ecs.server import DEFAULT_CREDENTIALS

KEY_ID, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))
REGION, ZONES = "cn-beijing", ("cn-beijing-a", "cn-beijing-b")


def test_kill_9_loses_no_acknowledged_disk_or_attachment(tmp_path):
    db = tmp_path / "ecs.sqlite"
    first = EcsProcess(db).start()
    admin = EcsAdmin(first.endpoint)
    instances = {f"i-worker{n}": ZONES[n % 2] for n in range(4)}
    for instance_id, zone in instances.items():
        admin.register_instance(instance_id, zone)

    acknowledged_disks: dict[str, str] = {}  # disk -> zone
    acknowledged_attachments: dict[str, str] = {}  # disk -> instance
    acknowledged_detaches: set[str] = set()
    lock, stop = threading.Lock(), threading.Event()
    failures: list[BaseException] = []  # a worker's exception fails the test, not just a warning

    def worker(n: int) -> None:
        sdk = (RpcSdk if n % 2 else V3Sdk)(first.endpoint, KEY_ID, SECRET, REGION)
        instance_id = f"i-worker{n}"
        mine: list[str] = []
        while not stop.is_set():
            try:
                disk_id = sdk.call("CreateDisk", RegionId=REGION, ZoneId=instances[instance_id],
                                   DiskCategory="cloud_essd", Size=20, MultiAttach="Disabled")["DiskId"]
                with lock:
                    acknowledged_disks[disk_id] = instances[instance_id]
                sdk.call("AttachDisk", DiskId=disk_id, InstanceId=instance_id)
                with lock:
                    acknowledged_attachments[disk_id] = instance_id
                mine.append(disk_id)
                if len(mine) > 8:  # stay under the instance's disk limit
                    oldest = mine.pop(0)
                    with lock:  # in doubt until the detach is acknowledged
                        del acknowledged_attachments[oldest]
                    sdk.call("DetachDisk", DiskId=oldest, InstanceId=instance_id)
                    with lock:
                        acknowledged_detaches.add(oldest)
            except Exception as err:  # noqa: BLE001 - recorded, asserted below
                if not stop.is_set():  # after stop, the service dies under us: that is the point
                    failures.append(err)
                return

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    stop.set()  # first, so that a worker whose call dies with the service knows why
    first.kill()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert not failures, f"workers failed before the kill: {failures!r}"
    assert len(acknowledged_attachments) >= 4, "the load did not get going before the kill"

    with EcsProcess(db) as second:
        state = EcsAdmin(second.endpoint).state()
        disks = {d["DiskId"]: d for d in state["disks"]}
        lost = sorted(set(acknowledged_disks) - disks.keys())
        assert not lost, f"acknowledged disks lost: {lost}"
        for disk_id, zone in acknowledged_disks.items():
            assert disks[disk_id]["ZoneId"] == zone
        for disk_id, instance_id in acknowledged_attachments.items():
            holders = [a["InstanceId"] for a in disks[disk_id]["Attachments"]["Attachment"]]
            assert holders == [instance_id], f"{disk_id}: attachment lost ({holders})"
        for disk_id in acknowledged_detaches:
            assert disks[disk_id]["Attachments"]["Attachment"] == [], f"{disk_id}: detach lost"
        assert sorted(i["InstanceId"] for i in state["instances"]) == sorted(instances)
        audited = {e["disk_id"] for e in EcsAdmin(second.endpoint).audit() if e["action"] == "CreateDisk"
                   and e["code"] == "OK"}
        assert set(acknowledged_disks) <= audited
