"""What an experiment's activities act on, resolved from its ``configuration``: the
cluster (through its zoneproof provider, which alone can cut a node's power), the fake
ECS behind its driver, the driver profile, and the namespace the workload control made.

Configuration keys:
- ``zoneproof_cluster``: name of a local zoneproof cluster (default ``zoneproof``);
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

from zoneproof.cluster.base import ClusterError
from zoneproof.cluster.local import LocalProvider
from zoneproof.cluster.spec import DEFAULT_CLUSTER_NAME
from zoneproof.csi.deploy import LocalDriver
from zoneproof.ecs.admin import EcsAdmin
from zoneproof.oracle import Verdict, check, take_snapshot
from zoneproof.profile import DriverProfile, load_profile

log = logging.getLogger("zoneproof.chaos")  # shown on the chaos console by the workload control


@dataclass
class Target:
    provider: LocalProvider
    profile: DriverProfile

    @property
    def api(self) -> client.ApiClient:
        return self.provider.api_client

    @cached_property
    def ecs(self) -> EcsAdmin:
        driver = LocalDriver(self.provider)
        if not driver.is_up():
            raise ActivityFailed(f"no driver is deployed in cluster {self.provider.spec.name!r}; "
                                 "run `zoneproof driver up` first")
        return EcsAdmin(driver.ecs_endpoint)

    def verdict(self, namespace: str) -> Verdict:
        return check(take_snapshot(self.api, self.ecs.state(), namespace), driver=self.profile.driver)


def target(configuration: dict | None) -> Target:
    """A fresh view per activity (cheap: two small files and a client), so that nothing
    stale survives a cluster or driver that was restarted between experiments."""
    configuration = configuration or {}
    name = configuration.get("zoneproof_cluster") or DEFAULT_CLUSTER_NAME
    profile = configuration.get("zoneproof_driver_profile") or "reference"
    try:
        provider = LocalProvider.attach(name)
    except ClusterError as err:
        raise ActivityFailed(f"{err}; set zoneproof_cluster (env ZONEPROOF_CLUSTER) to a running "
                             "cluster, or start one with `zoneproof cluster up`") from None
    return Target(provider, load_profile(profile))


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
                                                    context=os.environ.get("KUBERNETES_CONTEXT")).configuration.host
    except (OSError, ValueError, kube_config.ConfigException) as err:
        raise ActivityFailed(f"cannot use the kubeconfig {path} that chaostoolkit-kubernetes reads: {err}; run "
                             f"`eval \"$(zoneproof cluster env --name {t.provider.spec.name})\"`") from None
    if server.rstrip("/") != wanted.rstrip("/"):
        raise ActivityFailed(f"$KUBECONFIG ({path}) points at {server}, not at cluster "
                             f"{t.provider.spec.name!r} ({wanted}); run "
                             f"`eval \"$(zoneproof cluster env --name {t.provider.spec.name})\"` first")
