"""The driver's node plugin inside a cluster whose nodes run kubelets, as users deploy one:
a DaemonSet on every worker with the node plugin (in the image zoneproof builds of itself,
or in one it builds around the user's driver binary), its registrar and, where the
profile asks, a fake instance metadata service for the node. The kubelet's plugin watcher
finds the registrar's socket, asks the node plugin NodeGetInfo and writes CSINode and the
topology labels; the node plugin stages and publishes volumes into the kubelet's pod
directories (mount propagation both ways), from the block devices attached disks are on
its node."""

from __future__ import annotations

import logging
import time

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from zoneproof import labels
from zoneproof.deploy.registrar import csinode_drivers
from zoneproof.ecs.metadata import ADDRESS
from zoneproof.profile import DriverProfile, NodePlugin
from zoneproof.waiting import wait_for

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
NAME = "zoneproof-csi-node"
KUBELET_DIR = "/var/lib/kubelet"
PLUGIN_SOCKET_IN_POD = "/csi/csi.sock"
NODE_NAME_ENV = {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}


def plugin_dir(driver: str) -> str:
    return f"{KUBELET_DIR}/plugins/{driver}"


def pod_values(values: dict[str, str], driver: str) -> dict[str, str]:
    """The node plugin's template values as its pod sees them."""
    return {**values, "driver": driver, "endpoint": f"unix://{PLUGIN_SOCKET_IN_POD}", "node_name": "$(NODE_NAME)"}


REGISTERED_MARK = "/tmp/registered"  # in the registrar container's own filesystem, new with it
TERMINATION_LOG = "/dev/termination-log"


def metadata_address(image: str) -> dict:
    """Before anything in the pod may ask for it: the metadata address on the node's
    loopback, and a blackhole route for it that stays, so that a request for it never
    leaves the node, even while no service answers there."""
    return {
        "name": "instance-metadata-address", "image": image, "imagePullPolicy": "Never",
        "command": ["sh", "-c", f"ip route replace blackhole {ADDRESS}/32 && "
                                f"ip address replace {ADDRESS}/32 dev lo"],
        "securityContext": {"privileged": True},
    }


def metadata_sidecar(image: str, values: dict[str, str]) -> dict:
    """The fake instance metadata service (zoneproof.ecs.metadata) beside the node plugin: a
    sidecar started, and answering, before the node plugin starts (a plugin that asks too
    early would fall back to its Node's labels for good)."""
    return {
        "name": "instance-metadata", "image": image, "imagePullPolicy": "Never", "restartPolicy": "Always",
        "command": ["python3", "-m", "zoneproof.cli", "ecs", "metadata", "--node-name", "$(NODE_NAME)",
                    "--ecs-endpoint", values["ecs_endpoint"], "--region", values["region"],
                    "--address", ADDRESS],
        "env": [NODE_NAME_ENV, {"name": "ALIBABA_CLOUD_ACCESS_KEY_ID", "value": values["access_key_id"]},
                {"name": "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "value": values["access_key_secret"]}],
        "securityContext": {"privileged": True},  # puts its address on the node's loopback
        "startupProbe": {"httpGet": {"host": ADDRESS, "port": 80, "path": "/latest/meta-data/instance-id"},
                         "periodSeconds": 1, "failureThreshold": 120},
    }


def daemonset(driver: str, plugin: NodePlugin, plugin_image: str, own_image: str, args: list[str],
              env: dict[str, str], values: dict[str, str]) -> dict:
    """The DaemonSet running the node plugin (``args``, ``env``, in ``plugin_image``) beside
    its registrar and, if the profile asks, the fake metadata service (both in zoneproof's
    ``own_image``), with the privileges and host namespaces of a block driver's node plugin."""
    mounts = [
        {"name": "plugin-dir", "mountPath": "/csi"},
        {"name": "kubelet-dir", "mountPath": KUBELET_DIR, "mountPropagation": "Bidirectional"},
        # The node's devices: an attached disk shows here.
        {"name": "dev", "mountPath": "/dev", "mountPropagation": "HostToContainer"},
        *({"name": f"host-{n}", "mountPath": m.mount_path, "mountPropagation": m.propagation}
          for n, m in enumerate(plugin.mounts)),
    ]
    volumes = [
        {"name": "plugin-dir", "hostPath": {"path": plugin_dir(driver), "type": "DirectoryOrCreate"}},
        {"name": "kubelet-dir", "hostPath": {"path": KUBELET_DIR, "type": "Directory"}},
        {"name": "registration-dir", "hostPath": {"path": f"{KUBELET_DIR}/plugins_registry", "type": "Directory"}},
        {"name": "dev", "hostPath": {"path": "/dev", "type": "Directory"}},
        *({"name": f"host-{n}", "hostPath": {"path": m.host_path, "type": "DirectoryOrCreate"}}
          for n, m in enumerate(plugin.mounts)),
    ]
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"app": NAME}},
        "spec": {
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {
                    "serviceAccountName": NAME,
                    # ECS is reached as a node reaches its cloud's API; a node plugin sees the
                    # node's processes and IPC as block drivers' node plugins do.
                    "hostNetwork": True, "hostPID": True, "hostIPC": True,
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    # Workers only: the nodes that are ECS instances.
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [
                            {"key": labels.INSTANCE_ID, "operator": "Exists"}]}]}}},
                    "initContainers": [metadata_address(own_image), metadata_sidecar(own_image, values)]
                    if plugin.metadata_service else [],
                    "containers": [
                        {
                            "name": "node-plugin", "image": plugin_image, "imagePullPolicy": "Never",
                            "command": args,
                            "env": [NODE_NAME_ENV, *({"name": k, "value": v} for k, v in env.items())],
                            "securityContext": {"privileged": True},
                            "volumeMounts": mounts,
                        },
                        {
                            "name": "registrar", "image": own_image, "imagePullPolicy": "Never",
                            "command": ["python3", "-m", "zoneproof.cli", "csi", "register",
                                        "--csi-address", PLUGIN_SOCKET_IN_POD,
                                        "--kubelet-registration-path", f"{plugin_dir(driver)}/csi.sock",
                                        "--registry-dir", "/registration",
                                        "--registered-mark", REGISTERED_MARK, "--refusal-log", TERMINATION_LOG],
                            # Ready once the kubelet has registered the plugin, not when it starts.
                            "readinessProbe": {"exec": {"command": ["test", "-e", REGISTERED_MARK]},
                                               "periodSeconds": 1},
                            "volumeMounts": [{"name": "plugin-dir", "mountPath": "/csi"},
                                             {"name": "registration-dir", "mountPath": "/registration"}],
                            # The kubelet's refusal stays on the pod as its termination message.
                            "terminationMessagePath": TERMINATION_LOG,
                        },
                    ],
                    "volumes": volumes,
                },
            },
        },
    }


def rbac() -> list[dict]:
    """What node plugins read and write: their Node (instance id, labels such as the disk
    categories its zone sells), pods (for publish), events, and their configuration maps."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": NAME},
         "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch", "update"]},
                   {"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["get"]},
                   {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": NAME},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
    ]


def deploy(api: client.ApiClient, daemon_set: dict) -> None:
    from kubernetes import utils

    for doc in (*rbac(), daemon_set):
        utils.create_from_dict(api, doc)


def wait_registered(api: client.ApiClient, profile: DriverProfile, workers: list[str], timeout: float = 180) -> None:
    """Until the kubelet of every worker has registered the driver in its CSINode with the
    profile's topology keys; a registration with other keys fails at once."""
    wanted = set(profile.topology_keys)
    core = client.CoreV1Api(api)

    def check():
        refuse_at_once(core.list_namespaced_pod(NAMESPACE, label_selector=f"app={NAME}").items, workers)
        done = []
        for name in workers:
            entry = next((d for d in csinode_drivers(api, name) or [] if d["name"] == profile.driver), None)
            if entry is None:
                continue
            if set(entry.get("topologyKeys") or []) != wanted:
                raise RuntimeError(f"node {name}: the kubelet registered {profile.driver} with topology keys "
                                   f"{sorted(entry.get('topologyKeys') or [])}, profile {profile.name!r} declares "
                                   f"{sorted(wanted)}")
            done.append(name)
        return len(done) == len(workers), f"{len(done)}/{len(workers)} kubelets registered {profile.driver}"

    wait_for(check, what="the kubelets to register the node plugin", timeout=timeout)
    log.info("the kubelets of %d workers registered %s", len(workers), profile.driver)


class RegistrationRefused(RuntimeError):
    """The kubelet refused to register the node plugin; the message holds its words."""


def refuse_at_once(pods: list[client.V1Pod], nodes: list[str]) -> None:
    """A node plugin pod on one of ``nodes`` whose registrar exited with the kubelet's
    refusal as its termination message (a power cut leaves none): RegistrationRefused, with
    those words. The kubelet answers every retry the same, so there is nothing to wait for."""
    for pod in pods:
        if pod.spec.node_name in nodes and (refusal := refusal_of(pod)):
            raise RegistrationRefused(f"node {pod.spec.node_name} ({pod.metadata.name}): {refusal}")


def refusal_of(pod: client.V1Pod) -> str:
    """The termination message its registrar left, now or on its last run ("" if none)."""
    for status in (pod.status.container_statuses or []) if pod.status else []:
        if status.name != "registrar":
            continue
        for state in (status.state, status.last_state):
            if state is not None and state.terminated is not None and (state.terminated.message or "").strip():
                return state.terminated.message.strip()
    return ""


def restart_on(api: client.ApiClient, node: str, timeout: float = 180) -> None:
    """Delete the node plugin's pod on ``node`` and wait until the DaemonSet's new one there
    is ready (the kubelet has registered the plugin again: NodeGetInfo asked, CSINode written)."""
    core = client.CoreV1Api(api)
    selector = f"app={NAME}"
    old = [p for p in core.list_namespaced_pod(NAMESPACE, label_selector=selector).items if p.spec.node_name == node]
    if len(old) != 1:
        raise RuntimeError(f"expected one {NAME} pod on {node}, found {[p.metadata.name for p in old]}")
    core.delete_namespaced_pod(old[0].metadata.name, NAMESPACE)

    def ready():
        listed = core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
        refuse_at_once(listed, [node])
        pods = [p for p in listed if p.spec.node_name == node and p.metadata.uid != old[0].metadata.uid]
        up = [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        return bool(up), [f"{p.metadata.name}: {p.status.phase}" for p in pods] or "no new pod yet"
    wait_for(ready, what=f"a new {NAME} pod ready on {node}", timeout=timeout)


def remove(api: client.ApiClient, timeout: float = 180) -> None:
    """Delete the DaemonSet and its RBAC (absent objects are fine), and return once the
    DaemonSet is gone: deleted in the foreground, it lingers until its pods are, and a new
    deployment meeting it would be refused ("object is being deleted")."""
    apps, rbac_api, core = client.AppsV1Api(api), client.RbacAuthorizationV1Api(api), client.CoreV1Api(api)
    for delete in (lambda: apps.delete_namespaced_daemon_set(NAME, NAMESPACE, propagation_policy="Foreground"),
                   lambda: rbac_api.delete_cluster_role_binding(NAME), lambda: rbac_api.delete_cluster_role(NAME),
                   lambda: core.delete_namespaced_service_account(NAME, NAMESPACE)):
        try:
            delete()
        except ApiException as err:
            if err.status != 404:
                raise
    _wait_daemonset_gone(apps, timeout)


def _wait_daemonset_gone(apps: client.AppsV1Api, timeout: float) -> None:
    """Watch the DaemonSet from the version read until its deletion arrives."""
    deadline = time.monotonic() + timeout
    while True:
        listing = apps.list_namespaced_daemon_set(NAMESPACE, field_selector=f"metadata.name={NAME}")
        if not listing.items:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            pods = listing.items[0].status.current_number_scheduled
            raise TimeoutError(f"DaemonSet {NAMESPACE}/{NAME} still exists {timeout:.0f}s after its deletion "
                               f"({pods} node plugin pods left)")
        log.info("waiting for DaemonSet %s/%s and its pods to go", NAMESPACE, NAME)
        for event in watch.Watch().stream(apps.list_namespaced_daemon_set, NAMESPACE,
                                          field_selector=f"metadata.name={NAME}",
                                          resource_version=listing.metadata.resource_version,
                                          timeout_seconds=max(1, int(left))):
            if event["type"] == "DELETED":
                return
