"""Data that must follow its disk, on clusters whose pods run real containers (kind).

Each container of the article's workloads becomes a tiny web server (Debian's busybox
``httpd``, built into an image here: nothing is pulled) that, at its first start on a
volume, writes its pod's name and a random token into the volume. After every move (pod
deletion, drain, power cut, scale) the token read back must be the one written before:
the pod got its own disk again, with its data, not a fresh or another pod's disk.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

from kubernetes import client
from kubernetes.stream import stream

from zoneproof.cluster.nodeimage import BUSYBOX_IMAGE
from zoneproof.waiting import wait_for

log = logging.getLogger(__name__)

TOKEN_FILE = "zoneproof-token"
WEB_PORT = 80


class DataLost(AssertionError):
    """A volume read back does not hold what was written to it: the data did not follow its disk."""


def stamping_container(container: dict) -> dict:
    """A container serving HTTP that stamps its first volume once (pod name, random token)."""
    out = copy.deepcopy(container)
    mounts = out.get("volumeMounts") or []
    stamp = ""
    if mounts:
        token = f"{mounts[0]['mountPath'].rstrip('/')}/{TOKEN_FILE}"
        # Synced before it counts (the pod is Ready once it is there): a power cut loses
        # what a disk had not been given yet, as a real one does.
        stamp = (f'if [ ! -s {token} ]; then echo "$ZONEPROOF_POD $(cat /proc/sys/kernel/random/uuid)" '
                 f'> {token}.new && sync && mv {token}.new {token} && sync; fi; ')
    out.update(image=BUSYBOX_IMAGE, imagePullPolicy="Never",
               command=["sh", "-c", f"{stamp}mkdir -p /www && exec httpd -f -p {WEB_PORT} -h /www"])
    if mounts:  # Ready once the stamp is on the volume, so a reader never comes too early
        out["readinessProbe"] = {"exec": {"command": ["test", "-s", token]}, "periodSeconds": 1}
    out["env"] = [*(out.get("env") or []),
                  {"name": "ZONEPROOF_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    return out


def runnable(obj: dict) -> dict:
    """A workload whose containers run here: each becomes a stamping web server."""
    out = copy.deepcopy(obj)
    spec = out["spec"]["template"]["spec"] if out.get("kind") in ("StatefulSet", "Deployment") else out["spec"]
    spec["containers"] = [stamping_container(c) for c in spec["containers"]]
    return out


def for_cluster(cluster, obj: dict) -> dict:
    """A workload as ``cluster`` runs it: stamping containers on nodes with kubelets; as
    written elsewhere (no container runs on kwok nodes)."""
    return runnable(obj) if cluster.capabilities.runs_kubelets else obj


def read_token(core: client.CoreV1Api, namespace: str, pod: client.V1Pod) -> str:
    """The token in a running pod's first volume, read in the pod itself."""
    container = pod.spec.containers[0]
    mounts = container.volume_mounts or []
    if not mounts:
        raise ValueError(f"pod {pod.metadata.name} mounts no volume")
    path = f"{mounts[0].mount_path.rstrip('/')}/{TOKEN_FILE}"
    # kubernetes.stream swaps the method that sends requests on the ApiClient it is handed,
    # for the length of the call: every other thread's request through that client (a watcher's)
    # then goes out as a websocket handshake and fails ("Handshake status 400"). So the
    # exec gets an ApiClient of its own.
    api = client.ApiClient(core.api_client.configuration)
    try:
        out = stream(client.CoreV1Api(api).connect_get_namespaced_pod_exec, pod.metadata.name, namespace,
                     container=container.name, command=["cat", path], stderr=False, stdin=False, stdout=True,
                     tty=False)
    finally:
        api.close()
    return out.strip()


@dataclass
class DataLedger:
    """What each claim's volume held when first read; every later read must match."""

    tokens: dict[str, str] = field(default_factory=dict)  # claim name -> token

    def check(self, core: client.CoreV1Api, namespace: str, *, expected: int, timeout: float = 120) -> int:
        """Once ``expected`` pods of the namespace are Ready (their stamp is on the volume),
        read every one's token; a claim seen before must hold the same one. Returns how many
        pods were checked."""
        pods = wait_for(lambda: _ready(core, namespace, expected), what=f"{expected} pods Ready to read their data",
                        timeout=timeout)
        checked = 0
        for pod in pods:
            claim = next((v.persistent_volume_claim.claim_name for v in pod.spec.volumes or []
                          if v.persistent_volume_claim), None)
            if claim is None:
                continue
            token = read_token(core, namespace, pod)
            if not token.startswith(f"{pod.metadata.name} "):
                raise DataLost(f"pod {pod.metadata.name}: its volume {claim} holds {token!r}, not a token its "
                               "pod wrote")
            before = self.tokens.setdefault(claim, token)
            if token != before:
                raise DataLost(f"pod {pod.metadata.name} on {pod.spec.node_name}: volume {claim} holds {token!r}, "
                               f"but {before!r} was written to it before: the data did not follow its disk")
            checked += 1
        if checked != expected:
            raise DataLost(f"checked the data of {checked} pods, expected {expected}")
        log.info("data check: %d volumes hold the tokens written to them", checked)
        return checked


def _ready(core: client.CoreV1Api, namespace: str, expected: int) -> tuple[bool, list[client.V1Pod]]:
    pods = [p for p in core.list_namespaced_pod(namespace).items if not p.metadata.deletion_timestamp
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
    return len(pods) >= expected, pods
