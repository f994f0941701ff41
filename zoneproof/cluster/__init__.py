"""Cluster providers behind one interface (see :class:`ClusterProvider`).

The providers are imported on first use: a process that needs only the cluster's spec
(the fake ECS, the reference driver's processes) starts without loading the Kubernetes and
cloud clients it never calls, which takes seconds on a busy machine."""

from __future__ import annotations

import importlib

from zoneproof.cluster.errors import ClusterError
from zoneproof.cluster.spec import ClusterSpec, SpecError, Timings

# name -> module that defines it, imported when the name is first asked for
_LAZY = {"ClusterProvider": "base", "NodeState": "base", "ExistingProvider": "existing",
         "KindProvider": "kind", "LocalProvider": "local"}


def _load(name: str):
    return getattr(importlib.import_module(f"zoneproof.cluster.{_LAZY[name]}"), name)


def _own_providers() -> dict:
    """Providers whose clusters zoneproof makes, keeps state for and tears down."""
    return {"local": _load("LocalProvider"), "kind": _load("KindProvider")}


def __getattr__(name: str):
    if name in _LAZY:
        return _load(name)
    if name == "OWN_PROVIDERS":
        return _own_providers()
    if name == "PROVIDERS":
        return {**_own_providers(), "existing": _load("ExistingProvider")}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def new_cluster(provider: str, spec: ClusterSpec, *, node_image: str = "auto", privileged: str = "auto"):
    """A cluster for ``up``: local, or kind with its node image and privilege choices."""
    if provider == "kind":
        return _load("KindProvider")(spec, node_image=node_image, privileged=privileged)
    if (node_image, privileged) != ("auto", "auto"):
        raise ClusterError("--node-image and --privileged go with --provider kind")
    return _own_providers()[provider](spec)


def attach(provider: str, name: str):
    """The running cluster ``name`` made by ``provider`` (local or kind), with its spec."""
    own = _own_providers()
    if provider not in own:
        raise ClusterError(f"provider {provider!r} does not make clusters (those that do: {', '.join(own)})")
    return own[provider].attach(name)


__all__ = ["ClusterError", "ClusterProvider", "ClusterSpec", "ExistingProvider", "KindProvider", "LocalProvider",
           "NodeState", "OWN_PROVIDERS", "PROVIDERS", "SpecError", "Timings", "attach", "new_cluster"]
