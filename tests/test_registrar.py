"""The kwok nodes' stand-in for the kubelet refuses what the kubelet refuses: a driver
registered again on the same Node under another node id or other topology keys."""

from __future__ import annotations

import pytest
from kubernetes import client

from zoneproof.deploy.registrar import RegistrationRefused, refuse_changed_identity

DRIVER = "diskplugin.csi.alibabacloud.com"
KEYS = ["topology.diskplugin.csi.alibabacloud.com/zone", "topology.kubernetes.io/zone"]


def csinode(*drivers: client.V1CSINodeDriver) -> client.V1CSINode:
    return client.V1CSINode(metadata=client.V1ObjectMeta(name="n1"), spec=client.V1CSINodeSpec(drivers=list(drivers)))


def driver(name: str = DRIVER, node_id: str = "i-1", keys: list[str] = KEYS) -> client.V1CSINodeDriver:
    return client.V1CSINodeDriver(name=name, node_id=node_id, topology_keys=sorted(keys))


def test_the_same_identity_or_another_drivers_registers_again():
    refuse_changed_identity("n1", csinode(driver()), driver())
    refuse_changed_identity("n1", csinode(driver(name="other.csi", node_id="x")), driver())
    refuse_changed_identity("n1", csinode(), driver())


@pytest.mark.parametrize("again, named", [
    (driver(node_id="cn-beijing.i-1"), "another node id ('cn-beijing.i-1'; its CSINode holds 'i-1')"),
    (driver(keys=KEYS[:1]), "another topology keys"),
], ids=["node-id", "topology-keys"])
def test_another_identity_on_the_same_node_is_refused_naming_both(again, named):
    with pytest.raises(RegistrationRefused, match="node n1: the kubelet refuses") as refused:
        refuse_changed_identity("n1", csinode(driver()), again)
    assert named in str(refused.value)
