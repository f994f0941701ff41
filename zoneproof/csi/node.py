"""CSI Node service. There is no real block device: a directory stands for the disk, and
stage/publish are refused unless ECS says the disk is attached to this node's instance,
which is exactly the check that matters for placement.

Two ways to hold data:

- without a disk root (kwok nodes, where no container runs) stage and publish only mark
  their paths;
- with a disk root (nodes with a kubelet), the folder ``<disk root>/<disk id>`` is the
  disk's storage as the fake ECS keeps it per zone, and only nodes of the disk's zone have
  that zone's folder mounted. Stage bind-mounts it at the staging path and publish
  bind-mounts the staging path at the pod's target: the pod reads and writes the disk. A
  disk whose folder this node cannot see is refused, whatever the API says.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import grpc

from zoneproof import labels
from zoneproof.csi.cloud import CloudError, EcsCloud
from zoneproof.csi.errors import abort, abort_cloud
from zoneproof.csi.proto import load

log = logging.getLogger(__name__)
csi, csi_grpc = load()

MAX_VOLUMES_PER_NODE = 15  # 16 data disks an instance may hold, less a system disk's slot
MARKER = ".zoneproof-volume"


def _mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point (bind mounts on one filesystem included, which
    ``os.path.ismount`` misses)."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as table:
        return any(line.split()[4] == target for line in table)


def _mount_bind(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise OSError(f"mount --bind {source} {target} failed: {proc.stderr.strip()}")


def _unmount(target: Path) -> None:
    while _mounted(target):  # a target mounted twice by a retried call unmounts twice
        proc = subprocess.run(["umount", str(target)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise OSError(f"umount {target} failed: {proc.stderr.strip()}")


class NodeService(csi_grpc.NodeServicer):
    def __init__(self, cloud: EcsCloud, instance_id: str, zone: str, disk_root: Path | None = None,
                 bugs: tuple[str, ...] = ()):
        self.cloud = cloud
        self.instance_id = instance_id
        self.zone = zone
        self.disk_root = disk_root
        self.bugs = bugs

    def NodeGetInfo(self, request, context):
        own_key_zone = self.zone
        if "node-info-one-zone" in self.bugs:
            try:
                own_key_zone = self.cloud.zone_ids()[0]
            except CloudError as err:
                abort_cloud(context, err, "listing zones")
        return csi.NodeGetInfoResponse(
            node_id=self.instance_id, max_volumes_per_node=MAX_VOLUMES_PER_NODE,
            accessible_topology=csi.Topology(segments={
                labels.DISK_ZONE: own_key_zone, labels.ZONE: self.zone, labels.REGION: self.cloud.region}))

    def NodeGetCapabilities(self, request, context):
        rpc = csi.NodeServiceCapability.RPC
        return csi.NodeGetCapabilitiesResponse(capabilities=[
            csi.NodeServiceCapability(rpc=rpc(type=rpc.STAGE_UNSTAGE_VOLUME))])

    def _require_attached_here(self, context, volume_id: str) -> None:
        try:
            disk = self.cloud.describe_disk(volume_id)
        except CloudError as err:
            abort_cloud(context, err, f"describing {volume_id}")
        if disk is None:
            abort(context, grpc.StatusCode.NOT_FOUND, f"volume {volume_id} does not exist")
        holders = [a["InstanceId"] for a in disk["Attachments"]["Attachment"]]
        if self.instance_id not in holders or disk["Status"] not in ("In_use",):
            abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                  f"volume {volume_id} ({disk['ZoneId']}, {disk['Status']}) is not attached to this node's "
                  f"instance {self.instance_id} ({self.zone}); attached to: {', '.join(holders) or 'nothing'}")

    @staticmethod
    def _check(context, request, path_field: str) -> Path:
        if not request.volume_id:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume id is required")
        path = getattr(request, path_field)
        if not path:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{path_field} is required")
        return Path(path)

    @staticmethod
    def _marked(path: Path, volume_id: str) -> bool:
        try:
            return json.loads((path / MARKER).read_text())["volume_id"] == volume_id
        except (OSError, ValueError, KeyError):
            return False

    @staticmethod
    def _mark(path: Path, volume_id: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / MARKER).write_text(json.dumps({"volume_id": volume_id}))

    def _storage(self, context, volume_id: str) -> Path:
        """The disk's storage as this node sees it; refused if the node cannot reach it."""
        source = self.disk_root / volume_id
        if not source.is_dir():
            abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                  f"the storage of volume {volume_id} is not reachable from this node (instance {self.instance_id}, "
                  f"zone {self.zone}): no {source}")
        return source

    def NodeStageVolume(self, request, context):
        staging = self._check(context, request, "staging_target_path")
        if not request.HasField("volume_capability"):
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume capability is required")
        if self.disk_root is None:
            if self._marked(staging, request.volume_id):
                return csi.NodeStageVolumeResponse()
            self._require_attached_here(context, request.volume_id)
            self._mark(staging, request.volume_id)
        else:
            if _mounted(staging):
                return csi.NodeStageVolumeResponse()
            self._require_attached_here(context, request.volume_id)
            _mount_bind(self._storage(context, request.volume_id), staging)
        log.info("NodeStage: %s at %s", request.volume_id, staging)
        return csi.NodeStageVolumeResponse()

    def NodeUnstageVolume(self, request, context):
        staging = self._check(context, request, "staging_target_path")
        if self.disk_root is None:
            (staging / MARKER).unlink(missing_ok=True)
        else:
            _unmount(staging)
        log.info("NodeUnstage: %s from %s", request.volume_id, staging)
        return csi.NodeUnstageVolumeResponse()

    def NodePublishVolume(self, request, context):
        target = self._check(context, request, "target_path")
        if not request.HasField("volume_capability"):
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume capability is required")
        if not request.staging_target_path:
            abort(context, grpc.StatusCode.FAILED_PRECONDITION, "staging_target_path is required: stage first")
        staging = Path(request.staging_target_path)
        if self.disk_root is None:
            if self._marked(target, request.volume_id):
                return csi.NodePublishVolumeResponse()
            if not self._marked(staging, request.volume_id):
                abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                      f"volume {request.volume_id} is not staged at {staging}")
            self._require_attached_here(context, request.volume_id)
            self._mark(target, request.volume_id)
            return csi.NodePublishVolumeResponse()
        if _mounted(target):
            return csi.NodePublishVolumeResponse()
        if not _mounted(staging):
            abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                  f"volume {request.volume_id} is not staged at {staging}")
        self._require_attached_here(context, request.volume_id)
        _mount_bind(staging, target)
        log.info("NodePublish: %s at %s", request.volume_id, target)
        return csi.NodePublishVolumeResponse()

    def NodeUnpublishVolume(self, request, context):
        target = self._check(context, request, "target_path")
        if self.disk_root is not None:
            _unmount(target)
            if target.is_dir():
                target.rmdir()
            return csi.NodeUnpublishVolumeResponse()
        if target.is_dir() and (target / MARKER).exists():
            shutil.rmtree(target)
        elif target.exists() and not target.is_dir():
            os.unlink(target)
        return csi.NodeUnpublishVolumeResponse()
