"""The article's objects rendered from parameters: zones, replicas, sizes, driver profile.

The YAML bases live beside this module (package data); nothing there names a zone. Replica N of a
static scheme is placed in ``zones[N % len(zones)]``, as the article places web-0, web-1
and web-2 in zones a, b and c.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from importlib import resources

import yaml

from zoneproof import labels
from zoneproof.profile import DriverProfile

BASES = resources.files(__name__)
STATIC_STYLES = ("nodeaffinity", "zone-labels")
STORAGE_CLASS_NAMES = {"wait-for-first-consumer": "csi-disk-topology", "dynamic-zoneid": "csi-disk-multizone"}
TEMPLATE = "disk-ssd"
STATEFULSET = "web"


class ManifestError(ValueError):
    """A manifest cannot be used as given; the message says what to change."""


def _base(name: str) -> dict:
    return yaml.safe_load(BASES.joinpath(name).read_text())


def check_manifest(obj: dict, source: str = "manifest") -> dict:
    """Refuse objects Kubernetes no longer serves, saying what to change (the article's
    StatefulSets use apps/v1beta2)."""
    kind, version = obj.get("kind"), obj.get("apiVersion")
    if kind in ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet") and version in (
            "apps/v1beta1", "apps/v1beta2", "extensions/v1beta1"):
        name = (obj.get("metadata") or {}).get("name", "?")
        hint = "" if (obj.get("spec") or {}).get("selector") else ", and add spec.selector.matchLabels " \
            "matching the pod template's labels (apps/v1 requires it)"
        raise ManifestError(f"{source}: {kind} {name!r} uses apiVersion {version}, which Kubernetes removed in "
                            f"1.16; change it to apps/v1{hint}")
    return obj


def load_manifests(text: str, source: str = "manifest") -> list[dict]:
    """Parse a YAML stream of objects, refusing removed API versions with a clear message."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as err:
        raise ManifestError(f"{source}: not valid YAML: {err}") from None
    return [check_manifest(d, source) for d in docs]


def service() -> dict:
    return _base("service.yaml")


POD_MANAGEMENT_POLICIES = ("OrderedReady", "Parallel")


def statefulset(replicas: int, storage_class: str, size: str = "20Gi", name: str = STATEFULSET,
                pod_management: str = "OrderedReady") -> dict:
    """The article's StatefulSet. ``pod_management`` ``Parallel`` lets pods start and scale
    without waiting for lower ordinals, which chaos runs need: with ``OrderedReady`` one pod
    stranded in a lost zone blocks every scale-up behind it."""
    if pod_management not in POD_MANAGEMENT_POLICIES:
        raise ManifestError(f"podManagementPolicy {pod_management!r} is not one of "
                            f"{', '.join(POD_MANAGEMENT_POLICIES)}")
    sts = _base("statefulset.yaml")
    sts["metadata"]["name"] = name
    sts["spec"]["replicas"] = replicas
    if pod_management != "OrderedReady":
        sts["spec"]["podManagementPolicy"] = pod_management
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    claim["storageClassName"] = storage_class
    claim["resources"]["requests"]["storage"] = size
    return sts


def pod_disruption_budget(max_unavailable: int, name: str = STATEFULSET) -> dict:
    """A PodDisruptionBudget over the StatefulSet's pods: drains evict at most
    ``max_unavailable`` of them at a time."""
    sts = _base("statefulset.yaml")
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"maxUnavailable": max_unavailable, "selector": sts["spec"]["selector"]}}


def storage_class(profile: DriverProfile, scheme: str, zones: list[str] | tuple[str, ...],
                  name: str | None = None) -> dict:
    return profile.storage_class(scheme, name or STORAGE_CLASS_NAMES[scheme], zones)


def static_zone(zones: list[str] | tuple[str, ...], ordinal: int) -> str:
    return zones[ordinal % len(zones)]


@dataclass(frozen=True)
class StaticPair:
    ordinal: int
    zone: str
    pv: dict
    pvc: dict


def static_pair(ordinal: int, zone: str, region: str, disk_id: str, profile: DriverProfile, style: str,
                size: str = "25Gi", pv_prefix: str = "") -> StaticPair:
    """PV ``pv-disk-ssd-web-N`` and claim ``disk-ssd-web-N`` for a pre-created disk.
    ``pv_prefix`` keeps PV names (cluster-wide) apart when several tests run at once."""
    if style not in STATIC_STYLES:
        raise ManifestError(f"static style {style!r} is not one of {', '.join(STATIC_STYLES)}")
    pv_name = f"{pv_prefix}pv-{TEMPLATE}-{STATEFULSET}-{ordinal}"
    pv = copy.deepcopy(_base("static-pv.yaml"))
    pv["metadata"]["name"] = pv_name
    pv["metadata"]["labels"] = {"alicloud-pvname": pv_name}
    pv["spec"]["capacity"]["storage"] = size
    pv["spec"]["csi"]["driver"] = profile.driver
    pv["spec"]["csi"]["volumeHandle"] = disk_id
    if style == "zone-labels":
        pv["metadata"]["labels"].update({labels.ZONE_DEPRECATED: zone, labels.REGION_DEPRECATED: region})
    else:
        pv["spec"]["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": profile.volume_zone_key, "operator": "In", "values": [zone]}]}]}}
    pvc = copy.deepcopy(_base("static-pvc.yaml"))
    pvc["metadata"]["name"] = f"{TEMPLATE}-{STATEFULSET}-{ordinal}"
    pvc["spec"]["resources"]["requests"]["storage"] = size
    pvc["spec"]["selector"]["matchLabels"]["alicloud-pvname"] = pv_name
    return StaticPair(ordinal, zone, pv, pvc)
