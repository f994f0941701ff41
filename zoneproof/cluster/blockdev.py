"""Attached disks as block devices inside the node containers of a kind cluster.

When the fake ECS attaches a disk to an instance, the disk's image (``zoneproof.ecs.storage``)
becomes a loop device on the host, and only the node container of that instance gets a
device node for it, under the name ECS reports (``/dev/vdb``), with the link a virtio disk
has on ECS, ``/dev/disk/by-id/virtio-<serial>``. Other nodes have no node for it: a disk is
usable exactly where it is attached.

Loop devices are the host kernel's, and a filesystem mounted on one keeps writing to it
after the loop is detached. A cloud disk that leaves an instance does not: so a detach or a
power cut first *cuts* the device (its offset moves past the end of the image, so every
read and write fails from then on, as with a pulled disk), then releases it.

Each loop device is set up over a hard link to the image named for its attachment
(``<disk>@<instance>``), so the kernel's list of loop devices says which attachment each
one serves: a fake ECS that restarts after a crash reconciles from it, and a cluster that
goes down releases every loop over a file of its own (``release_under``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shlex
import struct
import subprocess
import threading
from pathlib import Path
from typing import Callable

from zoneproof.ecs.backend import Attachment, Devices
from zoneproof.ecs.storage import DiskStorage

log = logging.getLogger(__name__)

# linux/loop.h: struct loop_info64 and the ioctls that read and change it.
_LOOP_INFO64 = struct.Struct("QQQQQIIII64s64s32s2Q")
_LOOP_SET_STATUS64, _LOOP_GET_STATUS64 = 0x4C04, 0x4C05
_OFFSET = 3  # lo_offset's place in the struct
BY_ID = "/dev/disk/by-id"

# How a node is reached: run a shell script in the node of an instance; False when the
# node has no power (nothing to plug into: its devices come back when it starts).
NodeShell = Callable[[str, str], bool]


class BlockDeviceError(RuntimeError):
    """A loop device could not be made, cut or released; the message names it."""


def _run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise BlockDeviceError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def loops(*, released: bool = False) -> dict[str, str]:
    """The host's loop devices with their backing files (`` (deleted)`` appended by the
    kernel when the file is gone). A device released while a filesystem still held it
    stays until that is unmounted (the kernel then frees it: its autoclear flag): it is
    listed only with ``released``."""
    listing = json.loads(_run("losetup", "--json", "--list", "--output", "NAME,BACK-FILE,AUTOCLEAR")
                         or '{"loopdevices": []}')
    return {entry["name"]: entry.get("back-file") or "" for entry in listing.get("loopdevices", [])
            if released or not _flag(entry.get("autoclear"))}


def _flag(value) -> bool:
    return value is True or str(value) in ("1", "true")


def loops_under(root: Path, *, released: bool = False) -> dict[str, str]:
    """Loop devices whose backing file is (or was) under ``root``; see :func:`loops`."""
    prefix = f"{os.path.realpath(root)}/"
    return {name: back for name, back in loops(released=released).items() if back.startswith(prefix)}


def cut(device: str) -> None:
    """Make every further read and write of the loop device fail: its offset moves to the
    end of its backing file, so its capacity is 0. The image keeps what was written."""
    fd = os.open(device, os.O_RDONLY)
    try:
        raw = bytearray(_LOOP_INFO64.size)
        fcntl.ioctl(fd, _LOOP_GET_STATUS64, raw)
        fields = list(_LOOP_INFO64.unpack(raw))
        fields[_OFFSET] = 1 << 62  # past the end of any image
        fcntl.ioctl(fd, _LOOP_SET_STATUS64, _LOOP_INFO64.pack(*fields))
    except OSError as err:
        if err.errno == 6:  # ENXIO: no file bound any more, nothing to cut
            return
        raise BlockDeviceError(f"cutting {device} failed: {err}") from err
    finally:
        os.close(fd)


def release(device: str) -> None:
    """Cut the loop device, then detach it from its file. A filesystem still mounted on it
    (a node that lost power without unmounting) keeps it until it is unmounted; the kernel
    then frees it by itself."""
    cut(device)
    proc = subprocess.run(["losetup", "--detach", device], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and "No such device" not in proc.stderr:
        raise BlockDeviceError(f"releasing {device} failed: {proc.stderr.strip()}")


def release_under(root: Path) -> list[str]:
    """Cut and release every loop device over a file under ``root`` not yet released;
    returns them."""
    found = sorted(loops_under(root))
    for device in found:
        release(device)
    if found:
        log.info("released %d loop device(s) over files under %s: %s", len(found), root, ", ".join(found))
    return found


def _plug_script(att: Attachment, major: int, minor: int) -> str:
    name, link = att.device.removeprefix("/dev/"), f"{BY_ID}/virtio-{att.serial}"
    return (f"rm -f {att.device} && mknod -m 0660 {att.device} b {major} {minor} && mkdir -p {BY_ID} && "
            f"ln -sfn ../../{shlex.quote(name)} {shlex.quote(link)}")


def _unplug_script(att: Attachment, major: int, minor: int) -> str:
    # Only the node of this loop: the name may already serve a disk attached after it.
    link = shlex.quote(f"{BY_ID}/virtio-{att.serial}")
    return (f"if [ -b {att.device} ] && [ \"$(stat -c %t:%T {att.device})\" = {major:x}:{minor:x} ]; then "
            f"rm -f {att.device}; fi; if [ \"$(readlink {link})\" = ../..{att.device.removeprefix('/dev')} ]; "
            f"then rm -f {link}; fi")


class NodeBlockDevices(Devices):
    """The fake ECS's :class:`~zoneproof.ecs.backend.Devices` for a kind cluster."""

    def __init__(self, storage: DiskStorage, node_shell: NodeShell):
        self.storage, self.node_shell = storage, node_shell
        self._lock = threading.Lock()  # one change at a time: device names are reused

    @staticmethod
    def _loop_of(link: Path) -> str | None:
        """The attachment's loop device, if one serves it (not one released already)."""
        path = os.path.realpath(link)  # the kernel names the file by its full path
        return next((name for name, back in loops().items() if back == path), None)

    def plug(self, att: Attachment) -> None:
        with self._lock:
            link = self.storage.link(att.zone, att.disk_id, att.instance_id)
            device = self._loop_of(link) or _run("losetup", "--find", "--show", str(link)).strip()
            rdev = os.stat(device).st_rdev
            if not self.node_shell(att.instance_id, _plug_script(att, os.major(rdev), os.minor(rdev))):
                release(device)  # a stopped instance: its devices are plugged as it starts
                return
            log.info("%s is %s (%s) in %s", att.disk_id, att.device, device, att.instance_id)

    def unplug(self, att: Attachment) -> None:
        with self._lock:
            link = self.storage.attachment_link(att.zone, att.disk_id, att.instance_id)
            device = self._loop_of(link)
            if device is not None:
                rdev = os.stat(device).st_rdev
                release(device)
                self.node_shell(att.instance_id, _unplug_script(att, os.major(rdev), os.minor(rdev)))
                log.info("%s cut from %s (%s released)", att.disk_id, att.instance_id, device)
            self.storage.unlink(att.zone, att.disk_id, att.instance_id)

    def reconcile(self, attachments: list[Attachment]) -> None:
        """After a start: release loops no attachment explains, plug every attachment."""
        wanted = {os.path.realpath(self.storage.attachment_link(a.zone, a.disk_id, a.instance_id))
                  for a in attachments}
        for device, back in loops_under(self.storage.root).items():
            if back not in wanted:
                log.info("releasing %s over %s: no such attachment", device, back)
                release(device)
        for att in attachments:
            self.plug(att)

    def release_all(self) -> list[str]:
        """Every loop device over this storage, as the fake ECS stops."""
        with self._lock:
            return release_under(self.storage.root)


def kind_node_shell(cluster_name: str) -> NodeShell:
    """Scripts run in the kind node container holding an instance (found by its Node's
    instance id, as the power switch finds it)."""
    from zoneproof.cluster import attach
    from zoneproof.cluster.power import node_of_instance

    provider = attach("kind", cluster_name)

    def run(instance_id: str, script: str) -> bool:
        node = node_of_instance(provider, instance_id)
        if not provider.node_powered(node):
            return False
        provider.run_on_node(node, "sh", "-c", script)
        return True

    return run
