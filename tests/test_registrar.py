"""The kwok nodes' stand-in for the kubelet: a driver registered again on the same Node
under another node id or other topology keys replaces its entry (removed, then installed,
as the kubelet does when a restarted plugin's socket goes and comes back)."""

from __future__ import annotations

import pytest
from kubernetes import client

from zoneproof.deploy.registrar import identity_changed

DRIVER = "diskplugin.csi.alibabacloud.com"
KEYS = ["topology.diskplugin.csi.alibabacloud.com/zone", "topology.kubernetes.io/zone"]


def csinode(*drivers: client.V1CSINodeDriver) -> client.V1CSINode:
    return client.V1CSINode(metadata=client.V1ObjectMeta(name="n1"), spec=client.V1CSINodeSpec(drivers=list(drivers)))


def driver(name: str = DRIVER, node_id: str = "i-1", keys: list[str] = KEYS) -> client.V1CSINodeDriver:
    return client.V1CSINodeDriver(name=name, node_id=node_id, topology_keys=list(keys))


def test_the_same_identity_another_drivers_or_none_is_no_change():
    assert not identity_changed(csinode(driver()), driver(keys=list(reversed(KEYS))))
    assert not identity_changed(csinode(driver(name="other.csi", node_id="x")), driver())
    assert not identity_changed(csinode(), driver())


@pytest.mark.parametrize("again", [driver(node_id="cn-beijing.i-1"), driver(keys=KEYS[:1])],
                         ids=["node-id", "topology-keys"])
def test_another_node_id_or_other_keys_is_a_change(again):
    assert identity_changed(csinode(driver()), again)
