"""Cluster providers behind one interface (see :class:`ClusterProvider`)."""

from zoneproof.cluster.base import ClusterError, ClusterProvider, NodeState
from zoneproof.cluster.existing import ExistingProvider
from zoneproof.cluster.local import LocalProvider
from zoneproof.cluster.spec import ClusterSpec, SpecError, Timings

PROVIDERS = {"local": LocalProvider, "existing": ExistingProvider}

__all__ = ["ClusterError", "ClusterProvider", "ClusterSpec", "ExistingProvider", "LocalProvider", "NodeState", "PROVIDERS",
           "SpecError", "Timings"]
