"""Fixtures for the project's own tests of the local provider."""

import pytest

from zoneproof.fixtures.cluster import provide_cluster
from zoneproof.cluster.spec import ClusterSpec, Timings

# Short tolerations so that eviction (and so Terminating pods) shows within seconds.
TEST_TIMINGS = Timings(not_ready_toleration=5, unreachable_toleration=5)


@pytest.fixture(scope="session")
def cluster():
    """The default three-zone, two-nodes-per-zone cluster, under its own name so that a
    user's running cluster is left alone."""
    spec = ClusterSpec(name="zp-selftest", timings=TEST_TIMINGS).validate()
    yield from provide_cluster(spec, fresh=True)
