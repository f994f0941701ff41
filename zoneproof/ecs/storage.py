"""Storage behind the fake ECS's disks, for clusters whose pods run real containers.

Each disk is a sparse image file ``<root>/<zone>/<disk id>.img`` of the disk's size, made
when the disk is created and removed, with its data, when the disk is deleted. No node sees
the folder: a disk reaches a node only as the block device its attach makes in that
node (``zoneproof.cluster.blockdev``), over a hard link to the image named for the
attachment (``<disk id>@<instance id>``), so that the kernel's own list of loop devices
says which attachment each one serves, even after the fake ECS crashed."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

GIB = 1 << 30
IMAGE_SUFFIX = ".img"


class DiskStorage:
    def __init__(self, root: Path, zones: list[str] | tuple[str, ...]):
        self.root = Path(root)
        for zone in zones:
            (self.root / zone).mkdir(parents=True, exist_ok=True)

    def image(self, zone: str, disk_id: str) -> Path:
        return self.root / zone / f"{disk_id}{IMAGE_SUFFIX}"

    def attachment_link(self, zone: str, disk_id: str, instance_id: str) -> Path:
        return self.root / zone / f"{disk_id}@{instance_id}"

    def create(self, zone: str, disk_id: str, size_gib: int) -> None:
        with open(self.image(zone, disk_id), "ab") as image:
            image.truncate(max(size_gib * GIB, os.fstat(image.fileno()).st_size))  # sparse: costs no space

    def resize(self, zone: str, disk_id: str, size_gib: int) -> None:
        self.create(zone, disk_id, size_gib)

    def link(self, zone: str, disk_id: str, instance_id: str) -> Path:
        """The attachment's own name for the disk's image (a hard link: the same data)."""
        link = self.attachment_link(zone, disk_id, instance_id)
        if not link.exists():
            os.link(self.image(zone, disk_id), link)
        return link

    def unlink(self, zone: str, disk_id: str, instance_id: str) -> None:
        self.attachment_link(zone, disk_id, instance_id).unlink(missing_ok=True)

    def delete(self, zone: str, disk_id: str) -> None:
        for path in (self.root / zone).glob(f"{disk_id}@*"):
            path.unlink(missing_ok=True)
        self.image(zone, disk_id).unlink(missing_ok=True)

    def reconcile(self, disks: dict[str, tuple[str, int]], attachments: set[tuple[str, str]]) -> None:
        """Make the files match the disks (id -> zone, size) and attachments (disk id,
        instance id) after a restart: an image for each disk, a link for each attachment,
        nothing for what no longer exists."""
        for disk_id, (zone, size) in disks.items():
            self.create(zone, disk_id, size)
        for zone_dir in (p for p in self.root.iterdir() if p.is_dir()):
            for path in zone_dir.iterdir():
                disk_id, _, instance_id = path.name.removesuffix(IMAGE_SUFFIX).partition("@")
                known = disks.get(disk_id, ("",))[0] == zone_dir.name and (
                    not instance_id or (disk_id, instance_id) in attachments)
                if not known:
                    log.info("removing %s (no such disk or attachment in %s)", path.name, zone_dir.name)
                    path.unlink()
        for disk_id, instance_id in attachments:
            if disk_id in disks:
                self.link(disks[disk_id][0], disk_id, instance_id)
