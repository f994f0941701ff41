"""The node endpoint's zonal rules: what NodeGetInfo tells the cluster about a node (its
zone, how many disks it can hold, the id the controller publishes to), checked against
what ECS says of the node's instance. Run where the profile gives a node endpoint that runs
outside a cluster; a profile whose node side is a stand-in skips them, saying so."""

from __future__ import annotations

import pytest

from zoneproof.csi.proto import load
from zoneproof.rules.calls import publish, volume_in

csi, _ = load()


@pytest.fixture
def nodes(target) -> dict:
    """Instance id -> the node endpoint serving it, one per zone."""
    if not target.nodes:
        pytest.skip(f"profile {target.profile.name!r} runs no node endpoint outside a cluster (its node side is a "
                    "stand-in); on kind the cluster suites check its node side")
    assert len(target.nodes) == len(target.zones), (f"expected a node endpoint per zone ({len(target.zones)}), "
                                                    f"have {len(target.nodes)}")
    return target.nodes


def node_info(endpoint):
    return endpoint.NodeGetInfo(csi.NodeGetInfoRequest(), timeout=60)


def test_node_get_info_names_its_instances_zone_under_every_zone_key(target, nodes):
    """CSI NodeGetInfo: accessible_topology is where volumes are accessible from the node.
    A cloud disk attaches only in its instance's zone, so under every zone key the driver
    reports (its own and the well-known one) the zone MUST be the instance's in ECS."""
    for instance_id, endpoint in nodes.items():
        zone = target.cloud.describe_instance(instance_id)["ZoneId"]
        segments = dict(node_info(endpoint).accessible_topology.segments)
        wrong = {key: segments.get(key) for key in target.profile.zone_keys if segments.get(key) != zone}
        assert not wrong, (f"CSI NodeGetInfo of the node on {instance_id} (in {zone} in ECS): accessible_topology "
                           f"names {wrong} (all of {segments})")


def test_node_get_info_limits_the_node_to_what_its_instance_can_hold(target, nodes):
    """CSI NodeGetInfo: max_volumes_per_node is how many volumes the CO may publish to the
    node. The scheduler trusts it: above what the instance's type can hold, a pod is sent
    to a full node and its disk's attach fails. It MUST be positive and at most the type's
    disk quantity in ECS."""
    if target.profile.attach_limit != "reported":
        pytest.skip(f"profile {target.profile.name!r} states its node plugin reports no attach limit")
    for instance_id, endpoint in nodes.items():
        limit = node_info(endpoint).max_volumes_per_node
        holds = target.cloud.disk_quantity(instance_id)
        assert 0 < limit <= holds, (f"CSI NodeGetInfo of the node on {instance_id}: max_volumes_per_node is {limit}, "
                                    f"its instance type holds {holds} data disks")


def test_the_node_id_is_what_publishes_to_the_nodes_instance(target, volumes, nodes):
    """CSI NodeGetInfo: node_id is what the CO passes to ControllerPublishVolume to reach
    the node. Published to that id, the disk MUST be attached to the node's own instance."""
    for instance_id, endpoint in nodes.items():
        zone = target.cloud.describe_instance(instance_id)["ZoneId"]
        volume = volume_in(target, volumes, zone)
        node_id = node_info(endpoint).node_id
        publish(target, volume.volume_id, node_id)
        assert target.holders(volume.volume_id) == [instance_id], (
            f"CSI NodeGetInfo of the node on {instance_id} says node_id {node_id!r}; published to it, disk "
            f"{volume.volume_id} is attached to {target.holders(volume.volume_id) or 'nothing'}")
