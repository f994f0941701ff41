"""CSI Controller service: disks are created, attached and detached through ECS.

It carries the controller bugs of ``zoneproof.bugs`` when started with them (those of the
zone choice live in ``zones.py``)."""

from __future__ import annotations

import hashlib
import logging
from typing import NoReturn

import grpc

from zoneproof import labels
from zoneproof.csi import params as sc_params
from zoneproof.ecsapi import CloudError, EcsApi
from zoneproof.csi.errors import abort, abort_cloud
from zoneproof.csi.proto import load
from zoneproof.csi.zones import ConflictingZoneError, NoZoneError, ZoneChooser, topology_zones

log = logging.getLogger(__name__)
csi, csi_grpc = load()

GIB = 1 << 30
DEFAULT_SIZE_GIB = 20
VOLUME_NAME_TAG = "csi.alibabacloud.com/volume-name"
CREATED_BY_TAG = "createdby"
CREATED_BY = "zoneproof-reference-csi"
# Errors after which the next disk type is tried, as the Alibaba driver does.
CATEGORY_ERRORS = ("InvalidDataDiskCategory", "InvalidDiskSize.NotSupported", "InvalidDataDiskSize.ValueNotSupported",
                   "InvalidPerformanceLevel.Malformed")
# A zone key no node carries (the topology-foreign-key bug answers under it).
FOREIGN_ZONE_KEY = "topology.disk.example.com/zone"
AccessMode = csi.VolumeCapability.AccessMode
SINGLE_NODE_MODES = {AccessMode.SINGLE_NODE_WRITER, AccessMode.SINGLE_NODE_READER_ONLY,
                     AccessMode.SINGLE_NODE_SINGLE_WRITER, AccessMode.SINGLE_NODE_MULTI_WRITER}
MULTI_NODE_MODES = {AccessMode.MULTI_NODE_READER_ONLY, AccessMode.MULTI_NODE_SINGLE_WRITER,
                    AccessMode.MULTI_NODE_MULTI_WRITER}


def client_token(name: str) -> str:
    # ECS client tokens are at most 64 ASCII characters.
    token = f"n:{name}"
    return token if len(token) <= 64 and token.isascii() else "h:" + hashlib.sha256(name.encode()).hexdigest()[:60]


def size_gib(capacity: "csi.CapacityRange") -> int:
    required, limit = capacity.required_bytes, capacity.limit_bytes
    if required < 0 or limit < 0:
        raise ValueError("capacity bytes must not be negative")
    if limit and required > limit:
        raise ValueError(f"required_bytes {required} exceeds limit_bytes {limit}")
    gib = -(-required // GIB) if required else DEFAULT_SIZE_GIB
    if limit and gib * GIB > limit:
        gib = limit // GIB
    return gib


def modes_supported(capabilities, multi_attach: bool) -> str | None:
    """None if every capability is supported, else why not."""
    for cap in capabilities:
        if not cap.HasField("block") and not cap.HasField("mount"):
            return "a capability must be block or mount"
        mode = cap.access_mode.mode
        if mode in SINGLE_NODE_MODES:
            continue
        if mode in MULTI_NODE_MODES and multi_attach:
            continue
        return f"access mode {AccessMode.Mode.Name(mode)} needs a MultiAttach disk" if mode in MULTI_NODE_MODES \
            else f"access mode {AccessMode.Mode.Name(mode)} is not supported"
    return None


class ControllerService(csi_grpc.ControllerServicer):
    def __init__(self, cloud: EcsApi, zone_policy: str, controller_zone: str | None = None,
                 bugs: tuple[str, ...] = ()):
        self.cloud = cloud
        self.bugs = bugs
        self.zones = ZoneChooser(zone_policy, controller_zone, bugs)

    def ControllerGetCapabilities(self, request, context):
        rpc = csi.ControllerServiceCapability.RPC
        return csi.ControllerGetCapabilitiesResponse(capabilities=[
            csi.ControllerServiceCapability(rpc=rpc(type=t)) for t in
            (rpc.CREATE_DELETE_VOLUME, rpc.PUBLISH_UNPUBLISH_VOLUME, rpc.LIST_VOLUMES)])

    # ------------------------------------------------------------------ create / delete
    def CreateVolume(self, request, context):
        if not request.name:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume name is required")
        if not request.volume_capabilities:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume capabilities are required")
        if request.HasField("volume_content_source"):
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume content sources are not supported")
        try:
            p = sc_params.parse(dict(request.parameters))
            size = size_gib(request.capacity_range)
        except ValueError as err:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        why = modes_supported(request.volume_capabilities, p.multi_attach)
        if why:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, why)
        if p.region and p.region != self.cloud.region:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                  f"regionId {p.region} is not the driver's region {self.cloud.region}")

        # A retried call (its answer lost, or timed out) finds the volume the first one made.
        existing = None if "create-not-idempotent" in self.bugs else self._find_by_name(context, request.name)
        if existing:
            if existing["Size"] < size:
                abort(context, grpc.StatusCode.ALREADY_EXISTS,
                      f"volume {request.name} exists as {existing['DiskId']} with {existing['Size']} GiB < {size} GiB")
            requisite = topology_zones([], [dict(t.segments) for t in request.accessibility_requirements.requisite])
            if requisite and existing["ZoneId"] not in requisite and "name-reuse-ignores-topology" not in self.bugs:
                abort(context, grpc.StatusCode.ALREADY_EXISTS,
                      f"volume {request.name} exists as {existing['DiskId']} in {existing['ZoneId']}, outside the "
                      f"requested {', '.join(requisite)}")
            return self._response(context, existing)

        zone = self._choose_zone(context, p, request.accessibility_requirements)
        disk = self._create_disk(context, request, p, zone, size)
        return self._response(context, disk)

    def _create_failed(self, context, err: CloudError, doing: str) -> NoReturn:
        """A cloud error as CreateVolume's answer; a call that got no answer may yet have been
        carried out, which UNAVAILABLE says to csi-provisioner (it then keeps the claim's node)."""
        if err.code == "ConnectionFailure" and "lost-answer-is-final" in self.bugs:
            abort(context, grpc.StatusCode.INTERNAL, f"{doing}: {err.message}")
        abort_cloud(context, err, doing)

    def _find_by_name(self, context, name: str) -> dict | None:
        try:
            found = self.cloud.describe_disks(Tag=[{"Key": VOLUME_NAME_TAG, "Value": name}])
        except CloudError as err:
            self._create_failed(context, err, f"looking up volume {name}")
        return found[0] if found else None

    def _choose_zone(self, context, p, requirement) -> str:
        preferred = [dict(t.segments) for t in requirement.preferred]
        requisite = [dict(t.segments) for t in requirement.requisite]

        def check_zone_ids() -> None:
            known = self._zones_of_region(context)
            outside = [z for z in p.zone_ids if z not in known]
            if outside:
                abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                      f"zoneId {','.join(outside)} is not a zone of region {self.cloud.region} "
                      f"(zones: {', '.join(known)})")
        try:
            choice = self.zones.choose(p.zone_ids, preferred, requisite, check_zone_ids)
        except ConflictingZoneError as err:
            # The CSI spec's answer for a requirement that cannot be met: the provisioner
            # may then pick another node for a WaitForFirstConsumer claim.
            abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        except NoZoneError as err:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        if choice.conflict:
            log.warning("ConflictingZone: topology %s has no zone in zoneId %s; using %s",
                        requisite, ",".join(p.zone_ids), choice.zone)
        return choice.zone

    def _zones_of_region(self, context) -> list[str]:
        try:
            return self.cloud.zone_ids()
        except CloudError as err:
            self._create_failed(context, err, "listing zones")

    def _next_zone(self, context, zone: str) -> str:
        """The zone after ``zone`` in the region (what the throttling-rezone bug retries in)."""
        zones = self._zones_of_region(context)
        return zones[(zones.index(zone) + 1) % len(zones)] if zone in zones else zones[0]

    def _create_disk(self, context, request, p, zone: str, size: int) -> dict:
        tags = [{"Key": VOLUME_NAME_TAG, "Value": request.name}, {"Key": CREATED_BY_TAG, "Value": CREATED_BY},
                {"Key": "k8s.aliyun.com", "Value": "true"}]
        for key, tag in (("csi.storage.k8s.io/pvc/name", "kubernetes.io/created-for/pvc/name"),
                         ("csi.storage.k8s.io/pvc/namespace", "kubernetes.io/created-for/pvc/namespace"),
                         ("csi.storage.k8s.io/pv/name", "kubernetes.io/created-for/pv/name")):
            if request.parameters.get(key):
                tags.append({"Key": tag, "Value": request.parameters[key]})
        reasons = []
        for category in p.types:
            level = p.performance_level if category == "cloud_essd" else None
            minimum = sc_params.min_size(category, level)
            if size < minimum:
                reasons.append(f"{category}: {size} GiB is below its minimum of {minimum} GiB")
                continue
            def create(zone: str, retry_throttling: bool = True) -> str:
                return self.cloud.call(
                    "CreateDisk", retry_throttling=retry_throttling, RegionId=self.cloud.region, ZoneId=zone,
                    DiskCategory=category, Size=size, PerformanceLevel=level, DiskName=request.name,
                    Encrypted=p.encrypted or None, KMSKeyId=p.kms_key_id,
                    MultiAttach="Enabled" if p.multi_attach else None, Tag=tags,
                    ClientToken=None if "create-not-idempotent" in self.bugs else client_token(request.name)
                )["DiskId"]
            try:
                try:
                    # The bug handles throttling itself, and badly; the driver leaves it to the backoff.
                    disk_id = create(zone, retry_throttling="throttling-rezone" not in self.bugs)
                except CloudError as err:
                    if err.code != "Throttling" or "throttling-rezone" not in self.bugs:
                        raise
                    zone = self._next_zone(context, zone)
                    log.info("CreateVolume %s: throttled; retrying in %s", request.name, zone)
                    disk_id = create(zone)
            except CloudError as err:
                if err.code.startswith(CATEGORY_ERRORS):
                    reasons.append(f"{category}: {err.code} ({err.message})")
                    log.info("CreateVolume %s: %s refused in %s (%s); trying the next type",
                             request.name, category, zone, err.code)
                    continue
                if err.code == "OperationDenied.NoStock" and "no-stock-internal" in self.bugs:
                    abort(context, grpc.StatusCode.INTERNAL, f"creating a {category} disk in {zone}: {err.message}")
                if err.code == "IdempotentParameterMismatch":
                    found = self._find_by_name(context, request.name)
                    if found:
                        return found
                self._create_failed(context, err, f"creating a {category} disk in {zone}")
            log.info("CreateVolume %s: disk %s (%s, %d GiB) in %s", request.name, disk_id, category, size, zone)
            try:
                return self.cloud.wait_disk(disk_id, {"Available"})
            except CloudError as err:
                self._create_failed(context, err, f"waiting for disk {disk_id}")
        abort(context, grpc.StatusCode.OUT_OF_RANGE if all("below its minimum" in r for r in reasons)
              else grpc.StatusCode.INVALID_ARGUMENT,
              f"no disk type of {','.join(p.types)} can hold {size} GiB in {zone}: " + "; ".join(reasons))

    def _response(self, context, disk: dict):
        return csi.CreateVolumeResponse(volume=csi.Volume(
            volume_id=disk["DiskId"], capacity_bytes=disk["Size"] * GIB,
            volume_context={"type": disk["Category"], "zoneId": disk["ZoneId"]},
            accessible_topology=self._topology(context, disk["ZoneId"])))

    def _topology(self, context, zone: str) -> list:
        if "no-accessible-topology" in self.bugs:
            return []
        if "topology-foreign-key" in self.bugs:
            return [csi.Topology(segments={FOREIGN_ZONE_KEY: zone})]
        if "topology-region-only" in self.bugs:
            return [csi.Topology(segments={labels.REGION: self.cloud.region})]
        if "topology-other-zone" in self.bugs:
            zone = self._next_zone(context, zone)
        return [csi.Topology(segments={labels.DISK_ZONE: zone})]

    def DeleteVolume(self, request, context):
        if not request.volume_id:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume id is required")
        try:
            disk = self.cloud.describe_disk(request.volume_id)
            if disk is None:
                return csi.DeleteVolumeResponse()
            if disk["Status"] == "Creating":
                disk = self.cloud.wait_disk(request.volume_id, {"Available", "In_use"})
            if disk["Attachments"]["Attachment"]:
                holders = ", ".join(a["InstanceId"] for a in disk["Attachments"]["Attachment"])
                abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                      f"volume {request.volume_id} is still attached to {holders}")
            if "delete-keeps-disk" in self.bugs:
                log.info("DeleteVolume: disk %s reported deleted, left in place", request.volume_id)
                return csi.DeleteVolumeResponse()
            self.cloud.call("DeleteDisk", DiskId=request.volume_id)
        except CloudError as err:
            if err.code == "InvalidDiskId.NotFound":
                return csi.DeleteVolumeResponse()
            abort_cloud(context, err, f"deleting {request.volume_id}")
        log.info("DeleteVolume: disk %s deleted", request.volume_id)
        return csi.DeleteVolumeResponse()

    # ------------------------------------------------------------------ publish / unpublish
    def ControllerPublishVolume(self, request, context):
        if not request.volume_id or not request.node_id:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume id and node id are required")
        if not request.HasField("volume_capability"):
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume capability is required")
        try:
            disk = self.cloud.describe_disk(request.volume_id)
            if disk is None:
                abort(context, grpc.StatusCode.NOT_FOUND, f"volume {request.volume_id} does not exist")
            if self.cloud.describe_instance(request.node_id) is None:
                abort(context, grpc.StatusCode.NOT_FOUND, f"node {request.node_id} does not exist")
            why = modes_supported([request.volume_capability], disk["MultiAttach"] == "Enabled")
            if why:
                abort(context, grpc.StatusCode.INVALID_ARGUMENT, why)
            holders = [a["InstanceId"] for a in disk["Attachments"]["Attachment"]]
            if request.node_id not in holders:
                if holders and disk["MultiAttach"] != "Enabled":
                    if "volume-stealing" not in self.bugs:
                        abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                              f"volume {request.volume_id} is published to {holders[0]}")
                    self.cloud.call("DetachDisk", DiskId=request.volume_id, InstanceId=holders[0])
                    self.cloud.wait_disk(request.volume_id, {"Available"})
                try:
                    self.cloud.call("AttachDisk", DiskId=request.volume_id, InstanceId=request.node_id,
                                    DeleteWithInstance="delete-with-instance-on-attach" in self.bugs or None)
                except CloudError:
                    if "publish-ignores-attach-failure" not in self.bugs:
                        raise
                    log.info("ControllerPublish: attach of %s failed; answered success", request.volume_id)
                    return csi.ControllerPublishVolumeResponse(publish_context={"serialNumber": disk["SerialNumber"]})
                log.info("ControllerPublish: disk %s attaching to %s", request.volume_id, request.node_id)
            disk = self.cloud.wait_disk(request.volume_id, {"In_use"})
        except CloudError as err:
            if err.code == "ResourcesNotInSameZone":
                abort(context, grpc.StatusCode.FAILED_PRECONDITION, err.message)
            abort_cloud(context, err, f"attaching {request.volume_id} to {request.node_id}")
        device = next((a["Device"] for a in disk["Attachments"]["Attachment"] if a["InstanceId"] == request.node_id),
                      "")
        return csi.ControllerPublishVolumeResponse(publish_context={"serialNumber": disk["SerialNumber"],
                                                                    "devicePath": device})

    def ControllerUnpublishVolume(self, request, context):
        if not request.volume_id:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume id is required")
        try:
            if "unpublish-fails-for-gone-instance" in self.bugs and request.node_id and \
                    self.cloud.describe_instance(request.node_id) is None:
                abort(context, grpc.StatusCode.INTERNAL, f"instance {request.node_id} not found")
            disk = self.cloud.describe_disk(request.volume_id)
            if disk is None:
                return csi.ControllerUnpublishVolumeResponse()  # gone: nothing is attached
            holders = [a["InstanceId"] for a in disk["Attachments"]["Attachment"]]
            targets = [request.node_id] if request.node_id else holders
            if "unpublish-keeps-disk-attached" in self.bugs:
                targets = []
            for node_id in targets:
                if node_id in holders:
                    self.cloud.call("DetachDisk", DiskId=request.volume_id, InstanceId=node_id)
                    log.info("ControllerUnpublish: disk %s detaching from %s", request.volume_id, node_id)
            self.cloud.wait_disk(request.volume_id, {"Available", "In_use"})
        except CloudError as err:
            abort_cloud(context, err, f"detaching {request.volume_id}")
        return csi.ControllerUnpublishVolumeResponse()

    # ------------------------------------------------------------------ queries
    def ValidateVolumeCapabilities(self, request, context):
        if not request.volume_id:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume id is required")
        if not request.volume_capabilities:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "volume capabilities are required")
        try:
            disk = self.cloud.describe_disk(request.volume_id)
        except CloudError as err:
            abort_cloud(context, err, f"describing {request.volume_id}")
        if disk is None:
            abort(context, grpc.StatusCode.NOT_FOUND, f"volume {request.volume_id} does not exist")
        why = modes_supported(request.volume_capabilities, disk["MultiAttach"] == "Enabled")
        if why:
            return csi.ValidateVolumeCapabilitiesResponse(message=why)
        return csi.ValidateVolumeCapabilitiesResponse(confirmed=csi.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=request.volume_context, volume_capabilities=request.volume_capabilities,
            parameters=request.parameters))

    def ListVolumes(self, request, context):
        try:
            disks = self.cloud.describe_disks(Tag=[{"Key": CREATED_BY_TAG, "Value": CREATED_BY}])
        except CloudError as err:
            abort_cloud(context, err, "listing volumes")
        start = 0
        if request.starting_token:
            if not request.starting_token.isdigit() or int(request.starting_token) > len(disks):
                abort(context, grpc.StatusCode.ABORTED, f"invalid starting token {request.starting_token!r}")
            start = int(request.starting_token)
        end = start + request.max_entries if request.max_entries else len(disks)
        entries = [csi.ListVolumesResponse.Entry(volume=csi.Volume(
            volume_id=d["DiskId"], capacity_bytes=d["Size"] * GIB,
            accessible_topology=[csi.Topology(segments={labels.DISK_ZONE: d["ZoneId"]})]))
            for d in disks[start:end]]
        return csi.ListVolumesResponse(entries=entries, next_token=str(end) if end < len(disks) else "")
