"""The local provider: real etcd, kube-apiserver, kube-controller-manager and
kube-scheduler processes run by ``kwokctl --runtime binary``, with worker nodes
simulated by kwok. No containers, no network beyond loopback.

Power is modelled with the node label ``zoneproof.dev/power``: the kwok controller
is told to manage only nodes labelled ``on``. Turning a node ``off`` makes kwok drop
it: its Lease stops being renewed, its status goes stale and its pods are neither
started nor finalized. That is what a powered-off machine looks like to Kubernetes:
the node controller marks it NotReady (Unknown), taints it unreachable and evicts its
pods, which then stay Terminating until the node returns or is declared
out of service.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_fixed

from zoneproof import labels, toolchain
from zoneproof.cluster.base import Capabilities, ClusterError, ClusterProvider, OwnClusterMixin, is_conflict
from zoneproof.cluster.nodes import machine_made_again, node_manifest, plan_nodes
from zoneproof.cluster.spec import ClusterSpec
from zoneproof.processes import kill_processes_under

log = logging.getLogger(__name__)

SPEC_FILE = "zoneproof-cluster.json"
LEASE_NAMESPACE = "kube-node-lease"
POWER_OFF_LEASE_SECONDS = 10 * 365 * 24 * 3600


def state_root() -> Path:
    """Where running clusters keep their files: $ZONEPROOF_STATE_DIR, else the user state dir."""
    explicit = os.environ.get("ZONEPROOF_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "zoneproof"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def kwokctl_config(spec: ClusterSpec, binaries: dict[str, Path], scheduler_config: Path | None = None) -> dict:
    """The KwokctlConfiguration for a cluster: local binaries, timings, a kwok controller
    that manages only powered nodes, and the scheduler's configuration file if it has one."""
    t = spec.timings.scaled()

    def args(component: str, pairs: dict[str, str], override: tuple[str, ...] = ()) -> dict:
        return {
            "name": component,
            "extraArgs": [{"key": k, "value": v, "override": k in override} for k, v in pairs.items()],
        }

    config = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {
            "runtime": "binary",
            "kubeVersion": toolchain.KUBERNETES_VERSION.lstrip("v"),
            "kubeApiserverBinary": str(binaries["kube-apiserver"]),
            "kubeControllerManagerBinary": str(binaries["kube-controller-manager"]),
            "kubeSchedulerBinary": str(binaries["kube-scheduler"]),
            "kubectlBinary": str(binaries["kubectl"]),
            "etcdBinary": str(binaries["etcd"]),
            "kwokControllerBinary": str(binaries["kwok"]),
            # Admission must be on: DefaultTolerationSeconds, StorageObjectInUseProtection and
            # friends are part of the behaviour under test.
            "kubeAuthorization": True,
            "kubeAdmission": True,
            "heartbeatFactor": 1,  # already applied by Timings.scaled()
            "nodeLeaseDurationSeconds": t.node_lease_duration,
            "nodeStatusUpdateFrequencyMilliseconds": round(t.node_status_update_frequency * 1000),
            "kubeControllerManagerNodeMonitorPeriodMilliseconds": round(t.node_monitor_period * 1000),
            "kubeControllerManagerNodeMonitorGracePeriodMilliseconds": round(t.node_monitor_grace_period * 1000),
        },
        "componentsPatches": [
            args(
                "kwok-controller",
                {
                    "manage-all-nodes": "false",
                    "manage-nodes-with-label-selector": f"{labels.POWER}={labels.POWER_ON}",
                },
                override=("manage-all-nodes",),
            ),
            args(
                "kube-apiserver",
                {
                    "default-not-ready-toleration-seconds": str(t.not_ready_toleration),
                    "default-unreachable-toleration-seconds": str(t.unreachable_toleration),
                },
            ),
            # Client rate limits well above the defaults (20 and 30 a second): the limits guard a
            # big cluster's API server, and here they only queue the controllers behind the tests.
            args("kube-controller-manager", {"node-eviction-rate": f"{t.node_eviction_rate:g}",
                                             "kube-api-qps": "200", "kube-api-burst": "400"}),
        ],
    }
    if scheduler_config is not None:
        config["options"]["kubeSchedulerConfig"] = str(scheduler_config)
    return config


def scheduler_configuration(bugs: tuple[str, ...]) -> dict | None:
    """The kube-scheduler configuration of a cluster carrying scheduler bugs; None: the
    scheduler's defaults."""
    if "scheduler-without-volumezone" not in bugs:
        return None
    return {"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
            "profiles": [{"schedulerName": "default-scheduler",
                          "plugins": {"filter": {"disabled": [{"name": "VolumeZone"}]}}}]}


class LocalProvider(OwnClusterMixin, ClusterProvider):
    PROVIDER = "local"
    capabilities = Capabilities(recreates_nodes=True, rezones_nodes=True, partitions_nodes=True)
    def __init__(self, spec: ClusterSpec, *, workdir: Path | None = None):
        self.spec = spec
        self.workdir = workdir or state_root() / "kwok"

    # --- paths and state ---
    @property
    def cluster_dir(self) -> Path:
        return self.workdir / "clusters" / self.spec.name

    @property
    def kubeconfig(self) -> Path:
        return self.cluster_dir / "kubeconfig.yaml"

    @classmethod
    def attach(cls, name: str, *, workdir: Path | None = None) -> "LocalProvider":
        """The provider of an existing local cluster, with the spec it was created with."""
        probe = cls(ClusterSpec(name=name), workdir=workdir)
        spec_path = probe.cluster_dir / SPEC_FILE
        if not spec_path.is_file():
            raise ClusterError(f"no local cluster named {name!r} (looked in {probe.cluster_dir})")
        return cls(ClusterSpec.from_dict(json.loads(spec_path.read_text())), workdir=workdir)

    def _kwokctl(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        kube_bin = toolchain.binary("kubectl").parent
        env = dict(os.environ, KWOK_WORKDIR=str(self.workdir))
        env["PATH"] = f"{kube_bin}{os.pathsep}{env.get('PATH', '')}"
        cmd = [str(toolchain.binary("kwokctl")), *args, "--name", self.spec.name]
        log.debug("running %s", " ".join(cmd))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise ClusterError(f"`kwokctl {' '.join(args)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc

    # --- lifecycle ---
    def up(self) -> None:
        self.spec.validate()
        if self.exists():
            state = "is already running" if self.is_up() else "exists but does not answer"
            raise ClusterError(
                f"local cluster {self.spec.name!r} {state} (kubeconfig {self.kubeconfig}); "
                f"run `zoneproof cluster down --name {self.spec.name}` first, or pick another --name"
            )
        binaries = {b: toolchain.binary(b) for b in
                    ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd", "kwok")}
        started = time.monotonic()
        log.info("starting local cluster %r: %d zones × %d nodes in %s",
                 self.spec.name, len(self.spec.zones), self.spec.nodes_per_zone, self.spec.region)
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            scheduler = scheduler_configuration(self.spec.bugs)
            with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
                scheduler_path = Path(tmp) / "kube-scheduler.yaml" if scheduler else None
                if scheduler:
                    log.warning("cluster %r carries bug(s) on purpose: %s", self.spec.name, ", ".join(self.spec.bugs))
                    scheduler_path.write_text(yaml.safe_dump(scheduler))
                cfg = Path(tmp) / "kwokctl.yaml"
                cfg.write_text(yaml.safe_dump(kwokctl_config(self.spec, binaries, scheduler_path)))
                self._kwokctl("create", "cluster", "--config", str(cfg), "--kubeconfig=", "--wait=60s")
            (self.cluster_dir / SPEC_FILE).write_text(json.dumps(self.spec.to_dict(), indent=2))
            log.info("control plane up after %.1fs; registering %d nodes",
                     time.monotonic() - started, len(self.spec.zones) * self.spec.nodes_per_zone)
            planned = plan_nodes(self.spec)
            for node in planned:
                self.core.create_node(node_manifest(node))
            self.wait_nodes_ready([n.name for n in planned], timeout=60)
        except BaseException as err:
            log.warning("bring-up of %r failed (%s); tearing down what was started", self.spec.name, err)
            try:
                self.down()
            except Exception as cleanup_err:  # noqa: BLE001 - report, but keep the original error
                log.error("clean-up after the failed bring-up also failed: %s", cleanup_err)
            raise
        log.info("local cluster %r ready in %.1fs; kubeconfig: %s",
                 self.spec.name, time.monotonic() - started, self.kubeconfig)

    def down(self) -> None:
        if self.exists():
            log.info("deleting local cluster %r", self.spec.name)
            try:
                # kwokctl edits the kubeconfig it is given; give it the cluster's own
                # (deleted next) so the user's ~/.kube/config is never touched.
                self._kwokctl("delete", "cluster", f"--kubeconfig={self.kubeconfig}", timeout=120)
            finally:
                kill_processes_under(self.cluster_dir)
                shutil.rmtree(self.cluster_dir, ignore_errors=True)
        # Leave no empty state directories behind either.
        for path in (self.workdir / "clusters", self.workdir, state_root()):
            try:
                path.rmdir()
            except OSError:
                pass
        for cached in ("api_client", "core", "_leases"):
            self.__dict__.pop(cached, None)

    # --- power ---
    # A powered-off node must never heartbeat again until powered on. Dropping it from kwok's
    # label selector is not enough on its own: a node whose first lease sync is still in
    # flight when it is dropped gets re-adopted by kwok (a race in kwok's lease controller).
    # So power-off also takes the node's Lease over, under our holder name and a duration
    # kwok cannot wait out. The take-over renews the Lease once, as a last heartbeat at the
    # moment of power-off: the node controller (1.37, NodeControllerLeaseCircuitBreaker)
    # treats a Lease that changed without a newer renewTime as a stale cache and would
    # never mark the node NotReady. Power-on deletes that Lease; kwok creates a fresh one.
    POWER_OFF_HOLDER = "zoneproof.dev/powered-off"

    @cached_property
    def _leases(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api_client)

    def _set_power(self, name: str, state: str) -> None:
        try:
            self.core.patch_node(name, {"metadata": {"labels": {labels.POWER: state}}})
        except ApiException as err:
            if err.status == 404:
                raise ClusterError(f"no node named {name!r} in cluster {self.spec.name!r}") from err
            raise
        log.info("node %s powered %s", name, state)

    @retry(retry=retry_if_exception(is_conflict), stop=stop_after_attempt(20), wait=wait_fixed(0.1), reraise=True)
    def _seize_lease(self, name: str) -> None:
        try:
            lease = self._leases.read_namespaced_lease(name, LEASE_NAMESPACE)
        except ApiException as err:
            if err.status != 404:
                raise
            # No heartbeat yet: hold the name so that kwok cannot start one.
            self._leases.create_namespaced_lease(LEASE_NAMESPACE, client.V1Lease(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1LeaseSpec(holder_identity=self.POWER_OFF_HOLDER,
                                        lease_duration_seconds=POWER_OFF_LEASE_SECONDS,
                                        renew_time=datetime.now(timezone.utc))))
            return
        lease.spec.holder_identity = self.POWER_OFF_HOLDER
        lease.spec.lease_duration_seconds = POWER_OFF_LEASE_SECONDS
        lease.spec.renew_time = datetime.now(timezone.utc)
        self._leases.replace_namespaced_lease(name, LEASE_NAMESPACE, lease)

    def _release_lease(self, name: str) -> None:
        try:
            lease = self._leases.read_namespaced_lease(name, LEASE_NAMESPACE)
            if lease.spec.holder_identity == self.POWER_OFF_HOLDER:
                self._leases.delete_namespaced_lease(name, LEASE_NAMESPACE)
        except ApiException as err:
            if err.status != 404:
                raise

    def stop_node(self, name: str) -> None:
        self._set_power(name, labels.POWER_OFF)
        self._seize_lease(name)

    def start_node(self, name: str) -> None:
        self._release_lease(name)
        self._set_power(name, labels.POWER_ON)


    def partition_node(self, name: str) -> None:
        """kwok stops heartbeating for the node, as a kubelet cut off does; the fake ECS is
        not told, so its instance keeps running with its disks attached."""
        self.stop_node(name)

    def heal_node(self, name: str) -> None:
        self.start_node(name)



    def recreate_node(self, name: str, *, zone: str = "", instance_id: str = "") -> None:
        node = machine_made_again(plan_nodes(self.spec), self.spec, name, zone, instance_id)
        self._release_lease(name)  # a Lease held by a power-off would keep the new node NotReady
        self.core.create_node(node_manifest(node))
        self.wait_nodes_ready([name], timeout=60)
        log.info("node %s made again in %s as %s", name, node.zone, node.instance_id)
