"""The CSI calls the rules make, as the sidecars would make them."""

from __future__ import annotations

import uuid

import grpc

from zoneproof.csi.proto import load

csi, _ = load()
GIB = 1 << 30
SINGLE_WRITER = csi.VolumeCapability.AccessMode.SINGLE_NODE_WRITER


def capability():
    return csi.VolumeCapability(mount=csi.VolumeCapability.MountVolume(fs_type="ext4"),
                                access_mode=csi.VolumeCapability.AccessMode(mode=SINGLE_WRITER))


def create(target, *, requisite: list[dict], preferred: list[dict] = (), name: str = "",
           parameters: dict[str, str] | None = None, controller=None):
    """CreateVolume of the profile's smallest disk, to ``controller`` (by default the
    target's)."""
    request = csi.CreateVolumeRequest(
        name=name or f"pvc-rules-{uuid.uuid4().hex[:12]}", volume_capabilities=[capability()],
        capacity_range=csi.CapacityRange(required_bytes=target.profile.min_size_gib * GIB),
        parameters=parameters or {"type": target.profile.disk_categories[0]},
        accessibility_requirements=csi.TopologyRequirement(
            requisite=[csi.Topology(segments=s) for s in requisite],
            preferred=[csi.Topology(segments=s) for s in preferred]))
    return (controller or target.controller).CreateVolume(request, timeout=120).volume


def delete(target, volume_id: str) -> None:
    target.controller.DeleteVolume(csi.DeleteVolumeRequest(volume_id=volume_id), timeout=120)


def publish(target, volume_id: str, node_id: str):
    return target.controller.ControllerPublishVolume(csi.ControllerPublishVolumeRequest(
        volume_id=volume_id, node_id=node_id, volume_capability=capability()), timeout=120)


def unpublish(target, volume_id: str, node_id: str) -> None:
    target.controller.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(
        volume_id=volume_id, node_id=node_id), timeout=120)


def made_in(target, volumes: list[str], **kwargs) -> tuple[object, str]:
    """CreateVolume, which must succeed; the volume and its disk's zone in ECS."""
    try:
        volume = create(target, **kwargs)
    except grpc.RpcError as err:
        raise AssertionError(f"CSI CreateVolume refused a request it can serve (requisite {kwargs.get('requisite')}, "
                             f"preferred {list(kwargs.get('preferred', []))}): {err.code().name}: {err.details()}"
                             ) from err
    volumes.append(volume.volume_id)
    return volume, target.disk(volume.volume_id)["ZoneId"]


def volume_in(target, volumes: list[str], zone: str, key: str | None = None):
    """The set-up of a rule about what follows CreateVolume: a volume made for ``zone``
    alone (under ``key``, by default the profile's first zone key), whose disk must be
    there; where the driver puts it elsewhere the rule cannot be checked, and says why."""
    key = key or target.profile.zone_keys[0]
    volume, disk_zone = made_in(target, volumes, requisite=[{key: zone}])
    if disk_zone != zone:
        raise AssertionError(f"set-up: CreateVolume for requisite {key}={zone} made a disk in {disk_zone}, so this "
                             "rule cannot be checked (the CreateVolume rules say what is wrong)")
    return volume
