"""Stands in for kubelet plus node-driver-registrar on kwok nodes: takes a node's
NodeGetInfo answer (asked from its node endpoint, or stated for a node plugin that needs a
real host) and writes what kubelet would, the node's CSINode driver entry (node id,
topology keys, allocatable volume count), the node-id annotation, and the topology
segments as node labels, plus any labels the node plugin itself would set."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import grpc
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_fixed

from zoneproof.cluster.base import is_conflict
from zoneproof.csi.proto import load

log = logging.getLogger(__name__)
csi, csi_grpc = load()

NODE_ID_ANNOTATION = "csi.volume.kubernetes.io/nodeid"


@dataclass(frozen=True)
class NodeInfo:
    """What NodeGetInfo answers: node id, topology segments, volume limit (0: none)."""

    node_id: str
    segments: dict[str, str]
    max_volumes: int = 0


def node_info(endpoint: str, timeout: float = 30) -> NodeInfo:
    with grpc.insecure_channel(endpoint) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        answer = csi_grpc.NodeStub(channel).NodeGetInfo(csi.NodeGetInfoRequest(), timeout=timeout)
    return NodeInfo(answer.node_id, dict(answer.accessible_topology.segments), answer.max_volumes_per_node)


@retry(retry=retry_if_exception(is_conflict), stop=stop_after_attempt(10), wait=wait_fixed(0.2), reraise=True)
def register(api: client.ApiClient, node_name: str, driver: str, info: NodeInfo,
             extra_labels: dict[str, str] | None = None) -> None:
    core, storage = client.CoreV1Api(api), client.StorageV1Api(api)
    node = core.read_node(node_name)
    segments = dict(info.segments)
    entry = client.V1CSINodeDriver(name=driver, node_id=info.node_id, topology_keys=sorted(segments),
                                   allocatable=client.V1VolumeNodeResources(count=info.max_volumes or None))
    csinode = _own_csinode(storage, node_name, node.metadata.uid)
    if csinode is not None and identity_changed(csinode, entry):
        # A restarted plugin naming the node otherwise: the kubelet removed its entry when the
        # plugin's socket went, and installs the new one when it comes back.
        unregister(api, node_name, driver)
        csinode = _own_csinode(storage, node_name, node.metadata.uid)
    if csinode is not None:
        csinode.spec.drivers = [d for d in (csinode.spec.drivers or []) if d.name != driver] + [entry]
        storage.replace_csi_node(node_name, csinode)
    else:
        storage.create_csi_node(client.V1CSINode(
            metadata=client.V1ObjectMeta(name=node_name, owner_references=[client.V1OwnerReference(
                api_version="v1", kind="Node", name=node_name, uid=node.metadata.uid)]),
            spec=client.V1CSINodeSpec(drivers=[entry])))
    ids = json.loads((node.metadata.annotations or {}).get(NODE_ID_ANNOTATION, "{}"))
    ids[driver] = info.node_id
    core.patch_node(node_name, {"metadata": {"labels": {**segments, **(extra_labels or {})},
                                             "annotations": {NODE_ID_ANNOTATION: json.dumps(ids)}}})
    log.debug("registered %s on %s as %s with %s", driver, node_name, info.node_id, segments)


def identity_changed(csinode: client.V1CSINode, entry: client.V1CSINodeDriver) -> bool:
    """Whether the CSINode holds the driver under another node id or other topology keys
    than ``entry``: both immutable in an update, so the entry must go before it comes back."""
    return any(held.name == entry.name and (held.node_id != entry.node_id
                                            or sorted(held.topology_keys or []) != sorted(entry.topology_keys or []))
               for held in csinode.spec.drivers or [])


def _own_csinode(storage: client.StorageV1Api, node_name: str, node_uid: str) -> client.V1CSINode | None:
    """The node's CSINode, or None if it has none. The CSINode of a former Node of the same
    name (deleted, then made again) is deleted first: the garbage collector would remove it
    any moment, with what is registered in it, so it is made anew, as the kubelet does."""
    try:
        csinode = storage.read_csi_node(node_name)
    except ApiException as err:
        if err.status != 404:
            raise
        return None
    if any(ref.kind == "Node" and ref.uid != node_uid for ref in csinode.metadata.owner_references or []):
        try:
            storage.delete_csi_node(node_name)
        except ApiException as err:
            if err.status != 404:  # the garbage collector came first
                raise
        return None
    return csinode


def csinode_drivers(api: client.ApiClient, node_name: str) -> list[dict] | None:
    """A node's CSINode drivers as the API returns them (None: no CSINode). Read raw: the
    client's model refuses the ``drivers: null`` a kubelet writes before any registration."""
    try:
        response = client.StorageV1Api(api).read_csi_node(node_name, _preload_content=False)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return json.loads(response.data)["spec"].get("drivers") or []


def unregister(api: client.ApiClient, node_name: str, driver: str) -> None:
    storage = client.StorageV1Api(api)
    try:
        csinode = storage.read_csi_node(node_name)
    except ApiException as err:
        if err.status == 404:
            return
        raise
    remaining = [d for d in (csinode.spec.drivers or []) if d.name != driver]
    if remaining:
        csinode.spec.drivers = remaining
        storage.replace_csi_node(node_name, csinode)
    else:
        storage.delete_csi_node(node_name)  # an empty driver list does not round-trip through the client
