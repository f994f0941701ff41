"""Actions that break and mend the cluster and the cloud.

Ours where chaostoolkit-kubernetes has nothing or falls short:
- power: stop and start the instances of whole zones or single nodes through the ECS API
  (``StopInstances`` with ``ForceStop``, ``StartInstances``), so an experiment runs the
  same against the fake ECS beside a local cluster (which cuts the node's power) and
  against a real cloud (chaostoolkit-kubernetes can only delete Node objects, which is
  not a power cut);
- the non-graceful-shutdown taint ``node.kubernetes.io/out-of-service`` (it has no taint
  action);
- drain: chaostoolkit-kubernetes 0.39 fails the activity on the first eviction a
  PodDisruptionBudget refuses (HTTP 429), where ``kubectl drain`` waits and retries; a
  drain under a budget must retry, so ours does;
- scaling the StatefulSet and faults in the fake ECS.
Pod termination and uncordoning use chaostoolkit-kubernetes directly (see the experiments).
"""

from __future__ import annotations

import time

from chaoslib.exceptions import ActivityFailed
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from zoneproof import labels, manifests
from zoneproof.cluster.base import ClusterError
from zoneproof.workloads import describe_pods
from zoneproof.waiting import WaitTimeout, wait_for
from zoneproof_chaos.context import log, namespace, target

__all__ = ["power_off", "power_on", "restore_power", "set_out_of_service", "clear_out_of_service", "drain_nodes",
           "scale_statefulset", "inject_cloud_fault", "clear_cloud_faults"]


def _nodes(t, zone: str = "", node: str = "") -> list[str]:
    if bool(zone) == bool(node):
        raise ActivityFailed(f"name exactly one of zone or node (got zone={zone!r}, node={node!r})")
    if node:
        if node not in t.provider.nodes():
            raise ActivityFailed(f"no node {node!r} in cluster {t.provider.spec.name!r}")
        return [node]
    try:
        return t.provider.nodes(zone)
    except ClusterError as err:
        raise ActivityFailed(str(err)) from None


def power_off(zone: str = "", node: str = "", configuration: dict = None) -> dict:
    """Stop the instances of a zone's nodes (or one node's) through the ECS API, as a power
    cut, and wait until Kubernetes marks the nodes NotReady; returns how long that took
    (the node monitor grace period at work)."""
    t = target(configuration)
    instances = t.instances(_nodes(t, zone, node))
    started = time.monotonic()
    t.cloud.stop_instances(list(instances.values()))
    t.provider.wait_nodes_ready(list(instances), ready=False, timeout=t.provider.spec.timings.not_ready_bound + 30)
    detected = time.monotonic() - started
    log.info("stopped the instances of %s; NotReady after %.1fs", ", ".join(instances), detected)
    return {"nodes": list(instances), "not_ready_after_s": round(detected, 1)}


def power_on(zone: str = "", node: str = "", configuration: dict = None) -> dict:
    """Start the instances of a zone's nodes (or one node's) and wait until they are Ready."""
    t = target(configuration)
    instances = t.instances(_nodes(t, zone, node))
    started = time.monotonic()
    t.cloud.start_instances(list(instances.values()))
    t.provider.wait_nodes_ready(list(instances), timeout=60)
    log.info("started the instances of %s; Ready after %.1fs", ", ".join(instances), time.monotonic() - started)
    return {"nodes": list(instances), "ready_after_s": round(time.monotonic() - started, 1)}


def restore_power(configuration: dict = None) -> list[str]:
    """Rollback: start every node's instance that is not running, and wait until every
    node is Ready."""
    t = target(configuration)
    # The nodes in a zone are the cloud's instances; a control plane (kind's) sits in none.
    instances = t.instances([s.name for s in t.provider.node_states() if s.zone])
    stopped = set(t.cloud.stopped(list(instances.values())))
    off = sorted(name for name, instance in instances.items() if instance in stopped)
    if stopped:
        t.cloud.start_instances(sorted(stopped))
    t.provider.wait_nodes_ready(t.provider.nodes(), timeout=90)
    if off:
        log.info("rollback: started the instances of %s", ", ".join(off))
    return off


def set_out_of_service(zone: str = "", node: str = "", on: bool = True, configuration: dict = None) -> list[str]:
    """Add (or remove) ``node.kubernetes.io/out-of-service=nodeshutdown:NoExecute``: the
    operator's word that the nodes are really down (non-graceful node shutdown), which lets
    Kubernetes force-delete their pods and force-detach their volumes at once."""
    t = target(configuration)
    names = _nodes(t, zone, node)
    for name in names:
        t.provider.set_out_of_service(name, on)
    log.info("%s out-of-service taint on %s", "added" if on else "removed", ", ".join(names))
    return names


def clear_out_of_service(configuration: dict = None) -> list[str]:
    """Rollback: remove the out-of-service taint from every node that has it."""
    t = target(configuration)
    tainted = [s.name for s in t.provider.node_states()
               if any(taint.startswith(labels.TAINT_OUT_OF_SERVICE + ":") for taint in s.taints)]
    for name in tainted:
        t.provider.set_out_of_service(name, False)
    return tainted


def drain_nodes(zone: str = "", node: str = "", timeout: float = 120, configuration: dict = None) -> dict:
    """Cordon the nodes, then evict their pods through the Eviction API, retrying evictions a
    PodDisruptionBudget refuses (as ``kubectl drain`` does) until ``timeout``; then wait
    until the evicted pods are gone from the nodes. Returns the evicted pods."""
    t = target(configuration)
    names = _nodes(t, zone, node)
    core = t.provider.core
    for name in names:
        core.patch_node(name, {"spec": {"unschedulable": True}})
    log.info("cordoned %s", ", ".join(names))
    evicted: set[str] = set()
    refusals = 0

    def on_nodes() -> list[client.V1Pod]:
        return [p for name in names for p in core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={name}").items
            if not any(o.kind == "DaemonSet" for o in p.metadata.owner_references or [])]

    def evict_all():
        nonlocal refusals
        refused = []
        for pod in on_nodes():
            if pod.metadata.deletion_timestamp:
                continue  # already on its way out
            key = f"{pod.metadata.namespace}/{pod.metadata.name}"
            body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.metadata.name,
                                                                  namespace=pod.metadata.namespace))
            try:
                core.create_namespaced_pod_eviction(pod.metadata.name, pod.metadata.namespace, body)
                evicted.add(key)
            except ApiException as err:
                if err.status == 429:  # a disruption budget says "not now": ask again
                    refused.append(key)
                elif err.status != 404:
                    raise ActivityFailed(f"eviction of {key} refused: {err.status} {err.reason}") from None
        remaining = on_nodes()
        refusals += len(refused)
        if refused:
            return False, f"refused by a disruption budget: {', '.join(refused)}"
        return not remaining, f"still on the nodes: {describe_pods(remaining)}"

    try:
        wait_for(evict_all, what=f"the pods on {', '.join(names)} to be evicted",
                 timeout=float(timeout), interval=1.0)
    except WaitTimeout as err:
        raise ActivityFailed(str(err)) from None
    log.info("drained %s: evicted %s (%d eviction(s) refused by a budget, retried)", ", ".join(names),
             ", ".join(sorted(evicted)) or "nothing", refusals)
    return {"nodes": names, "evicted": sorted(evicted), "refused_evictions": refusals}


def scale_statefulset(replicas: int, configuration: dict = None) -> int:
    """Set the workload StatefulSet's replicas (the probes read the count from it)."""
    t = target(configuration)
    replicas = int(replicas)
    if replicas < 0:
        raise ActivityFailed(f"replicas must not be negative, got {replicas}")
    client.AppsV1Api(t.api).patch_namespaced_stateful_set_scale(
        manifests.STATEFULSET, namespace(configuration), {"spec": {"replicas": replicas}})
    log.info("scaled StatefulSet %s to %d replicas", manifests.STATEFULSET, replicas)
    return replicas


def inject_cloud_fault(kind: str, configuration: dict = None, **fields) -> dict:
    """Add a fault to the fake ECS (kinds: zone_outage, no_stock, throttle, latency,
    fail_next; fields as in docs/fake-ecs.md); returns the fault with its id."""
    t = target(configuration)
    try:
        fault = t.ecs.add_fault(kind, **{k: v for k, v in fields.items() if v not in (None, "")})
    except Exception as err:  # noqa: BLE001 - the admin API's message names the bad field
        raise ActivityFailed(f"fake ECS refused fault {kind!r} {fields}: {err}") from None
    log.info("cloud fault injected: %s", fault)
    return fault


def clear_cloud_faults(configuration: dict = None) -> int:
    """Remove every fault from the fake ECS (also a rollback); returns how many there were."""
    t = target(configuration)
    count = len(t.ecs.faults())
    t.ecs.clear_faults()
    if count:
        log.info("cleared %d cloud fault(s)", count)
    return count
