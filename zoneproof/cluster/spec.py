"""What cluster to build: zones, nodes and the Kubernetes timings that decide how fast
a lost node is noticed. Validated before anything starts, so bad options cost nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace

from zoneproof.bugs import BugError, living_in

DEFAULT_REGION = "cn-beijing"
DEFAULT_ZONES = ("cn-beijing-a", "cn-beijing-b", "cn-beijing-c")
DEFAULT_NODES_PER_ZONE = 2
DEFAULT_CLUSTER_NAME = "zoneproof"
# kind clusters: where the node image comes from, and how privileged containers are run
NODE_IMAGE_CHOICES = ("auto", "stock", "build")
PRIVILEGED_CHOICES = ("auto", "native", "shim")

# Zone names become part of node names, so they must be DNS-1123 labels.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_ZONE_NAME = 40  # leaves room for "-node-NNN" within a 63-character label


class SpecError(ValueError):
    """The requested cluster cannot be built; the message names the bad option."""


@dataclass(frozen=True)
class Timings:
    """Failure-detection timings, in seconds.

    Upstream defaults notice a dead node after 50 s and evict its pods after 300 s;
    these defaults notice it in about 9 s and evict after 30 s, so chaos runs stay short
    while keeping the same mechanisms. ``heartbeat_factor`` scales every heartbeat value
    (lease, status updates, monitor period and grace period) at once, like kwokctl's flag.
    """

    node_monitor_grace_period: float = 8.0  # kube-controller-manager --node-monitor-grace-period
    node_monitor_period: float = 1.0  # kube-controller-manager --node-monitor-period
    node_lease_duration: int = 8  # node Lease duration; kwok renews it every quarter of this
    node_status_update_frequency: float = 2.0  # how often kwok refreshes node status
    heartbeat_factor: float = 1.0
    not_ready_toleration: int = 30  # kube-apiserver --default-not-ready-toleration-seconds
    unreachable_toleration: int = 30  # kube-apiserver --default-unreachable-toleration-seconds
    node_eviction_rate: float = 1.0  # nodes per second tainted for eviction (upstream 0.1)

    def scaled(self) -> "Timings":
        """The timings with the heartbeat factor applied (factor 1 afterwards)."""
        f = self.heartbeat_factor
        return replace(
            self,
            node_monitor_grace_period=self.node_monitor_grace_period * f,
            node_monitor_period=self.node_monitor_period * f,
            node_lease_duration=max(1, round(self.node_lease_duration * f)),
            node_status_update_frequency=self.node_status_update_frequency * f,
            heartbeat_factor=1.0,
        )

    @property
    def not_ready_bound(self) -> float:
        """Seconds within which a stopped node must be reported NotReady/Unknown:
        the grace period, one monitor period to notice, and slack for API latency."""
        t = self.scaled()
        return t.node_monitor_grace_period + t.node_monitor_period + 5.0

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value <= 0 and f.name not in ("not_ready_toleration", "unreachable_toleration"):
                raise SpecError(f"timing {f.name} must be positive, got {value}")
            if value < 0:
                raise SpecError(f"timing {f.name} must not be negative, got {value}")
        t = self.scaled()
        if t.node_monitor_grace_period <= t.node_lease_duration / 4:
            raise SpecError(
                f"node_monitor_grace_period ({t.node_monitor_grace_period:g}s) must exceed the lease "
                f"renew interval ({t.node_lease_duration / 4:g}s), or healthy nodes flap NotReady"
            )
        if t.node_monitor_grace_period <= t.node_status_update_frequency:
            raise SpecError(
                f"node_monitor_grace_period ({t.node_monitor_grace_period:g}s) must exceed "
                f"node_status_update_frequency ({t.node_status_update_frequency:g}s)"
            )


@dataclass(frozen=True)
class ClusterSpec:
    name: str = DEFAULT_CLUSTER_NAME
    region: str = DEFAULT_REGION
    zones: tuple[str, ...] = DEFAULT_ZONES
    nodes_per_zone: int = DEFAULT_NODES_PER_ZONE
    timings: Timings = field(default_factory=Timings)
    # Cluster bugs of zoneproof.bugs the control plane is configured with, on purpose.
    bugs: tuple[str, ...] = ()

    def validate(self) -> "ClusterSpec":
        if not _DNS_LABEL.match(self.name) or len(self.name) > 40:
            raise SpecError(f"cluster name {self.name!r} must be a lowercase DNS label of at most 40 characters")
        if not _DNS_LABEL.match(self.region) or len(self.region) > 63:
            raise SpecError(f"region {self.region!r} must be a lowercase DNS label (letters, digits, '-')")
        if not self.zones:
            raise SpecError("no zones given: name at least one zone (e.g. --zones cn-beijing-a,cn-beijing-b)")
        seen: set[str] = set()
        for zone in self.zones:
            if not zone:
                raise SpecError(f"empty zone name in {list(self.zones)}")
            if not _DNS_LABEL.match(zone) or len(zone) > MAX_ZONE_NAME:
                raise SpecError(
                    f"zone {zone!r} must be a lowercase DNS label of at most {MAX_ZONE_NAME} characters "
                    "(letters, digits, '-'), because node names are built from it"
                )
            if zone in seen:
                raise SpecError(f"zone {zone!r} is listed twice in {list(self.zones)}")
            seen.add(zone)
        if not isinstance(self.nodes_per_zone, int) or self.nodes_per_zone < 1:
            raise SpecError(f"nodes per zone must be at least 1, got {self.nodes_per_zone!r}")
        if self.nodes_per_zone > 100:
            raise SpecError(f"nodes per zone must be at most 100, got {self.nodes_per_zone}")
        self.timings.validate()
        try:
            living_in(self.bugs, "cluster", where="the cluster's configuration",
                      hint="; the others go to `zoneproof driver up`")
        except BugError as err:
            raise SpecError(str(err)) from None
        return self

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "region": self.region,
            "zones": list(self.zones),
            "nodes_per_zone": self.nodes_per_zone,
            "timings": {f.name: getattr(self.timings, f.name) for f in fields(self.timings)},
            "bugs": list(self.bugs),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ClusterSpec":
        return cls(
            name=data["name"],
            region=data["region"],
            zones=tuple(data["zones"]),
            nodes_per_zone=data["nodes_per_zone"],
            timings=Timings(**data.get("timings", {})),
            bugs=tuple(data.get("bugs", ())),
        )


def parse_zones(text: str) -> tuple[str, ...]:
    """Split a comma list of zones; empty items are kept so validation can name them."""
    text = text.strip()
    if not text:
        return ()
    return tuple(z.strip() for z in text.split(","))
