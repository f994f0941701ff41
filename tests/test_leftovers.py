"""What a run leaves in the cluster is found: a check of absence must see what is there."""

import pytest

from zoneproof import leftovers
from zoneproof.namespaces import create_namespace, delete_namespace

pytestmark = pytest.mark.cluster


def test_a_test_namespace_and_a_volume_left_behind_are_named(cluster):
    name = create_namespace(cluster.core, "zp-left-behind", "test_leftovers")
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "zp-left-behind"},
          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                   "csi": {"driver": "example.com", "volumeHandle": "d-left"}}}
    cluster.core.create_persistent_volume(pv)
    try:
        found = leftovers.in_cluster(cluster.api_client, timeout=1)
        assert name in found["namespaces"], found
        assert "zp-left-behind" in found["persistent volumes"], found
    finally:
        delete_namespace(cluster.core, name)
        cluster.core.delete_persistent_volume("zp-left-behind")
    # Deleted, they go (the namespace after terminating): the wait sees them gone.
    found = leftovers.in_cluster(cluster.api_client, timeout=60)
    assert name not in found["namespaces"] and "zp-left-behind" not in found["persistent volumes"], found
