"""The interface every cluster provider implements (local, kind, existing).

Zone and node queries and the node-health helpers go through the Kubernetes API and are
shared; what differs per provider is how a cluster comes up and down and how a node
loses and regains power."""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_fixed

from zoneproof import labels
from zoneproof.cluster.errors import ClusterError
from zoneproof.cluster.nodes import instance_of
from zoneproof.cluster.ref import ClusterRef
from zoneproof.cluster.spec import ClusterSpec
from zoneproof.waiting import wait_for

log = logging.getLogger(__name__)


def is_conflict(err: BaseException) -> bool:
    return isinstance(err, ApiException) and err.status == 409


@dataclass(frozen=True)
class NodeState:
    name: str
    zone: str
    ready: str  # "True", "False" or "Unknown" (the Ready condition's status)
    powered: bool
    taints: tuple[str, ...]

    @property
    def is_ready(self) -> bool:
        return self.ready == "True"


def node_state(node: client.V1Node) -> NodeState:
    node_labels = node.metadata.labels or {}
    ready = "Unknown"
    for cond in (node.status.conditions or []) if node.status else []:
        if cond.type == "Ready":
            ready = cond.status
    taints = tuple(f"{t.key}:{t.effect}" for t in (node.spec.taints or []))
    return NodeState(
        name=node.metadata.name,
        zone=node_labels.get(labels.ZONE, ""),
        ready=ready,
        powered=node_labels.get(labels.POWER, labels.POWER_ON) == labels.POWER_ON,
        taints=taints,
    )


@dataclass(frozen=True)
class Capabilities:
    """What a provider's clusters can do."""

    # Nodes run kubelets that register node plugins and run containers (kind); else node
    # plugins are stood in for and no container runs (kwok).
    runs_kubelets: bool = False
    # A node deleted from the cluster can be made again under its name, as it was
    # (node-lifecycle cases need it to leave the cluster whole).
    recreates_nodes: bool = False
    # ... or as another machine in another zone (node pools that reuse names).
    rezones_nodes: bool = False
    # A node's kubelet can be cut off from the control plane while its machine keeps power
    # and its disks (a network partition, as the control plane sees one).
    partitions_nodes: bool = False


class ClusterProvider(abc.ABC):
    """A multi-zone Kubernetes cluster the suites can break and mend."""

    spec: ClusterSpec
    # What its clusters can do: suites and the deployer ask this, not which provider it is.
    capabilities: Capabilities = Capabilities()

    # --- lifecycle (provider-specific) ---
    @abc.abstractmethod
    def up(self) -> None:
        """Bring the cluster up with Ready nodes in every zone; refuse if it is already up."""

    @abc.abstractmethod
    def down(self) -> None:
        """Tear everything down: processes, ports and files. Safe to call twice."""

    @property
    @abc.abstractmethod
    def ref(self) -> "ClusterRef":
        """Which cluster this is, as one value (zoneproof.cluster.ref)."""

    @property
    @abc.abstractmethod
    def kubeconfig(self) -> Path:
        """Path of a kubeconfig with admin rights on the cluster."""

    @abc.abstractmethod
    def is_up(self) -> bool:
        """Whether the cluster exists and its API answers."""

    # --- power (provider-specific) ---
    @abc.abstractmethod
    def stop_node(self, name: str) -> None:
        """Cut a node's power: heartbeats stop and nothing on it runs or finishes."""

    @abc.abstractmethod
    def start_node(self, name: str) -> None:
        """Restore a node's power: it heartbeats again and finishes pending work."""

    def recreate_node(self, name: str, *, zone: str = "", instance_id: str = "") -> None:
        """Make a deleted node again under its name, powered on: in its zone, or (only where
        ``rezones_nodes``) in ``zone`` as instance ``instance_id`` (only where
        ``recreates_nodes``)."""
        raise ClusterError(f"{type(self).__name__} cannot make a deleted node again")

    def partition_node(self, name: str) -> None:
        """Cut the node's kubelet off, its instance left running (only where
        ``partitions_nodes``)."""
        raise ClusterError(f"{type(self).__name__} cannot cut a node's kubelet off")

    def heal_node(self, name: str) -> None:
        """End a partition: the node's kubelet reports again."""
        raise ClusterError(f"{type(self).__name__} cannot cut a node's kubelet off")

    def stop_zone(self, zone: str) -> None:
        for name in self.nodes(zone):
            self.stop_node(name)

    def start_zone(self, zone: str) -> None:
        for name in self.nodes(zone):
            self.start_node(name)

    # --- queries (shared, through the API) ---
    @cached_property
    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    @cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    def node_states(self) -> list[NodeState]:
        return sorted((node_state(n) for n in self.core.list_node().items), key=lambda s: (s.zone, s.name))

    def zones(self) -> list[str]:
        """Zones that have at least one node, from the nodes' zone labels."""
        return sorted({s.zone for s in self.node_states() if s.zone})

    def nodes(self, zone: str | None = None) -> list[str]:
        """Node names, all or those of one zone."""
        states = self.node_states()
        if zone is not None:
            if zone not in {s.zone for s in states}:
                raise ClusterError(f"no zone {zone!r} in this cluster (zones: {', '.join(self.zones())})")
            states = [s for s in states if s.zone == zone]
        return [s.name for s in states]

    def instances(self) -> dict[str, str]:
        """ECS instance id -> zone of every node (what the fake ECS must hold)."""
        out = {}
        for node in self.core.list_node().items:
            instance = instance_of(node, required=False)
            if instance:
                out[instance] = (node.metadata.labels or {}).get(labels.ZONE, "")
        return out

    def wait_nodes_ready(self, names: list[str], *, ready: bool = True, timeout: float = 60.0) -> None:
        """Wait until every named node's Ready condition is True (or, with ready=False, not True)."""
        wanted = set(names)

        def check():
            states = {s.name: s for s in self.node_states() if s.name in wanted}
            missing = wanted - states.keys()
            off = sorted(n for n, s in states.items() if s.is_ready != ready)
            summary = f"{len(wanted) - len(missing) - len(off)}/{len(wanted)} nodes {'Ready' if ready else 'NotReady'}"
            if missing:
                summary += f"; not registered: {', '.join(sorted(missing))}"
            if off:
                summary += f"; still {'not ' if ready else ''}Ready: {', '.join(off)}"
            return not missing and not off, summary

        wait_for(check, what=f"nodes to become {'Ready' if ready else 'NotReady'}", timeout=timeout)

    @retry(retry=retry_if_exception(is_conflict), stop=stop_after_attempt(10), wait=wait_fixed(0.2), reraise=True)
    def set_out_of_service(self, name: str, on: bool = True) -> None:
        """Add or remove the non-graceful-shutdown taint
        ``node.kubernetes.io/out-of-service=nodeshutdown:NoExecute`` on a node.

        Read-modify-replace with the resource version, retried on conflict, so a taint
        the node controller adds meanwhile is never lost."""
        node = self.core.read_node(name)
        taints = [t for t in (node.spec.taints or []) if t.key != labels.TAINT_OUT_OF_SERVICE]
        if on:
            taints.append(client.V1Taint(key=labels.TAINT_OUT_OF_SERVICE, value="nodeshutdown", effect="NoExecute"))
        node.spec.taints = taints or None
        self.core.replace_node(name, node)


class OwnClusterMixin:
    """What a provider that makes its clusters in a folder of its own (local, kind) shares:
    the folder's existence and whether the API answers."""

    cluster_dir: Path
    kubeconfig: Path
    core: client.CoreV1Api
    spec: ClusterSpec
    PROVIDER: str  # the name ``zoneproof cluster up --provider`` takes

    @property
    def ref(self) -> ClusterRef:
        return ClusterRef(self.PROVIDER, self.spec.name)

    def exists(self) -> bool:
        return self.cluster_dir.exists()

    def is_up(self) -> bool:
        if not self.kubeconfig.is_file():
            return False
        try:
            self.core.list_namespace(limit=1, _request_timeout=5)
        except Exception:  # noqa: BLE001 - any failure to answer means "not up"
            return False
        return True
