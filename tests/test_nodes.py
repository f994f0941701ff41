"""Simulated nodes look like Alibaba ACK workers and map to stable ECS instance ids."""

import re

import pytest

from zoneproof import labels
from zoneproof.cluster.errors import ClusterError
from zoneproof.cluster.nodes import instance_id, machine_made_again, node_manifest, plan_nodes
from zoneproof.cluster.spec import ClusterSpec


def test_plan_covers_every_zone_with_the_requested_count():
    spec = ClusterSpec(zones=("z1", "z2", "z3", "z4"), nodes_per_zone=1)
    nodes = plan_nodes(spec)
    assert [n.zone for n in nodes] == ["z1", "z2", "z3", "z4"]
    assert len({n.name for n in nodes}) == 4
    assert len({n.instance_id for n in nodes}) == 4


def test_instance_ids_are_ecs_shaped_and_stable():
    a = instance_id("c", "cn-beijing", "n1")
    assert re.fullmatch(r"i-[0-9a-z]{20}", a)
    assert a == instance_id("c", "cn-beijing", "n1")
    assert a != instance_id("c", "cn-beijing", "n2")
    assert a != instance_id("other", "cn-beijing", "n1")


def test_node_manifest_has_every_ack_label_and_the_provider_id():
    node = plan_nodes(ClusterSpec(region="cn-hangzhou", zones=("cn-hangzhou-h",), nodes_per_zone=1))[0]
    m = node_manifest(node)
    lab = m["metadata"]["labels"]
    assert lab[labels.ZONE] == lab[labels.ZONE_DEPRECATED] == lab[labels.DISK_ZONE] == "cn-hangzhou-h"
    assert lab[labels.REGION] == lab[labels.REGION_DEPRECATED] == "cn-hangzhou"
    assert lab[labels.INSTANCE_ID] == node.instance_id
    assert lab[labels.POWER] == labels.POWER_ON
    assert m["spec"]["providerID"] == f"alicloud://cn-hangzhou.{node.instance_id}"
    assert m["metadata"]["annotations"][labels.CONTROLLER_MANAGED_ATTACH_DETACH] == "true"


def test_a_nodes_instance_is_its_label_else_its_provider_id_as_model_or_as_sent():
    from kubernetes import client

    from zoneproof.cluster.errors import ClusterError
    from zoneproof.cluster.nodes import instance_of

    sent = {"metadata": {"name": "n-1", "labels": {}}, "spec": {"providerID": "alicloud://cn-beijing.i-abc"}}
    assert instance_of(sent) == "i-abc"
    sent["metadata"]["labels"][labels.INSTANCE_ID] = "i-label"
    assert instance_of(sent) == "i-label"
    modelled = client.V1Node(metadata=client.V1ObjectMeta(name="n-2", labels={}), spec=client.V1NodeSpec())
    assert instance_of(modelled, required=False) == ""
    with pytest.raises(ClusterError, match="node n-2 names no ECS instance"):
        instance_of(modelled)


def test_a_node_is_made_again_as_planned_or_as_another_machine_in_another_zone():
    spec = ClusterSpec(name="zp", zones=("za", "zb"), nodes_per_zone=1)
    planned = plan_nodes(spec)
    assert machine_made_again(planned, spec, "za-node-0") == planned[0]
    moved = machine_made_again(planned, spec, "za-node-0", "zb", "i-new")
    assert (moved.name, moved.zone, moved.instance_id, moved.region) == ("za-node-0", "zb", "i-new", spec.region)


@pytest.mark.parametrize("name, zone, instance, message", [
    ("zc-node-0", "", "", "no node 'zc-node-0' is planned"),
    ("za-node-0", "zc", "i-new", "zone 'zc' is not a zone of cluster 'zp' (za, zb)"),
    ("za-node-0", "zb", "", "give its zone and instance id"),
    ("za-node-0", "", "i-new", "give its zone and instance id"),
])
def test_a_node_made_again_wrongly_is_refused_naming_why(name, zone, instance, message):
    spec = ClusterSpec(name="zp", zones=("za", "zb"), nodes_per_zone=1)
    with pytest.raises(ClusterError, match=re.escape(message)):
        machine_made_again(plan_nodes(spec), spec, name, zone, instance)
