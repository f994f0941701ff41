"""Small workloads and readiness checks shared by suites, tests and benchmarks."""

from __future__ import annotations

from kubernetes import client

from zoneproof import labels
from zoneproof.waiting import wait_for


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
                 timeout: float = 60) -> list[client.V1Pod]:
    """Wait until exactly ``count`` pods of the namespace are Running (and not terminating),
    none of them one of ``not_uids`` (the pods before a deletion)."""

    def live(pods):
        return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp
                and p.metadata.uid not in not_uids]

    def check():
        pods = core.list_namespaced_pod(namespace).items
        return len(live(pods)) == count, describe_pods(pods)

    wait_for(check, what=f"{count} Running pods in {namespace}", timeout=timeout)
    return live(core.list_namespaced_pod(namespace).items)


def deploy_spread_statefulset(api: client.ApiClient, namespace: str, name: str, replicas: int) -> list[client.V1Pod]:
    client.AppsV1Api(api).create_namespaced_stateful_set(namespace, spread_statefulset(name, replicas))
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
