"""Storage behind the fake ECS's disks, for clusters whose pods run real containers.

Each disk's data is a folder ``<root>/<zone>/<disk id>``. A node is given only its own
zone's folder (the kind provider mounts ``<root>/<zone>`` into that zone's node
containers), so a disk's data is reachable exactly where the disk could be attached, as
with a cloud disk; the node plugin mounts it into the pod. A disk's folder is made when
the disk is created and removed, with its data, when the disk is deleted."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


class DiskStorage:
    def __init__(self, root: Path, zones: list[str] | tuple[str, ...]):
        self.root = Path(root)
        for zone in zones:
            (self.root / zone).mkdir(parents=True, exist_ok=True)

    def path(self, zone: str, disk_id: str) -> Path:
        return self.root / zone / disk_id

    def create(self, zone: str, disk_id: str) -> None:
        self.path(zone, disk_id).mkdir(exist_ok=True)

    def delete(self, zone: str, disk_id: str) -> None:
        if self.path(zone, disk_id).exists():
            shutil.rmtree(self.path(zone, disk_id))

    def reconcile(self, disks: dict[str, str]) -> None:
        """Make the folders match the disks (id -> zone) after a restart: a folder for
        each disk, none for a disk that no longer exists."""
        for disk_id, zone in disks.items():
            self.create(zone, disk_id)
        for zone_dir in (p for p in self.root.iterdir() if p.is_dir()):
            for folder in zone_dir.iterdir():
                if disks.get(folder.name) != zone_dir.name:
                    log.info("removing the storage of %s (no such disk in %s)", folder.name, zone_dir.name)
                    shutil.rmtree(folder)
