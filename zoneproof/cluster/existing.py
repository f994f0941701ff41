"""A cluster zoneproof did not make, reached through a kubeconfig: a user's staging
cluster, a cloud cluster, or a local cluster started on its own.

Zones, region and nodes are read from the nodes' labels. zoneproof creates and deletes
only its own namespaces and objects there; it never starts or deletes the cluster, and
the driver under test is whatever runs there. A power cut goes through the cloud, as ECS
``StopInstances`` (``ForceStop``) on the node's instance, and power returns with
``StartInstances``; the endpoint and credentials come from the environment (see
:mod:`zoneproof.cloud`)."""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

from kubernetes import client, config

from zoneproof import labels
from zoneproof.cloud import CloudAccess, CloudConfigError
from zoneproof.cluster.base import ClusterError, ClusterProvider
from zoneproof.cluster.nodes import instance_of
from zoneproof.cluster.ref import ClusterRef
from zoneproof.cluster.spec import ClusterSpec, Timings

log = logging.getLogger(__name__)

# An existing cluster's node-lifecycle timings are its own; waits assume upstream's.
UPSTREAM_TIMINGS = Timings(node_monitor_grace_period=50, node_monitor_period=5, node_lease_duration=40,
                           node_status_update_frequency=10, not_ready_toleration=300, unreachable_toleration=300,
                           node_eviction_rate=0.1)


class ExistingProvider(ClusterProvider):
    def __init__(self, kubeconfig: str | Path, context: str | None = None, *, cloud: CloudAccess | None = None):
        self._kubeconfig = Path(kubeconfig).expanduser()
        self.context = context
        self._cloud = cloud
        if not self._kubeconfig.is_file():
            raise ClusterError(f"--kubeconfig {self._kubeconfig}: no such file")

    @property
    def ref(self) -> ClusterRef:
        return ClusterRef("existing", kubeconfig=str(self._kubeconfig), context=self.context or "")

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    @cached_property
    def api_client(self) -> client.ApiClient:
        try:
            return config.new_client_from_config(config_file=str(self._kubeconfig), context=self.context)
        except config.ConfigException as err:
            raise ClusterError(f"kubeconfig {self._kubeconfig}"
                               f"{f' context {self.context!r}' if self.context else ''}: {err}") from None

    @cached_property
    def spec(self) -> ClusterSpec:
        """The cluster as its nodes describe it: zones and region from their labels."""
        nodes = self.core.list_node().items
        zones = sorted({(n.metadata.labels or {}).get(labels.ZONE, "") for n in nodes} - {""})
        regions = sorted({(n.metadata.labels or {}).get(labels.REGION, "") for n in nodes} - {""})
        unlabelled = sorted(n.metadata.name for n in nodes if not (n.metadata.labels or {}).get(labels.ZONE))
        if unlabelled:
            raise ClusterError(f"nodes without a {labels.ZONE} label: {', '.join(unlabelled)}; every node of a "
                               "cluster under test must state its zone")
        if len(regions) != 1:
            raise ClusterError(f"the nodes must state one region under {labels.REGION}; found "
                               f"{', '.join(regions) or 'none'}")
        per_zone = min(sum(1 for n in nodes if n.metadata.labels[labels.ZONE] == z) for z in zones) if zones else 0
        name = self.context or config.list_kube_config_contexts(config_file=str(self._kubeconfig))[1]["name"]
        return ClusterSpec(name=name, region=regions[0], zones=tuple(zones), nodes_per_zone=per_zone,
                           timings=UPSTREAM_TIMINGS)

    @cached_property
    def cloud(self) -> CloudAccess:
        if self._cloud is not None:
            return self._cloud
        try:
            return CloudAccess.from_env(self.spec.region)
        except CloudConfigError as err:
            raise ClusterError(str(err)) from None

    def is_up(self) -> bool:
        try:
            self.core.list_namespace(limit=1, _request_timeout=5)
        except Exception:  # noqa: BLE001 - any failure to answer means "not up"
            return False
        return True

    def up(self) -> None:
        """An existing cluster is not started by zoneproof: check that it answers and that
        it has zones to test."""
        if not self.is_up():
            raise ClusterError(f"the cluster of {self._kubeconfig} does not answer")
        if len(self.spec.zones) < 2:
            raise ClusterError(f"the cluster has {len(self.spec.zones)} zone(s) ({', '.join(self.spec.zones)}); "
                               "zonal placement needs at least 2")

    def down(self) -> None:
        """Never deletes a cluster zoneproof did not make; only the test's own objects go."""

    def _instance(self, name: str) -> str:
        return instance_of(self.core.read_node(name))

    def stop_node(self, name: str) -> None:
        self.cloud.stop_instances([self._instance(name)])
        log.info("node %s: its instance stopped through the ECS API", name)

    def start_node(self, name: str) -> None:
        self.cloud.start_instances([self._instance(name)])
        log.info("node %s: its instance started through the ECS API", name)
