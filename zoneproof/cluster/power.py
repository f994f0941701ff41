"""Power through the cloud for a cluster zoneproof made: the fake ECS calls this when an
instance is stopped or started (``StopInstances``/``StartInstances``), and the node holding
that instance loses or regains power exactly as the provider's ``stop_node`` makes it (a
kwok node let go, a kind node container killed). So a power cut asked of the ECS API
behaves here as it does in a real cloud."""

from __future__ import annotations

import logging
from typing import Callable

from zoneproof.cluster import attach
from zoneproof.cluster.base import ClusterError
from zoneproof.cluster.nodes import instance_of

log = logging.getLogger(__name__)


def power_switch_of(provider_name: str, cluster_name: str) -> Callable[[str, bool], None]:
    """``switch(instance_id, on)`` for the nodes of a running local or kind cluster."""
    provider = attach(provider_name, cluster_name)

    def switch(instance_id: str, on: bool) -> None:
        node = node_of_instance(provider, instance_id)
        (provider.start_node if on else provider.stop_node)(node)

    return switch


def cloud_hooks(provider_name: str, cluster_name: str, *, with_devices: bool):
    """The fake ECS's hooks into a cluster zoneproof made: the power switch of its nodes,
    and (on kind, ``with_devices``: disks that hold data) how an attached disk becomes a
    block device of its instance's node container; None for what the provider has not."""
    devices_for = None
    if with_devices and provider_name == "kind":
        from zoneproof.cluster.blockdev import NodeBlockDevices, kind_node_shell

        node_shell = kind_node_shell(cluster_name)
        devices_for = lambda storage: NodeBlockDevices(storage, node_shell)  # noqa: E731
    return power_switch_of(provider_name, cluster_name), devices_for


def node_of_instance(provider, instance_id: str) -> str:
    """The name of the one node of the cluster whose Node names the instance."""
    nodes = [n.metadata.name for n in provider.core.list_node().items
             if instance_of(n, required=False) == instance_id]
    if len(nodes) != 1:
        raise ClusterError(f"instance {instance_id} is held by {len(nodes)} nodes of cluster "
                           f"{provider.spec.name!r} ({', '.join(nodes) or 'none'}); expected one")
    return nodes[0]

