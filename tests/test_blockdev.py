"""Disks as loop devices on this host (zoneproof.cluster.blockdev), without a cluster: a
cut device takes no more writes while the image keeps what was written before, each
attachment's loop is found again from the kernel's list, and nothing outlives a release.
Needs root and loop devices, as the kind provider does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from zoneproof.cluster import blockdev
from zoneproof.ecs.backend import Attachment
from zoneproof.ecs.storage import DiskStorage

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not Path("/dev/loop-control").exists(),
                                reason="needs root and loop devices (the kind provider's own needs)")
ZONE, DISK, INSTANCE = "zone-a", "d-0123456789", "i-node1"


@pytest.fixture
def storage(tmp_path):
    store = DiskStorage(tmp_path / "disks", (ZONE, "zone-b"))
    yield store
    blockdev.release_under(store.root)
    assert blockdev.loops_under(store.root) == {}


class RecordingShell:
    """A node that is powered and takes every script (what runs in it is the kind test's)."""

    def __init__(self, powered: bool = True):
        self.scripts: list[tuple[str, str]] = []
        self.powered = powered

    def __call__(self, instance_id: str, script: str) -> bool:
        self.scripts.append((instance_id, script))
        return self.powered


def _mount(device: str, where: Path) -> None:
    where.mkdir(exist_ok=True)
    subprocess.run(["mount", device, str(where)], check=True)


def test_a_cut_device_takes_no_more_writes_and_the_image_keeps_the_earlier_ones(storage, tmp_path):
    storage.create(ZONE, DISK, 1)
    link = storage.link(ZONE, DISK, INSTANCE)
    device = subprocess.run(["losetup", "--find", "--show", str(link)], capture_output=True, text=True,
                            check=True).stdout.strip()
    subprocess.run(["mkfs.ext4", "-q", "-F", device], check=True)
    mnt = tmp_path / "mnt"
    _mount(device, mnt)
    try:
        (mnt / "before").write_text("kept")
        os.sync()
        blockdev.cut(device)
        with pytest.raises(OSError):  # the journal aborts: the filesystem refuses the write
            with open(mnt / "after", "w") as late:
                late.write("lost")
                late.flush()
                os.fsync(late.fileno())
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    blockdev.release(device)
    assert device not in blockdev.loops()
    again = subprocess.run(["losetup", "--find", "--show", str(link)], capture_output=True, text=True,
                           check=True).stdout.strip()
    _mount(again, mnt)
    try:
        assert (mnt / "before").read_text() == "kept"
        assert not (mnt / "after").exists()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_plug_and_unplug_follow_the_attachment_and_leave_nothing(storage):
    storage.create(ZONE, DISK, 20)
    assert storage.image(ZONE, DISK).stat().st_blocks == 0  # sparse: a 20 GiB disk costs nothing
    shell = RecordingShell()
    devices = blockdev.NodeBlockDevices(storage, shell)
    attachment = Attachment(DISK, ZONE, INSTANCE, "/dev/vdb")
    devices.plug(attachment)
    (loop, back), = blockdev.loops_under(storage.root).items()
    assert back == os.path.realpath(storage.attachment_link(ZONE, DISK, INSTANCE))
    major, minor = os.major(os.stat(loop).st_rdev), os.minor(os.stat(loop).st_rdev)
    (instance, script), = shell.scripts
    assert instance == INSTANCE
    assert f"mknod -m 0660 /dev/vdb b {major} {minor}" in script
    assert "ln -sfn ../../vdb /dev/disk/by-id/virtio-0123456789" in script
    devices.plug(attachment)  # again (a restart's reconcile): the same loop, not a second one
    assert list(blockdev.loops_under(storage.root)) == [loop]

    devices.unplug(attachment)
    assert blockdev.loops_under(storage.root) == {}
    assert not storage.attachment_link(ZONE, DISK, INSTANCE).exists()
    assert f"{major:x}:{minor:x}" in shell.scripts[-1][1]  # only this loop's node is removed
    storage.delete(ZONE, DISK)
    assert list((storage.root / ZONE).iterdir()) == []


def test_a_stopped_instance_gets_no_loop_until_it_starts(storage):
    storage.create(ZONE, DISK, 20)
    devices = blockdev.NodeBlockDevices(storage, RecordingShell(powered=False))
    devices.plug(Attachment(DISK, ZONE, INSTANCE, "/dev/vdb"))
    assert blockdev.loops_under(storage.root) == {}


def test_reconcile_releases_what_no_attachment_explains_and_plugs_the_rest(storage):
    other = "d-9876543210"
    for disk in (DISK, other):
        storage.create(ZONE, disk, 20)
    devices = blockdev.NodeBlockDevices(storage, RecordingShell())
    kept, stale = Attachment(DISK, ZONE, INSTANCE, "/dev/vdb"), Attachment(other, ZONE, INSTANCE, "/dev/vdc")
    devices.plug(stale)  # then the fake ECS crashes, and starts again with only the first attachment
    devices.reconcile([kept])
    backs = set(blockdev.loops_under(storage.root).values())
    assert backs == {os.path.realpath(storage.attachment_link(ZONE, DISK, INSTANCE))}
    assert devices.release_all() and blockdev.loops_under(storage.root) == {}


def test_storage_reconcile_keeps_images_and_links_of_what_exists_only(storage):
    storage.create(ZONE, DISK, 20)
    storage.create(ZONE, "d-gone", 20)
    storage.link(ZONE, "d-gone", INSTANCE)
    storage.reconcile({DISK: (ZONE, 20), "d-new": ("zone-b", 40)}, {(DISK, INSTANCE)})
    assert sorted(p.name for p in (storage.root / ZONE).iterdir()) == [f"{DISK}.img", f"{DISK}@{INSTANCE}"]
    assert storage.image("zone-b", "d-new").stat().st_size == 40 << 30


def test_a_loop_released_under_a_mounted_filesystem_counts_as_released(storage, tmp_path):
    storage.create(ZONE, DISK, 1)
    device = subprocess.run(["losetup", "--find", "--show", str(storage.link(ZONE, DISK, INSTANCE))],
                            capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["mkfs.ext4", "-q", "-F", device], check=True)
    mnt = tmp_path / "mnt"
    _mount(device, mnt)  # a node that lost power keeps its mount until its container goes
    try:
        assert blockdev.release_under(storage.root) == [device]
        assert blockdev.loops_under(storage.root) == {}  # released: nothing left to release or report
        assert list(blockdev.loops_under(storage.root, released=True)) == [device]
        assert blockdev.release_under(storage.root) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert blockdev.loops_under(storage.root, released=True) == {}  # the kernel freed it
