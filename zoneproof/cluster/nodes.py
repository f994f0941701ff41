"""The simulated worker nodes: names, ECS instance ids and Node objects shaped like
Alibaba Cloud ACK workers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from zoneproof import labels
from zoneproof.cluster.errors import ClusterError
from zoneproof.cluster.spec import ClusterSpec

_INSTANCE_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
PROVIDER_ID_SCHEME = "alicloud://"


def instance_of(node, *, required: bool = True) -> str:
    """The ECS instance a node names (a Node as the client models it, or as the API sends
    it): its ``alibabacloud.com/ecs-instance-id`` label, else its providerID
    ``alicloud://<region>.<instance-id>``. A node that names none is a ClusterError, or ""
    when not ``required``."""
    if isinstance(node, dict):
        meta, spec = node.get("metadata") or {}, node.get("spec") or {}
        name, node_labels, provider_id = meta.get("name"), meta.get("labels") or {}, spec.get("providerID") or ""
    else:
        name, node_labels = node.metadata.name, node.metadata.labels or {}
        provider_id = (node.spec.provider_id or "") if node.spec else ""
    if node_labels.get(labels.INSTANCE_ID):
        return node_labels[labels.INSTANCE_ID]
    if provider_id.startswith(PROVIDER_ID_SCHEME) and "." in provider_id:
        return provider_id.removeprefix(PROVIDER_ID_SCHEME).split(".", 1)[1]
    if required:
        raise ClusterError(f"node {name} names no ECS instance (no {labels.INSTANCE_ID} label, no alicloud:// "
                           "providerID)")
    return ""


@dataclass(frozen=True)
class PlannedNode:
    name: str
    zone: str
    region: str
    instance_id: str

    @property
    def provider_id(self) -> str:
        return f"{PROVIDER_ID_SCHEME}{self.region}.{self.instance_id}"


def instance_id(cluster: str, region: str, node_name: str) -> str:
    """A stable ECS-style instance id ("i-" + 20 lowercase alphanumerics) for a node,
    derived from the cluster and node so that re-creating a cluster reuses the same ids."""
    digest = int.from_bytes(hashlib.sha256(f"{cluster}/{region}/{node_name}".encode()).digest(), "big")
    chars = []
    for _ in range(20):
        digest, rem = divmod(digest, len(_INSTANCE_ALPHABET))
        chars.append(_INSTANCE_ALPHABET[rem])
    return "i-" + "".join(chars)


def plan_nodes(spec: ClusterSpec) -> list[PlannedNode]:
    return [
        PlannedNode(
            name=f"{zone}-node-{i}",
            zone=zone,
            region=spec.region,
            instance_id=instance_id(spec.name, spec.region, f"{zone}-node-{i}"),
        )
        for zone in spec.zones
        for i in range(spec.nodes_per_zone)
    ]


def machine_made_again(planned: list[PlannedNode], spec: ClusterSpec, name: str, zone: str = "",
                       instance_id: str = "") -> PlannedNode:
    """The planned node ``name`` as it was, or, given ``zone`` and ``instance_id``, as
    another machine in another zone of the cluster; a ClusterError names what is wrong."""
    by_name = {node.name: node for node in planned}
    if name not in by_name:
        raise ClusterError(f"no node {name!r} is planned in cluster {spec.name!r}")
    if zone and zone not in spec.zones:
        raise ClusterError(f"zone {zone!r} is not a zone of cluster {spec.name!r} ({', '.join(spec.zones)})")
    if bool(zone) != bool(instance_id):
        raise ClusterError("a node made again in another zone is another machine: give its zone and instance id")
    return replace(by_name[name], zone=zone, instance_id=instance_id) if zone else by_name[name]


def node_manifest(node: PlannedNode) -> dict:
    """A Node object as an ACK worker presents it; kwok fills in status and heartbeats."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/worker": "",
                "type": "kwok",
                labels.ZONE: node.zone,
                labels.REGION: node.region,
                labels.ZONE_DEPRECATED: node.zone,
                labels.REGION_DEPRECATED: node.region,
                labels.DISK_ZONE: node.zone,
                labels.INSTANCE_ID: node.instance_id,
                labels.POWER: labels.POWER_ON,
            },
            "annotations": {
                labels.CONTROLLER_MANAGED_ATTACH_DETACH: "true",
                "node.alpha.kubernetes.io/ttl": "0",
                "kwok.x-k8s.io/node": "fake",
            },
        },
        "spec": {"providerID": node.provider_id},
        "status": {
            "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"},
            "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
        },
    }
