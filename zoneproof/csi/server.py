"""Run the driver's gRPC services on a unix socket: a controller endpoint, or a node
endpoint for one node (instance id and zone), both talking to ECS."""

from __future__ import annotations

import logging
import os
from concurrent import futures
from pathlib import Path

import grpc

from zoneproof.bugs import DRIVER_LAYERS, living_in
from zoneproof.ecsapi import EcsApi
from zoneproof.csi.controller import ControllerService
from zoneproof.csi.identity import IdentityService
from zoneproof.csi.node import NodeService, node_id_after_first_start, zone_kept_beside
from zoneproof.csi.proto import load

log = logging.getLogger(__name__)
csi, csi_grpc = load()


def socket_path(endpoint: str) -> Path:
    if not endpoint.startswith("unix://"):
        raise ValueError(f"endpoint {endpoint!r} must be unix:///path/to/socket")
    return Path(endpoint[len("unix://"):])


def build_server(endpoint: str, cloud: EcsApi, *, zone_policy: str | None = None,
                 instance_id: str | None = None, zone: str | None = None,
                 controller_zone: str | None = None, block_devices: bool = False,
                 bugs: tuple[str, ...] = ()) -> grpc.Server:
    """A server with Identity plus Controller (given a zone policy) and/or Node (given an
    instance id and zone), carrying the driver bugs of ``zoneproof.bugs`` it is given."""
    living_in(bugs, *DRIVER_LAYERS, where="the driver")  # a BugError is a ValueError
    if zone_policy is None and instance_id is None:
        raise ValueError("serve a controller (zone policy) or a node (instance id and zone), or both")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    csi_grpc.add_IdentityServicer_to_server(IdentityService(with_controller=zone_policy is not None), server)
    if zone_policy is not None:
        csi_grpc.add_ControllerServicer_to_server(ControllerService(cloud, zone_policy, controller_zone or zone, bugs),
                                                     server)
    path = socket_path(endpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    if instance_id is not None:
        if not zone:
            raise ValueError("a node endpoint needs the node's zone")
        if "node-zone-cached" in bugs:
            zone = zone_kept_beside(path, zone)
        node_id = node_id_after_first_start(path, instance_id, cloud.region) if "node-id-changed-on-restart" in bugs else ""
        csi_grpc.add_NodeServicer_to_server(NodeService(cloud, instance_id, zone, block_devices, bugs, node_id=node_id),
                                            server)
    if path.exists():
        os.unlink(path)  # a stale socket from a killed run
    server.add_insecure_port(endpoint)
    return server
