"""CSI Node service. There is no real block device: a directory stands for the disk, and
stage/publish are refused unless ECS says the disk is attached to this node's instance,
which is exactly the check that matters for placement."""

from __future__ import annotations

import json
import logging
import os
import shutil
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


class NodeService(csi_grpc.NodeServicer):
    def __init__(self, cloud: EcsCloud, instance_id: str, zone: str):
        self.cloud = cloud
        self.instance_id = instance_id
        self.zone = zone

    def NodeGetInfo(self, request, context):
        return csi.NodeGetInfoResponse(
            node_id=self.instance_id, max_volumes_per_node=MAX_VOLUMES_PER_NODE,
            accessible_topology=csi.Topology(segments={
                labels.DISK_ZONE: self.zone, labels.ZONE: self.zone, labels.REGION: self.cloud.region}))

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

    def NodeStageVolume(self, request, context):
        staging = self._check(context, request, "staging_target_path")
        if not request.HasField("volume_capability"):
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume capability is required")
        if self._marked(staging, request.volume_id):
            return csi.NodeStageVolumeResponse()
        self._require_attached_here(context, request.volume_id)
        self._mark(staging, request.volume_id)
        log.info("NodeStage: %s at %s", request.volume_id, staging)
        return csi.NodeStageVolumeResponse()

    def NodeUnstageVolume(self, request, context):
        staging = self._check(context, request, "staging_target_path")
        (staging / MARKER).unlink(missing_ok=True)
        return csi.NodeUnstageVolumeResponse()

    def NodePublishVolume(self, request, context):
        target = self._check(context, request, "target_path")
        if not request.HasField("volume_capability"):
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume capability is required")
        if not request.staging_target_path:
            abort(context, grpc.StatusCode.FAILED_PRECONDITION, "staging_target_path is required: stage first")
        if self._marked(target, request.volume_id):
            return csi.NodePublishVolumeResponse()
        if not self._marked(Path(request.staging_target_path), request.volume_id):
            abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                  f"volume {request.volume_id} is not staged at {request.staging_target_path}")
        self._require_attached_here(context, request.volume_id)
        self._mark(target, request.volume_id)
        return csi.NodePublishVolumeResponse()

    def NodeUnpublishVolume(self, request, context):
        target = self._check(context, request, "target_path")
        if target.is_dir() and (target / MARKER).exists():
            shutil.rmtree(target)
        elif target.exists() and not target.is_dir():
            os.unlink(target)
        return csi.NodeUnpublishVolumeResponse()
