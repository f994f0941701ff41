"""CSI Node service, refusing to stage or publish a volume unless ECS says its disk is
attached to this node's instance: exactly the check that matters for placement.

Two ways to hold data:

- without block devices (kwok nodes, where no container runs) stage and publish only mark
  their paths;
- with block devices (nodes with a kubelet, where the fake ECS makes an attached disk a
  device of its node only: ``zoneproof.cluster.blockdev``) it works as a block driver
  does. Stage finds the device by the disk's serial number under ``/dev/disk/by-id``,
  formats it ext4 on first use and mounts it at the staging path; publish bind-mounts the
  staging path at the pod's target. A device that is not there, or not a block device, is
  refused, whatever the API says.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import grpc

from zoneproof import labels
from zoneproof.ecsapi import CloudError, EcsApi
from zoneproof.csi.errors import abort, abort_cloud
from zoneproof.csi.proto import load

log = logging.getLogger(__name__)
csi, csi_grpc = load()

# A limit read from no cloud: one of the largest instance families' (what drivers that hard-code
# a limit report, whatever the instance's type holds).
FIXED_MAX_VOLUMES = 32
MARKER = ".zoneproof-volume"
BY_ID = Path("/dev/disk/by-id")
DEVICE_WAIT = 10.0  # seconds a device may take to show after its attach (a node just powered on)
FILESYSTEM = "ext4"


def zone_kept_beside(socket: Path, zone: str) -> str:
    """The node-zone-cached bug: the zone first served at this socket, kept in a file beside
    it on the host, answered ever after, though the node be made again in another zone."""
    kept = socket.with_name(socket.name + ".zone")
    if kept.is_file():
        return kept.read_text()
    kept.write_text(zone)
    return zone


def node_id_after_first_start(socket: Path, instance_id: str, region: str) -> str:
    """The node-id-changed-on-restart bug: the first start at this socket answers the
    instance id (from the instance's metadata) and leaves a mark beside it; every later
    start answers the id as the Node's providerID spells it, ``<region>.<instance id>``."""
    mark = socket.with_name(socket.name + ".started")
    if mark.is_file():
        return f"{region}.{instance_id}"
    mark.write_text(instance_id)
    return instance_id


def _mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point (bind mounts on one filesystem included, which
    ``os.path.ismount`` misses)."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as table:
        return any(line.split()[4] == target for line in table)


def _run(*argv: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise OSError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _mount(*args: str, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    _run("mount", *args, str(target))


def _unmount(target: Path) -> None:
    while _mounted(target):  # a target mounted twice by a retried call unmounts twice
        _run("umount", str(target))


def _filesystem(device: Path) -> str:
    """The filesystem type on the device, "" when it holds none (blkid's exit code 2)."""
    proc = subprocess.run(["blkid", "-p", "-s", "TYPE", "-o", "value", str(device)], capture_output=True, text=True,
                          timeout=60)
    if proc.returncode == 2:
        return ""
    if proc.returncode != 0:
        raise OSError(f"blkid {device} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip()


class NodeService(csi_grpc.NodeServicer):
    def __init__(self, cloud: EcsApi, instance_id: str, zone: str, block_devices: bool = False,
                 bugs: tuple[str, ...] = (), by_id: Path = BY_ID, node_id: str = ""):
        self.cloud = cloud
        self.instance_id = instance_id
        self.node_id = node_id or instance_id  # what NodeGetInfo names the node: its instance
        self.zone = zone
        self.block_devices = block_devices
        self.by_id = by_id  # where the devices' links by serial number are
        self.bugs = bugs

    def NodeGetInfo(self, request, context):
        own_key_zone = self.zone
        if "node-info-one-zone" in self.bugs:
            try:
                own_key_zone = self.cloud.zone_ids()[0]
            except CloudError as err:
                abort_cloud(context, err, "listing zones")
        if "node-info-empty-zone" in self.bugs:
            own_key_zone = ""
        if "attach-limit-over-reported" in self.bugs:
            max_volumes = FIXED_MAX_VOLUMES
        else:
            try:  # the instance's type decides how many disks it can hold
                max_volumes = self.cloud.disk_quantity(self.instance_id)
            except CloudError as err:
                abort_cloud(context, err, f"reading the disk quantity of {self.instance_id}")
        return csi.NodeGetInfoResponse(
            node_id=self.node_id, max_volumes_per_node=max_volumes,
            accessible_topology=csi.Topology(segments={
                labels.DISK_ZONE: own_key_zone, labels.ZONE: self.zone, labels.REGION: self.cloud.region}))

    def NodeGetCapabilities(self, request, context):
        rpc = csi.NodeServiceCapability.RPC
        return csi.NodeGetCapabilitiesResponse(capabilities=[
            csi.NodeServiceCapability(rpc=rpc(type=rpc.STAGE_UNSTAGE_VOLUME))])

    def _require_attached_here(self, context, volume_id: str) -> dict:
        """The disk as ECS describes it, if it is attached to this node's instance."""
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
        return disk

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

    def _device(self, context, disk: dict) -> Path:
        """The disk's block device on this node, found by its serial number as the guest
        sees it; refused if it does not show, though ECS says the disk is attached."""
        link = self.by_id / f"virtio-{disk['SerialNumber']}"
        deadline = time.monotonic() + DEVICE_WAIT
        while not link.exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # udev-less: the link is made with the device, only a node starting lags
        if not link.exists():
            abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                  f"volume {disk['DiskId']} is attached to instance {self.instance_id}, but no device {link} shows "
                  f"on this node after {DEVICE_WAIT:.0f}s")
        device = link.resolve()
        if not stat.S_ISBLK(os.stat(device).st_mode):
            abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"{link} -> {device} is not a block device")
        return device

    def NodeStageVolume(self, request, context):
        staging = self._check(context, request, "staging_target_path")
        if not request.HasField("volume_capability"):
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume capability is required")
        if not self.block_devices:
            if self._marked(staging, request.volume_id):
                return csi.NodeStageVolumeResponse()
            self._require_attached_here(context, request.volume_id)
            self._mark(staging, request.volume_id)
        else:
            if _mounted(staging):
                return csi.NodeStageVolumeResponse()
            device = self._device(context, self._require_attached_here(context, request.volume_id))
            try:
                found = _filesystem(device)
                if not found:
                    log.info("NodeStage: formatting %s (%s) %s", request.volume_id, device, FILESYSTEM)
                    _run(f"mkfs.{FILESYSTEM}", "-F", "-q", "-m0", str(device))
                elif found != FILESYSTEM:
                    abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                          f"{device} of volume {request.volume_id} holds {found}, not {FILESYSTEM}: not formatting it")
                _mount("-t", FILESYSTEM, str(device), target=staging)
            except OSError as err:
                abort(context, grpc.StatusCode.INTERNAL, f"staging {request.volume_id} from {device}: {err}")
        log.info("NodeStage: %s at %s", request.volume_id, staging)
        return csi.NodeStageVolumeResponse()

    def NodeUnstageVolume(self, request, context):
        staging = self._check(context, request, "staging_target_path")
        if not self.block_devices:
            (staging / MARKER).unlink(missing_ok=True)
        else:
            try:
                _unmount(staging)
            except OSError as err:
                abort(context, grpc.StatusCode.INTERNAL, f"unstaging {request.volume_id}: {err}")
        log.info("NodeUnstage: %s from %s", request.volume_id, staging)
        return csi.NodeUnstageVolumeResponse()

    def NodePublishVolume(self, request, context):
        target = self._check(context, request, "target_path")
        if not request.HasField("volume_capability"):
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume capability is required")
        if not request.staging_target_path:
            abort(context, grpc.StatusCode.FAILED_PRECONDITION, "staging_target_path is required: stage first")
        staging = Path(request.staging_target_path)
        if not self.block_devices:
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
        try:
            _mount("--bind", str(staging), target=target)
        except OSError as err:
            abort(context, grpc.StatusCode.INTERNAL, f"publishing {request.volume_id}: {err}")
        log.info("NodePublish: %s at %s", request.volume_id, target)
        return csi.NodePublishVolumeResponse()

    def NodeUnpublishVolume(self, request, context):
        target = self._check(context, request, "target_path")
        if self.block_devices:
            try:
                _unmount(target)
            except OSError as err:
                abort(context, grpc.StatusCode.INTERNAL, f"unpublishing {request.volume_id}: {err}")
            if target.is_dir():
                target.rmdir()
            return csi.NodeUnpublishVolumeResponse()
        if target.is_dir() and (target / MARKER).exists():
            shutil.rmtree(target)
        elif target.exists() and not target.is_dir():
            os.unlink(target)
        return csi.NodeUnpublishVolumeResponse()
