"""Chaos Toolkit extension of zoneproof: the workload control, actions and probes its
experiments (``experiments/*.yaml``, shipped with the package) call. Each function takes
the experiment's ``configuration`` and reaches the cluster through zoneproof's providers
and the cloud through the ECS API. ``chaos discover zoneproof_chaos`` lists them."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from chaoslib.discovery import discover_actions, discover_probes, initialize_discovery_result
from chaoslib.types import DiscoveredActivities, Discovery

try:
    __version__ = version("zoneproof")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__", "discover"]


def discover(discover_system: bool = True) -> Discovery:
    """What this extension offers, for `chaos discover`: its actions and probes. There is no
    system to discover: the cluster is named by the experiment's configuration."""
    discovery = initialize_discovery_result("zoneproof-chaos", __version__, "zoneproof")
    discovery["activities"].extend(load_exported_activities())
    return discovery


def load_exported_activities() -> list[DiscoveredActivities]:
    activities: list[DiscoveredActivities] = []
    activities.extend(discover_actions("zoneproof_chaos.actions"))
    activities.extend(discover_probes("zoneproof_chaos.probes"))
    return activities
