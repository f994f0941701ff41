"""Cluster providers behind one interface (see :class:`ClusterProvider`)."""

from zoneproof.cluster.base import ClusterError, ClusterProvider, NodeState
from zoneproof.cluster.existing import ExistingProvider
from zoneproof.cluster.kind import KindProvider
from zoneproof.cluster.local import LocalProvider
from zoneproof.cluster.spec import ClusterSpec, SpecError, Timings

# Providers whose clusters zoneproof makes, keeps state for and tears down.
OWN_PROVIDERS = {"local": LocalProvider, "kind": KindProvider}
PROVIDERS = {**OWN_PROVIDERS, "existing": ExistingProvider}


def attach(provider: str, name: str) -> LocalProvider | KindProvider:
    """The running cluster ``name`` made by ``provider`` (local or kind), with its spec."""
    if provider not in OWN_PROVIDERS:
        raise ClusterError(f"provider {provider!r} does not make clusters (those that do: {', '.join(OWN_PROVIDERS)})")
    return OWN_PROVIDERS[provider].attach(name)


def provider_name(cluster: ClusterProvider) -> str:
    """The name ``attach`` takes for a cluster zoneproof made."""
    return next(name for name, cls in OWN_PROVIDERS.items() if isinstance(cluster, cls))


__all__ = ["ClusterError", "ClusterProvider", "ClusterSpec", "ExistingProvider", "KindProvider", "LocalProvider",
           "NodeState", "OWN_PROVIDERS", "PROVIDERS", "SpecError", "Timings", "attach", "provider_name"]
