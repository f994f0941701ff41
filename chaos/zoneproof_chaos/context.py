"""What an experiment's activities act on, resolved from its ``configuration``: the
cluster (through its zoneproof provider), the cloud (the ECS API, through which power is
cut; the fake ECS's admin API for faults and its audit), the driver profile, and the
namespace the workload control made.

Configuration keys:
- ``zoneproof_provider``: ``local`` (default), ``kind`` or ``existing``;
- ``zoneproof_cluster``: name of a local or kind zoneproof cluster (default ``zoneproof``);
- ``zoneproof_kubeconfig``, ``zoneproof_context``: the existing cluster (the cloud then
  comes from ``ECS_ENDPOINT`` and the other variables of :mod:`zoneproof.cloud`);
- ``zoneproof_driver_profile``: driver profile name or file (default ``reference``);
- ``namespace``, ``replicas``, ``target_zone``, ``target_node``, ``other_zone``: set by
  the workload control once the workload is placed (a preset ``namespace`` is used as is).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cached_property

from chaoslib.exceptions import ActivityFailed
from kubernetes import client, config as kube_config

from zoneproof.cloud import CloudAccess
from zoneproof.cluster.base import ClusterError, ClusterProvider
from zoneproof.cluster.nodes import instance_of
from zoneproof.cluster.ref import ClusterRef
from zoneproof.deploy.driver import cloud_of
from zoneproof.ecs.admin import EcsAdmin
from zoneproof.oracle import Verdict, check, take_snapshot
from zoneproof.profile import DriverProfile, load_profile

log = logging.getLogger("zoneproof.chaos")  # shown on the chaos console by the workload control


@dataclass
class Target:
    provider: ClusterProvider
    profile: DriverProfile

    @property
    def api(self) -> client.ApiClient:
        return self.provider.api_client

    @cached_property
    def cloud(self) -> CloudAccess:
        try:
            return cloud_of(self.provider)
        except ClusterError as err:  # no driver deployed, or no cloud variables set
            raise ActivityFailed(str(err)) from None

    @cached_property
    def ecs(self) -> EcsAdmin:
        """The fake ECS's admin API: faults and the audit log, which no cloud API offers."""
        if self.cloud.admin is None:
            raise ActivityFailed(f"this activity needs the fake ECS's admin API (faults, audit); the ECS endpoint "
                                 f"{self.cloud.endpoint} is not the fake")
        return self.cloud.admin

    def instances(self, names: list[str]) -> dict[str, str]:
        """Node name -> ECS instance id."""
        try:
            return {name: instance_of(self.provider.core.read_node(name)) for name in names}
        except ClusterError as err:
            raise ActivityFailed(str(err)) from None

    def verdict(self, namespace: str) -> Verdict:
        return check(take_snapshot(self.api, self.cloud, namespace, driver=self.profile.driver),
                     driver=self.profile.driver)


def target(configuration: dict | None) -> Target:
    """A fresh view per activity (cheap: two small files and a client), so that nothing
    stale survives a cluster or driver that was restarted between experiments."""
    configuration = configuration or {}
    profile = configuration.get("zoneproof_driver_profile") or "reference"
    try:
        provider = ClusterRef.from_chaos_configuration(configuration, dict(os.environ)).attach()
    except ClusterError as err:
        raise ActivityFailed(f"{err}; set zoneproof_cluster (env ZONEPROOF_CLUSTER) to a running "
                             "cluster, or start one with `zoneproof cluster up`") from None
    return Target(provider, load_profile(profile))


def configuration_for(cluster: ClusterProvider, profile: str) -> dict[str, str]:
    """The configuration keys that point an experiment at a cluster and a driver profile."""
    return {**cluster.ref.chaos_configuration(), "zoneproof_driver_profile": profile}



def configuration_env(cluster: ClusterProvider, profile: str, environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with the variables the experiments' configuration reads set for a cluster
    and a profile (for `chaos run`). KUBERNETES_CONTEXT is set only to name a context: an
    empty one is an error to the kubernetes client."""
    env = {k: v for k, v in environ.items() if k != "KUBERNETES_CONTEXT"}
    env.update(KUBECONFIG=str(cluster.kubeconfig), ZONEPROOF_DRIVER_PROFILE=profile, **cluster.ref.environment())
    return env


def namespace(configuration: dict | None) -> str:
    value = (configuration or {}).get("namespace")
    if not value:
        raise ActivityFailed("configuration has no namespace: the zoneproof workload control must be in the "
                             "experiment's controls (it deploys the workload and names its namespace)")
    return value


def check_kubeconfig_matches(t: Target) -> None:
    """chaostoolkit-kubernetes activities use $KUBECONFIG; refuse to run when it points at
    another cluster than the one zoneproof breaks, or pods would be deleted elsewhere."""
    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    wanted = t.api.configuration.host
    try:
        server = kube_config.new_client_from_config(config_file=path.split(os.pathsep)[0],
                                                    context=os.environ.get("KUBERNETES_CONTEXT") or None
                                                    ).configuration.host
    except (OSError, ValueError, kube_config.ConfigException) as err:
        raise ActivityFailed(f"cannot use the kubeconfig {path} that chaostoolkit-kubernetes reads: {err}; run "
                             f"`eval \"$(zoneproof cluster env --name {t.provider.spec.name})\"`") from None
    if server.rstrip("/") != wanted.rstrip("/"):
        raise ActivityFailed(f"$KUBECONFIG ({path}) points at {server}, not at cluster "
                             f"{t.provider.spec.name!r} ({wanted}); run "
                             f"`eval \"$(zoneproof cluster env --name {t.provider.spec.name})\"` first")
