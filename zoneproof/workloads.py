"""Small workloads and readiness checks shared by suites, tests and benchmarks."""

from __future__ import annotations

from typing import Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from zoneproof import labels
from zoneproof.waiting import Changes, wait_for

# The driver tags each disk it provisions with the claim's namespace (from the provisioner).
PVC_NAMESPACE_TAG = "kubernetes.io/created-for/pvc/namespace"


def spread_statefulset(name: str, replicas: int) -> dict:
    """A volume-less StatefulSet whose pods spread evenly over zones (at most one more
    pod in any zone than in another)."""
    match = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": match},
            "template": {
                "metadata": {"labels": match},
                "spec": {
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": labels.ZONE, "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": match},
                    }],
                    "containers": [{"name": "nginx", "image": "nginx"}],
                },
            },
        },
    }


def describe_pods(pods: list[client.V1Pod]) -> str:
    return ", ".join(
        f"{p.metadata.name}@{p.spec.node_name or '-'}:{p.status.phase}"
        f"{'(terminating)' if p.metadata.deletion_timestamp else ''}" for p in pods
    ) or "no pods"


def wait_running(core: client.CoreV1Api, namespace: str, count: int, *, not_uids=frozenset(),
                 timeout: float = 60, also: Callable[[], None] = lambda: None,
                 wake: Changes | None = None, explain: Callable[[], list[str]] | None = None) -> list[client.V1Pod]:
    """Wait until exactly ``count`` pods of the namespace are Running (and not terminating),
    none of them one of ``not_uids`` (the pods before a deletion). ``also`` runs at every
    look and may raise to end the wait (a violation that cannot heal)."""

    def live(pods):
        return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp
                and p.metadata.uid not in not_uids]

    def check():
        also()
        pods = core.list_namespaced_pod(namespace).items
        return len(live(pods)) == count, describe_pods(pods)

    wait_for(check, what=f"{count} Running pods in {namespace}", timeout=timeout, wake=wake, explain=explain)
    return live(core.list_namespaced_pod(namespace).items)


def deploy_spread_statefulset(api: client.ApiClient, namespace: str, name: str, replicas: int, *,
                              containers_run: bool = False) -> list[client.V1Pod]:
    sts = spread_statefulset(name, replicas)
    if containers_run:  # nodes with kubelets run it: an image they have, not nginx
        from zoneproof.data import runnable

        sts = runnable(sts)
    client.AppsV1Api(api).create_namespaced_stateful_set(namespace, sts)
    return wait_running(client.CoreV1Api(api), namespace, replicas)


def storage_class(name: str, provisioner: str, parameters: dict[str, str], *, binding: str = "Immediate",
                  allowed_zones: tuple[str, ...] = (), zone_key: str = labels.DISK_ZONE) -> dict:
    body = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": provisioner, "parameters": parameters, "reclaimPolicy": "Delete",
            "volumeBindingMode": binding}
    if allowed_zones:
        body["allowedTopologies"] = [{"matchLabelExpressions": [{"key": zone_key, "values": list(allowed_zones)}]}]
    return body


def claim(name: str, storage_class_name: str, size: str = "20Gi") -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class_name,
                     "resources": {"requests": {"storage": size}}}}


def pod_with_claims(name: str, claims: list[str], node_selector: dict[str, str] | None = None) -> dict:
    spec = {"containers": [{"name": "app", "image": "nginx", "volumeMounts": [
                {"name": c, "mountPath": f"/data/{c}"} for c in claims]}],
            "volumes": [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def create_static_pvs(core: client.CoreV1Api, pvs: list[dict], *, wake: Changes | None = None) -> None:
    """Create static PVs, then wait until the PV controller has taken each in (phase
    Available, or Bound to a claim made before): a claim that selects its PV by label, as
    the article's do, and comes before that is bound only at the controller's next resync,
    up to 15 s later."""
    for pv in pvs:
        core.create_persistent_volume(pv)

    names = {pv["metadata"]["name"] for pv in pvs}

    def available():  # one list per look, not a read per PV (the scale benchmark makes hundreds)
        phases = {pv.metadata.name: pv.status.phase for pv in core.list_persistent_volume().items
                  if pv.metadata.name in names}
        return len(phases) == len(names) and set(phases.values()) <= {"Available", "Bound"}, phases
    wait_for(available, what=f"{len(pvs)} static PV(s) Available", timeout=30, wake=wake)


def disks_created_for(cloud, namespace: str) -> list[dict]:
    """Disks the driver provisioned for claims of a namespace (the provisioner passes the
    claim's namespace, and the driver tags the disk with it), found through the ECS API
    (``cloud``, a :class:`zoneproof.cloud.CloudAccess`) by that tag."""
    return cloud.api.describe_disks(Tag=[{"Key": PVC_NAMESPACE_TAG, "Value": namespace}])


def _delete_unless_gone(delete: Callable[[str], object], name: str) -> None:
    """Delete a cluster-scoped object by name; one already gone is what was wanted."""
    try:
        delete(name)
    except ApiException as err:
        if err.status != 404:
            raise


def remove_workload(api: client.ApiClient, namespace: str, *, static_pvs: tuple[str, ...] = (),
                    timeout: float = 120, wake: Changes | None = None,
                    explain: Callable[[], list[str]] | None = None) -> None:
    """Delete a namespace's StatefulSets, pods and claims (and the named static PVs) in the
    order that lets every disk detach and, for dynamic volumes, be deleted; wait for that.
    The namespace itself stays. ``wake``: a watcher of the namespace, to wait on its changes;
    ``explain``: what stands in the way, said on time-out (the watcher's ``obstacles``)."""
    core, apps, storage = client.CoreV1Api(api), client.AppsV1Api(api), client.StorageV1Api(api)
    for sts in apps.list_namespaced_stateful_set(namespace).items:
        apps.delete_namespaced_stateful_set(sts.metadata.name, namespace)
    core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    wait_for(lambda: (not core.list_namespaced_pod(namespace).items, describe_pods(
        core.list_namespaced_pod(namespace).items)), what=f"pods of {namespace} to go", timeout=60, wake=wake,
             explain=explain)
    claims = core.list_namespaced_persistent_volume_claim(namespace).items
    volumes = {c.spec.volume_name for c in claims if c.spec.volume_name} | set(static_pvs)

    def of_these_volumes() -> list:
        return [va for va in storage.list_volume_attachment().items
                if va.spec.source.persistent_volume_name in volumes]

    def attachments() -> list[str]:
        return [va.metadata.name for va in of_these_volumes()]

    # An attachment that never attached (its attach refused) would wait for the
    # attach-detach controller's maximum wait for unmount (6 min, kubernetes#117042) with its
    # pod gone: delete it, and csi-attacher runs ControllerUnpublish as it would then.
    for va in of_these_volumes():
        if not va.metadata.deletion_timestamp and not (va.status and va.status.attached):
            _delete_unless_gone(storage.delete_volume_attachment, va.metadata.name)
    # Detached first: csi-provisioner does not delete a volume still attached, and tries
    # again only a second later.
    wait_for(lambda: (not (left := attachments()), f"attachments {left}"),
             what=f"volumes of {namespace} to detach", timeout=timeout, wake=wake, explain=explain)
    core.delete_collection_namespaced_persistent_volume_claim(namespace)
    for name in static_pvs:
        _delete_unless_gone(core.delete_persistent_volume, name)

    def released():
        left = attachments()
        pvs = [pv.metadata.name for pv in core.list_persistent_volume().items if pv.metadata.name in volumes]
        return not left and not pvs, f"attachments {left}, PVs {pvs}"

    wait_for(released, what=f"volumes of {namespace} to go", timeout=timeout, wake=wake, explain=explain)
