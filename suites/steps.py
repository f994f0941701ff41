"""Steps the suites share: deploying the article's objects, waiting for pods to run and
be placed (the oracle's verdict), a WaitForFirstConsumer class, claims' events, a node's
VolumeAttachments."""

from __future__ import annotations

import logging
import random

import allure
from kubernetes import client

from zoneproof import labels, manifests, workloads
from zoneproof.oracle import Verdict, picture, settled
from zoneproof.report.attachments import record_verdict
from zoneproof.suites.capabilities import require_scheme

log = logging.getLogger(__name__)


def zone_of(env, node_name: str) -> str:
    return env.cluster.core.read_node(node_name).metadata.labels[labels.ZONE]


def wait_running(env, replicas: int, *, not_uids: set[str] = frozenset(), timeout: float = 120) -> dict[str, str]:
    """Wait for every replica Running (and, after a deletion, a new pod); pod -> zone. A
    violation that cannot heal (a PV stating another zone than its disk's, a claim refused
    for good) ends the wait."""
    pods = workloads.wait_running(env.cluster.core, env.namespace, replicas, not_uids=not_uids, timeout=timeout,
                                  also=env.raise_lasting, wake=env.watcher,
                                  explain=env.watcher.obstacles)
    return {p.metadata.name: zone_of(env, p.spec.node_name) for p in pods}


def wait_placed(env, replicas: int) -> Verdict:
    """The oracle's verdict once all ``replicas`` pods run with their disks attached (pods
    run before their disks attach on kwok nodes), attached to the report as a table; fails
    on any violation."""
    def check():
        verdict = env.verdict()
        return settled(verdict, replicas)[0], verdict
    try:
        verdict = env.wait_for(check, what=f"{replicas} pods running, every disk attached where its pod runs",
                               timeout=60)
    finally:
        verdict = env.verdict()
        record_verdict(verdict)
        drawing = picture(verdict, sorted(env.cluster.spec.zones))
        allure.attach(verdict.table(), name="placement verdict", attachment_type=allure.attachment_type.TEXT)
        allure.attach(drawing, name="placement by zone", attachment_type=allure.attachment_type.TEXT)
        log.info("placement verdict:\n%s\n\nby zone:\n%s", verdict.table(), drawing)
    assert verdict.ok, "\n".join(verdict.violations)
    return verdict


def deploy(env, scheme: str, zones: list[str], replicas: int, rng: random.Random) -> dict[int, str]:
    """Deploy the article's objects for a scheme; returns the zone each ordinal must land in
    when the scheme decides it up front (static schemes), else {}."""
    api = env.cluster.api_client
    core, apps, storage = client.CoreV1Api(api), client.AppsV1Api(api), client.StorageV1Api(api)
    core.create_namespaced_service(env.namespace, manifests.service())
    expected: dict[int, str] = {}
    if scheme.startswith("static-"):
        style = scheme.removeprefix("static-")
        order = list(zones)
        rng.shuffle(order)  # which zone gets web-0 is a seeded choice, so every zone gets tested first
        pairs = []
        for n in range(replicas):
            zone = manifests.static_zone(order, n)
            disk_id = env.static_disk(zone, f"{env.namespace}-web-{n}")
            pairs.append(manifests.static_pair(n, zone, env.cloud.region, disk_id, env.profile, style,
                                               size=env.profile.size, pv_prefix=f"{env.suffix}-"))
            expected[n] = zone
        env.create_static_pvs([pair.pv for pair in pairs])
        for pair in pairs:
            core.create_namespaced_persistent_volume_claim(env.namespace, pair.pvc)
        sts = manifests.statefulset(replicas, "", env.profile.size)
    else:
        kind = "wait-for-first-consumer" if scheme == "wait-for-first-consumer" else "dynamic-zoneid"
        sc = manifests.storage_class(env.profile, kind, zones,
                                     name=f"{manifests.STORAGE_CLASS_NAMES[kind]}-{env.namespace}")
        storage.create_storage_class(sc)
        env.storage_classes.append(sc["metadata"]["name"])
        sts = manifests.statefulset(replicas, sc["metadata"]["name"], env.profile.size)
    if len(zones) < len(env.cluster.spec.zones):  # keep every scheme to the zones under test
        sts["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": labels.ZONE, "operator": "In", "values": zones}]}]}}}
    apps.create_namespaced_stateful_set(env.namespace, env.runnable(sts))
    return expected


def wffc_class(env, zone_ids: list[str] | None = None) -> str:
    """A WaitForFirstConsumer StorageClass: the profile's, or with ``zone_ids`` its
    dynamic ``zoneId`` class bound on first consumer."""
    require_scheme(env.profile, "wait-for-first-consumer")
    if zone_ids is None:
        sc = manifests.storage_class(env.profile, "wait-for-first-consumer", env.cluster.spec.zones,
                                     name=f"csi-disk-topology-{env.suffix}")
    else:
        require_scheme(env.profile, "dynamic-zoneid")
        sc = env.profile.storage_class("dynamic-zoneid", f"csi-disk-zoneid-wffc-{env.suffix}", zone_ids,
                                       binding="WaitForFirstConsumer")
    client.StorageV1Api(env.cluster.api_client).create_storage_class(sc)
    env.storage_classes.append(sc["metadata"]["name"])
    return sc["metadata"]["name"]


def wait_events(env, names: list[str], reasons: set[str], what: str, timeout: float = 60) -> dict[str, str]:
    """The first event of one of ``reasons`` for each claim: claim -> "reason: message"."""
    def check():
        found = {}
        for event in env.cluster.core.list_namespaced_event(env.namespace).items:
            if event.involved_object.name in names and event.reason in reasons:
                found.setdefault(event.involved_object.name, f"{event.reason}: {event.message}")
        return len(found) == len(names), found
    return env.wait_for(check, what=what, timeout=timeout)


def attachments_to(env, node: str) -> list[client.V1VolumeAttachment]:
    """The driver's VolumeAttachments to ``node``."""
    return [va for va in client.StorageV1Api(env.cluster.api_client).list_volume_attachment().items
            if va.spec.node_name == node and va.spec.attacher == env.profile.driver]
