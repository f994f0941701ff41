"""The kind provider: every node a container with its own systemd, containerd and kubelet,
made by kind (sigs.k8s.io/kind, built from the Go module proxy like the other tools).

Same cluster spec as the local provider: one control plane plus zones × nodes-per-zone
workers, each worker labelled as an ACK worker (zone and region keys, its ECS instance
id, an ``alicloud://`` providerID), the node-lifecycle timings applied through kubeadm
patches. Power is the container runtime's: ``docker kill`` is a power cut (the kubelet
dies with its node and its lease expires), ``docker start`` brings the node back. A node
made again as another machine (another instance, in another zone) is its container started
with its kubelet's flags rewritten: the kubelet registers it with the new labels.

Two things a normal Docker host has may be missing; each is detected, logged and can be
forced: kind's stock node image (no registry reachable: a node image is built here, see
:mod:`zoneproof.cluster.nodeimage`) and ``docker run --privileged`` (a capability missing
from the host's bounding set: kind runs through :mod:`zoneproof.cluster.dockershim`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

import yaml

from zoneproof import labels, toolchain
from zoneproof.cluster import dockershim
from zoneproof.cluster import docker as docker_daemon
from zoneproof.cluster.base import Capabilities, ClusterError, ClusterProvider, NodeState, OwnClusterMixin
from zoneproof.cluster.blockdev import release_under
from zoneproof.cluster.docker import Docker
from zoneproof.cluster.local import state_root
from zoneproof.cluster.nodeimage import BUSYBOX_IMAGE, NodeImageBuilder
from zoneproof.cluster.nodes import PlannedNode, instance_id, machine_made_again
from zoneproof.cluster.spec import NODE_IMAGE_CHOICES, PRIVILEGED_CHOICES, ClusterSpec
from zoneproof.ecs.catalog import INSTANCE_TYPE
from zoneproof.processes import kill_processes_under

log = logging.getLogger(__name__)

SPEC_FILE = "zoneproof-cluster.json"
POD_SUBNET = "10.244.0.0/16"
KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"  # kind labels every node container with it
KIND_NETWORK = "kind"  # the docker network kind puts every cluster's nodes on
# kind's own default for its version (pkg/apis/config/defaults/image.go of kind v0.33.0).
STOCK_NODE_IMAGE = "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5"


class KindWorker(PlannedNode):
    """A worker as kind names it (``<cluster>-worker``, ``-worker2``, ...) with its zone."""

    @property
    def labels(self) -> dict[str, str]:
        # The driver's own topology key is absent on purpose: the kubelet adds it from the
        # node plugin's NodeGetInfo answer.
        return {labels.ZONE: self.zone, labels.REGION: self.region, labels.ZONE_DEPRECATED: self.zone,
                labels.REGION_DEPRECATED: self.region, labels.INSTANCE_ID: self.instance_id,
                labels.INSTANCE_TYPE: INSTANCE_TYPE.name}


def plan_workers(spec: ClusterSpec) -> list[KindWorker]:
    workers = []
    for index, zone in enumerate(z for z in spec.zones for _ in range(spec.nodes_per_zone)):
        name = f"{spec.name}-worker{index + 1 if index else ''}"
        workers.append(KindWorker(name, zone, spec.region, instance_id(spec.name, spec.region, name)))
    return workers


def kind_config(spec: ClusterSpec, *, own_pod_network: bool) -> dict:
    """The kind Cluster config: nodes, labels, providerIDs and the node-lifecycle timings."""
    t = spec.timings.scaled()

    def extra_args(path: str, pairs: dict[str, str]) -> list[dict]:
        return [{"op": "add", "path": f"{path}/-", "value": {"name": k, "value": v}} for k, v in pairs.items()]

    cluster_patch = [
        *extra_args("/controllerManager/extraArgs", {
            "node-monitor-grace-period": f"{t.node_monitor_grace_period:g}s",
            "node-monitor-period": f"{t.node_monitor_period:g}s",
            "node-eviction-rate": f"{t.node_eviction_rate:g}",
        }),
        *extra_args("/apiServer/extraArgs", {
            "default-not-ready-toleration-seconds": str(t.not_ready_toleration),
            "default-unreachable-toleration-seconds": str(t.unreachable_toleration),
        }),
    ]
    nodes: list[dict] = [{"role": "control-plane"}]
    for worker in plan_workers(spec):
        # kind passes --provider-id as the second kubelet argument; the test op makes the
        # patch fail loudly should that ever change.
        provider_patch = [
            {"op": "test", "path": "/nodeRegistration/kubeletExtraArgs/1/name", "value": "provider-id"},
            {"op": "replace", "path": "/nodeRegistration/kubeletExtraArgs/1/value", "value": worker.provider_id},
        ]
        nodes.append({
            "role": "worker",
            "labels": worker.labels,
            "kubeadmConfigPatchesJSON6902": [{"group": "kubeadm.k8s.io", "version": "v1beta4",
                                              "kind": "JoinConfiguration", "patch": yaml.safe_dump(provider_patch)}],
        })
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": spec.name,
        "networking": {"podSubnet": POD_SUBNET, "disableDefaultCNI": own_pod_network},
        "kubeadmConfigPatches": [yaml.safe_dump({
            "kind": "KubeletConfiguration",
            "nodeStatusUpdateFrequency": f"{t.node_status_update_frequency:g}s",
            "nodeLeaseDurationSeconds": t.node_lease_duration,
        })],
        "kubeadmConfigPatchesJSON6902": [{"group": "kubeadm.k8s.io", "version": "v1beta4",
                                          "kind": "ClusterConfiguration", "patch": yaml.safe_dump(cluster_patch)}],
        "nodes": nodes,
    }


# Where kubeadm leaves the kubelet's per-node flags (kubeletExtraArgs), read at each start.
KUBELET_FLAGS_FILE = "/var/lib/kubelet/kubeadm-flags.env"
KUBELET_FLAGS = re.compile(r'^(KUBELET_KUBEADM_ARGS=")(.*)(")\s*$', re.MULTILINE)


def kubelet_flags_for(text: str, worker: KindWorker) -> str:
    """kubeadm's flags file with the node's labels and providerID those of ``worker``, every
    other flag as it was. A file without both flags is a ClusterError: a node registered
    from it would not name its machine."""
    found = KUBELET_FLAGS.search(text)
    if not found:
        raise ClusterError(f"{KUBELET_FLAGS_FILE} holds no KUBELET_KUBEADM_ARGS line: {text!r}")
    wanted = {"--node-labels": ",".join(f"{k}={v}" for k, v in sorted(worker.labels.items())),
              "--provider-id": worker.provider_id}
    args = shlex.split(found.group(2))
    missing = [flag for flag in wanted if not any(arg.startswith(flag + "=") for arg in args)]
    if missing:
        raise ClusterError(f"{KUBELET_FLAGS_FILE} has no {', '.join(missing)}: {found.group(2)!r}")
    args = [f"{flag}={wanted[flag]}" if (flag := arg.partition("=")[0]) in wanted else arg for arg in args]
    return text[:found.start(2)] + shlex.join(args) + text[found.end(2):]


def pack_one(name: str, content: bytes) -> bytes:
    """A tar holding one file, as ``docker cp -`` takes it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(content), 0o644
        tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def unpack_one(packed: bytes) -> bytes:
    """The one file of a tar ``docker cp ... -`` gave."""
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        files = [m for m in tar.getmembers() if m.isfile()]
        if len(files) != 1:
            raise ClusterError(f"expected one file from docker cp, got {[m.name for m in tar.getmembers()]}")
        return tar.extractfile(files[0]).read()


def pod_network_manifest(cluster: str) -> list[dict]:
    text = (resources.files("zoneproof.cluster") / "kind_files" / "pod-network.yaml").read_text()
    # Only these three placeholders are ours; the agent's shell variables stay as written.
    for name, value in (("POD_SUBNET", POD_SUBNET), ("API_SERVER", f"{cluster}-control-plane:6443"),
                        ("IMAGE", BUSYBOX_IMAGE)):
        text = text.replace("${" + name + "}", value)
    return [doc for doc in yaml.safe_load_all(text) if doc]



class KindProvider(OwnClusterMixin, ClusterProvider):
    PROVIDER = "kind"
    capabilities = Capabilities(runs_kubelets=True, recreates_nodes=True, rezones_nodes=True, partitions_nodes=True)

    def __init__(self, spec: ClusterSpec, *, workdir: Path | None = None, node_image: str = "auto",
                 privileged: str = "auto"):
        if node_image not in NODE_IMAGE_CHOICES:
            raise ClusterError(f"node image choice {node_image!r} is not one of {', '.join(NODE_IMAGE_CHOICES)}")
        if privileged not in PRIVILEGED_CHOICES:
            raise ClusterError(f"privileged choice {privileged!r} is not one of {', '.join(PRIVILEGED_CHOICES)}")
        self.spec = spec
        self.workdir = workdir or state_root() / "kind"
        self.node_image_choice = node_image
        self.privileged_choice = privileged

    # --- paths and state ---
    @property
    def cluster_dir(self) -> Path:
        return self.workdir / "clusters" / self.spec.name

    @property
    def kubeconfig(self) -> Path:
        return self.cluster_dir / "kubeconfig.yaml"

    @property
    def state_file(self) -> Path:
        return self.cluster_dir / SPEC_FILE

    @property
    def disk_root(self) -> Path:
        """Host folder where the fake ECS keeps the disks' images, one folder per zone; no
        node sees it: a disk reaches a node as a block device its attach makes there
        (zoneproof.cluster.blockdev)."""
        return self.cluster_dir / "disks"

    def host_address(self) -> str:
        """The host's address on the nodes' network (its gateway): where nodes reach
        services zoneproof runs on the host, such as the fake ECS."""
        out = self._docker().run("network", "inspect", KIND_NETWORK, "--format",
                                 "{{range .IPAM.Config}}{{.Gateway}} {{end}}").stdout.decode().split()
        ipv4 = [a for a in out if "." in a]
        if not ipv4:
            raise ClusterError(f"the kind network has no IPv4 gateway ({out})")
        return ipv4[0]

    def load_images(self, *tags: str) -> None:
        """Load locally built images into every node's containerd (nothing is pulled). An
        image already loaded into this cluster under the same id is not loaded again (the
        nodes keep it across power cuts): a redeployed driver starts tens of seconds sooner."""
        state = self._state()
        docker = self._docker()
        ids = {tag: docker.image_id(tag) for tag in tags}
        loaded = state.get("loaded_images", {})
        missing = [tag for tag in tags if loaded.get(tag) != ids[tag]]
        if not missing:
            log.info("images %s are already in the nodes", ", ".join(tags))
            return
        archive = self.cluster_dir / "images.tar"
        try:
            docker.run("save", "-o", str(archive), *missing)
            self._kind(docker, bool(state.get("shim")), "load", "image-archive", str(archive), "--name",
                       self.spec.name)
        finally:
            archive.unlink(missing_ok=True)
        state = self._state()
        state["loaded_images"] = {**state.get("loaded_images", {}), **{tag: ids[tag] for tag in missing}}
        self.state_file.write_text(json.dumps(state, indent=2))

    @classmethod
    def attach(cls, name: str, *, workdir: Path | None = None) -> "KindProvider":
        probe = cls(ClusterSpec(name=name), workdir=workdir)
        if not probe.state_file.is_file():
            raise ClusterError(f"no kind cluster named {name!r} made by zoneproof (looked in {probe.cluster_dir})")
        state = json.loads(probe.state_file.read_text())
        return cls(ClusterSpec.from_dict(state["spec"]), workdir=workdir)

    def _state(self) -> dict:
        return json.loads(self.state_file.read_text())

    # --- kind and docker ---
    def _kind(self, docker: Docker, shim: bool, *args: str, timeout: float = 600) -> str:
        env = docker.env()
        if shim:
            shim_dir = dockershim.install(self.cluster_dir / "docker-shim", docker_daemon.docker_binary(),
                                          self._lib_modules())
            env["PATH"] = f"{shim_dir}{os.pathsep}{env.get('PATH', '')}"
        cmd = [str(toolchain.binary("kind")), *args]
        log.debug("running %s", " ".join(cmd))
        # kind's progress goes to stderr; keep it beside the cluster for whoever debugs a failure.
        kind_log = self.cluster_dir / "kind.log"
        with open(kind_log, "a") as err:
            err.write(f"$ {' '.join(cmd)}\n")
            err.flush()
            proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout)
        if proc.returncode != 0:
            # The log goes with the cluster folder when a failed bring-up is torn down: quote it.
            tail = kind_log.read_text()[-3000:]
            raise ClusterError(f"`kind {' '.join(args[:3])}` failed ({proc.returncode}); kind's log ends:\n{tail}")
        return proc.stdout

    def _lib_modules(self) -> Path | None:
        if Path("/lib/modules").is_dir():
            return None
        empty = self.cluster_dir / "lib-modules"  # kind mounts /lib/modules read-only into nodes
        empty.mkdir(parents=True, exist_ok=True)
        return empty

    def _containers(self, docker: Docker) -> dict[str, str]:
        """Node container name -> id, for every container kind labelled with this cluster."""
        out = docker.run("ps", "-a", "--filter", f"label={KIND_CLUSTER_LABEL}={self.spec.name}",
                         "--format", "{{.Names}} {{.ID}}").stdout.decode()
        return dict(line.split() for line in out.splitlines() if line.strip())

    def _node_image(self, docker: Docker) -> tuple[str, bool]:
        """The node image to use and whether it is ours (built here)."""
        choice = self.node_image_choice
        if choice in ("auto", "stock"):
            if docker.has_image(STOCK_NODE_IMAGE):
                return STOCK_NODE_IMAGE, False
            pulled = docker.run("pull", STOCK_NODE_IMAGE, check=False, timeout=900)
            if pulled.returncode == 0:
                return STOCK_NODE_IMAGE, False
            why = pulled.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no answer"]
            if choice == "stock":
                raise ClusterError(f"kind's node image {STOCK_NODE_IMAGE} cannot be had: {why[0]}")
            log.info("kind's node image cannot be pulled (%s); using a node image built from Debian packages "
                     "and Go modules instead", why[0])
        return NodeImageBuilder(docker).ensure(), True

    def _needs_shim(self, docker: Docker, image: str) -> bool:
        if self.privileged_choice != "auto":
            return self.privileged_choice == "shim"
        probe = docker.run("run", "--rm", "--privileged", "--entrypoint", "/bin/true", image, check=False,
                           timeout=120)
        if probe.returncode == 0:
            return False
        missing = dockershim.missing_capabilities()
        log.info("`docker run --privileged` fails here (%s); kind runs through a shim that grants every "
                 "capability but %s", probe.stderr.decode(errors="replace").strip()[-200:],
                 ", ".join(missing) or "none")
        return True

    # --- lifecycle ---
    def up(self) -> None:
        self.spec.validate()
        if self.spec.bugs:
            raise ClusterError(f"bug(s) {', '.join(self.spec.bugs)}: kind clusters are not built with cluster bugs; "
                               "start a local cluster (--provider local) to carry them")
        if self.exists():
            state = "is already running" if self.is_up() else "exists but does not answer"
            raise ClusterError(
                f"kind cluster {self.spec.name!r} {state} (kubeconfig {self.kubeconfig}); run "
                f"`zoneproof cluster down --provider kind --name {self.spec.name}` first, or pick another --name")
        docker = docker_daemon.acquire(self.spec.name)
        if self._containers(docker):
            if docker.private:
                docker_daemon.release(self.spec.name)
            raise ClusterError(f"a kind cluster named {self.spec.name!r} exists that zoneproof did not make; "
                               "zoneproof leaves it alone: pick another --name")
        started = time.monotonic()
        self.cluster_dir.mkdir(parents=True)
        # kind makes its network on first use and leaves it; remove it at down only if made here.
        made_network = docker.run("network", "inspect", KIND_NETWORK, check=False).returncode != 0
        state = {"spec": self.spec.to_dict(), "docker_host": docker.host, "private_docker": docker.private,
                 "containers": {}, "made_network": made_network}
        self.state_file.write_text(json.dumps(state, indent=2))
        try:
            image, ours = self._node_image(docker)
            shim = self._needs_shim(docker, image)
            state.update(node_image=image, shim=shim)
            self.state_file.write_text(json.dumps(state, indent=2))
            log.info("starting kind cluster %r: %d zones × %d workers in %s, node image %s%s",
                     self.spec.name, len(self.spec.zones), self.spec.nodes_per_zone, self.spec.region, image,
                     ", docker through the --privileged shim" if shim else "")
            config = kind_config(self.spec, own_pod_network=ours)
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=self.cluster_dir, delete=False) as cfg:
                yaml.safe_dump(config, cfg)
            self._kind(docker, shim, "create", "cluster", "--name", self.spec.name, "--config", cfg.name,
                       "--image", image, "--kubeconfig", str(self.kubeconfig), "--retain", "-v", "1")
            state["containers"] = self._containers(docker)
            self.state_file.write_text(json.dumps(state, indent=2))
            log.info("kind nodes created after %.0fs", time.monotonic() - started)
            if ours:
                self._install_pod_network()
            self.wait_nodes_ready(self.nodes(), timeout=240)
        except BaseException as err:
            log.warning("bring-up of %r failed (%s); tearing down what was started", self.spec.name, err)
            try:
                self.down()
            except Exception as cleanup_err:  # noqa: BLE001 - report, but keep the original error
                log.error("clean-up after the failed bring-up also failed: %s", cleanup_err)
            raise
        log.info("kind cluster %r ready in %.1fs; kubeconfig: %s", self.spec.name, time.monotonic() - started,
                 self.kubeconfig)

    def _install_pod_network(self) -> None:
        from kubernetes import utils  # the API client's own create-from-dicts

        for doc in pod_network_manifest(self.spec.name):
            utils.create_from_dict(self.api_client, doc)

    def down(self) -> None:
        if not self.state_file.is_file():
            if self.cluster_dir.exists():
                shutil.rmtree(self.cluster_dir, ignore_errors=True)
            return
        state = self._state()
        docker = Docker(state["docker_host"], private=state["private_docker"])
        log.info("deleting kind cluster %r", self.spec.name)
        try:
            if docker.answers():
                found = self._containers(docker)
                recorded = state.get("containers") or {}
                strangers = {n for n, i in found.items() if recorded and recorded.get(n) != i}
                if strangers:
                    raise ClusterError(f"containers {', '.join(sorted(strangers))} of kind cluster "
                                       f"{self.spec.name!r} were not made by this zoneproof cluster; left alone")
                if found:
                    self._kind(docker, bool(state.get("shim")), "delete", "cluster", "--name", self.spec.name,
                               "--kubeconfig", str(self.kubeconfig), timeout=300)
                if state.get("made_network"):
                    self._remove_network_if_unused(docker)
        finally:
            # A driver whose deployment was never taken down (a test that failed half-way)
            # still runs from this folder: the safety net stops it before the folder goes.
            kill_processes_under(self.cluster_dir)
            # ... and a fake ECS killed before it released its disks' loop devices.
            release_under(self.cluster_dir)
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
            if docker.private:
                docker_daemon.release(self.spec.name)
            for path in (self.workdir / "clusters", self.workdir):
                try:
                    path.rmdir()
                except OSError:
                    pass
            for cached in ("api_client", "core"):
                self.__dict__.pop(cached, None)

    @staticmethod
    def _remove_network_if_unused(docker: Docker) -> None:
        attached = docker.run("network", "inspect", KIND_NETWORK, "--format", "{{len .Containers}}", check=False)
        if attached.returncode == 0 and attached.stdout.decode().strip() == "0":
            docker.run("network", "rm", KIND_NETWORK, check=False)

    # --- power ---
    def _docker(self) -> Docker:
        state = self._state()
        return Docker(state["docker_host"], private=state["private_docker"])

    def _container(self, name: str) -> str:
        containers = self._state().get("containers") or {}
        if name not in containers or name.endswith("-control-plane"):
            workers = sorted(n for n in containers if not n.endswith("-control-plane"))
            raise ClusterError(f"no worker named {name!r} in kind cluster {self.spec.name!r} "
                               f"(workers: {', '.join(workers)})")
        return containers[name]

    def stop_node(self, name: str) -> None:
        """A power cut: the node container is killed, kubelet and pods with it."""
        self._docker().run("kill", self._container(name))
        log.info("node %s powered off (container killed)", name)

    def start_node(self, name: str) -> None:
        self._docker().run("start", self._container(name))
        log.info("node %s powered on (container started)", name)


    def partition_node(self, name: str) -> None:
        """The node's kubelet stopped; its container, its pods' processes and its devices
        stay, as on a machine cut off from the control plane."""
        self.run_on_node(name, "systemctl", "stop", "kubelet")
        log.info("node %s cut off (kubelet stopped)", name)

    def heal_node(self, name: str) -> None:
        self.run_on_node(name, "systemctl", "start", "kubelet")
        log.info("node %s back (kubelet started)", name)


    def recreate_node(self, name: str, *, zone: str = "", instance_id: str = "") -> None:
        """Its container started again, its kubelet's flags naming the machine it is now:
        as planned, or, given ``zone`` and ``instance_id``, another machine in another zone.
        The kubelet registers the Node anew with those labels and providerID, and the node
        plugin's DaemonSet comes back on it."""
        worker = machine_made_again(plan_workers(self.spec), self.spec, name, zone, instance_id)
        container, docker = self._container(name), self._docker()
        # kubeadm wrote the kubelet's flags once, at join; docker cp reaches a stopped container
        # too, so the kubelet reads the new ones at its first start.
        packed = docker.run("cp", f"{container}:{KUBELET_FLAGS_FILE}", "-").stdout
        flags = unpack_one(packed).decode()
        docker.run("cp", "-", f"{container}:{Path(KUBELET_FLAGS_FILE).parent}",
                   input=pack_one(Path(KUBELET_FLAGS_FILE).name, kubelet_flags_for(flags, worker).encode()))
        docker.run("restart" if self.node_powered(name) else "start", container)
        self.wait_nodes_ready([name], timeout=180)
        log.info("node %s registered again in %s as %s (container started)", name, worker.zone, worker.instance_id)

    def node_powered(self, name: str) -> bool:
        out = self._docker().run("inspect", "--format", "{{.State.Running}}", self._container(name)).stdout
        return out.decode().strip() == "true"

    def run_on_node(self, name: str, *argv: str) -> str:
        """Run a command in a worker's node container (its namespaces, its /dev); its output."""
        return self._docker().run("exec", self._container(name), *argv, timeout=120).stdout.decode()

    def node_states(self) -> list[NodeState]:
        """As for every provider, with power read from the container runtime."""
        out = self._docker().run("ps", "--filter", f"label={KIND_CLUSTER_LABEL}={self.spec.name}",
                                 "--format", "{{.Names}}").stdout.decode()
        running = set(out.split())
        return [replace(s, powered=s.name in running) for s in super().node_states()]
