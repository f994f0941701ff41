"""Disk follows pod: a WaitForFirstConsumer claim waits for its consumer and is then
provisioned in the consumer's zone; several claims of one pod all land in that zone.
Waiting is proven from the claim's own watch stream, not by sleeping."""

from __future__ import annotations

import random
import threading

from kubernetes import client, watch

from zoneproof import data, labels, manifests, tally
from zoneproof.oracle import settled
from zoneproof.suites.capabilities import require_scheme
from zoneproof.waiting import wait_for
from zoneproof.workloads import claim, pod_with_claims

SELECTED_NODE = "volume.kubernetes.io/selected-node"


def scheduled_node(cluster, namespace: str, pod: str) -> str:
    """The pod's node once the scheduler has bound it (it binds only after the claims)."""
    def check():
        node = cluster.core.read_namespaced_pod(pod, namespace).spec.node_name
        return bool(node), node
    return wait_for(check, what=f"pod {pod} to be bound to a node", timeout=60)


def wffc_class(env) -> str:
    require_scheme(env.profile, "wait-for-first-consumer")
    sc = manifests.storage_class(env.profile, "wait-for-first-consumer", env.cluster.spec.zones,
                                 name=f"csi-disk-topology-{env.suffix}")
    client.StorageV1Api(env.cluster.api_client).create_storage_class(sc)
    env.storage_classes.append(sc["metadata"]["name"])
    return sc["metadata"]["name"]


def test_claim_waits_for_its_consumer_then_provisions_in_its_zone(placement, cluster, seed):
    env = placement("topology")
    zone = random.Random(f"{seed}-wffc").choice(list(cluster.spec.zones))
    sc = wffc_class(env)
    history: list[tuple[str, str, str]] = []  # (phase, selected node, volume) per claim version, in order
    bound = threading.Event()

    def record() -> None:
        stream = watch.Watch()
        for event in stream.stream(cluster.core.list_namespaced_persistent_volume_claim, env.namespace,
                                   field_selector="metadata.name=data", timeout_seconds=120):
            pvc = event["object"]
            history.append((pvc.status.phase or "", (pvc.metadata.annotations or {}).get(SELECTED_NODE, ""),
                            pvc.spec.volume_name or ""))
            if pvc.status.phase == "Bound":
                bound.set()
                stream.stop()

    watcher = threading.Thread(target=record, daemon=True)
    watcher.start()
    cluster.core.create_namespaced_persistent_volume_claim(env.namespace, claim("data", sc, env.profile.size))

    def waiting_event():
        events = cluster.core.list_namespaced_event(env.namespace, field_selector="involvedObject.name=data").items
        return any(e.reason == "WaitForFirstConsumer" for e in events), [e.reason for e in events]

    wait_for(waiting_event, what="the claim to report WaitForFirstConsumer", timeout=30)
    assert all(phase == "Pending" for phase, _, _ in history), history

    cluster.core.create_namespaced_pod(env.namespace, data.for_cluster(cluster, pod_with_claims(
        "app", ["data"], {labels.ZONE: zone})))
    assert bound.wait(90), f"claim never bound: {history}"
    watcher.join(timeout=10)
    first_selected = next(i for i, (_, node, _) in enumerate(history) if node)
    first_bound = next(i for i, (phase, _, _) in enumerate(history) if phase == "Bound")
    assert first_selected < first_bound, f"bound before a consumer was scheduled: {history}"
    assert history[first_selected][1] == scheduled_node(cluster, env.namespace, "app")

    pv = cluster.core.read_persistent_volume(history[first_bound][2])
    disks = env.cloud.describe_disks([pv.spec.csi.volume_handle])
    assert [d["ZoneId"] for d in disks] == [zone], f"disk {pv.spec.csi.volume_handle} of the claim: {disks}"


def test_several_claims_of_one_pod_land_in_one_zone(placement, cluster, seed):
    env = placement("topology")
    sc = wffc_class(env)
    names = [f"data-{n}" for n in range(3)]
    for name in names:
        cluster.core.create_namespaced_persistent_volume_claim(env.namespace, claim(name, sc, env.profile.size))
    cluster.core.create_namespaced_pod(env.namespace, data.for_cluster(cluster, pod_with_claims("app", names)))

    def bound():
        claims = cluster.core.list_namespaced_persistent_volume_claim(env.namespace).items
        return all(c.status.phase == "Bound" for c in claims), {c.metadata.name: c.status.phase for c in claims}

    wait_for(bound, what="every claim of the pod to bind", timeout=90)
    zone = cluster.core.read_node(scheduled_node(cluster, env.namespace, "app")).metadata.labels[labels.ZONE]
    verdict = wait_for(lambda: (settled(v := env.verdict(), 1)[0], v),
                       what="the pod running with every claim attached where it runs", timeout=60)
    tally.record(verdict)
    assert [vol.disk_zone for p in verdict.pods for vol in p.volumes] == [zone] * len(names), verdict.table()
