"""The reference driver deployed into a local cluster, as local processes:

- the fake ECS (its state in the deployment directory), holding one instance per node;
- the driver's controller endpoint, and one node endpoint per node, on unix sockets;
- the real ``csi-provisioner`` and ``csi-attacher`` sidecars against the controller socket;
- the ``CSIDriver`` object, and each node registered as kubelet would.

Everything lives under ``<cluster dir>/driver``; ``down()`` stops every process whose
command line names that directory, so a failed or interrupted run leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from zoneproof import labels, toolchain
from zoneproof.cluster.base import ClusterError
from zoneproof.cluster.local import LocalProvider
from zoneproof.csi import registrar
from zoneproof.csi.identity import DRIVER_NAME
from zoneproof.ecs.admin import EcsAdmin, EcsProcess
from zoneproof.ecs.server import DEFAULT_CREDENTIALS
from zoneproof.processes import kill_processes_under, processes_under, start_process
from zoneproof.waiting import wait_for

log = logging.getLogger(__name__)

STATE_FILE = "deployment.json"


class DriverError(ClusterError):
    """The driver cannot be deployed or is in the way; the message says why."""


class LocalDriver:
    def __init__(self, provider: LocalProvider, *, zone_policy: str = "topology",
                 zone_categories: dict[str, tuple[str, ...]] | None = None):
        self.provider = provider
        self.zone_policy = zone_policy
        self.zone_categories = zone_categories or {}  # zones selling fewer disk categories than all
        self.workdir = provider.cluster_dir / "driver"
        self.ecs: EcsProcess | None = None

    @property
    def ecs_endpoint(self) -> str:
        return json.loads((self.workdir / STATE_FILE).read_text())["ecs_endpoint"]

    def is_up(self) -> bool:
        return (self.workdir / STATE_FILE).is_file() and bool(processes_under(self.workdir))

    def running_policy(self) -> str | None:
        """The zone policy of the deployment running in this cluster, if one is."""
        if not self.is_up():
            return None
        return json.loads((self.workdir / STATE_FILE).read_text())["zone_policy"]

    def _serve_args(self, endpoint: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "zoneproof.cli", "csi", "serve", "--endpoint", endpoint,
                "--ecs-endpoint", self.ecs.endpoint, "--region", self.provider.spec.region, *extra]

    def up(self) -> None:
        if not self.provider.is_up():
            raise DriverError(f"cluster {self.provider.spec.name!r} is not running; start it first")
        if self.is_up():
            raise DriverError(f"the driver is already deployed in {self.provider.spec.name!r}; "
                              "run `zoneproof driver down` first")
        sidecars = {b: str(toolchain.binary(b)) for b in ("csi-provisioner", "csi-attacher")}
        started = time.monotonic()
        shutil.rmtree(self.workdir, ignore_errors=True)
        logs = self.workdir / "logs"
        try:
            spec = self.provider.spec
            categories = [f"--categories={zone}={','.join(cats)}" for zone, cats in self.zone_categories.items()]
            self.ecs = EcsProcess(self.workdir / "ecs.sqlite", log_path=logs / "fake-ecs.log", args=(
                "--region", spec.region, "--zones", ",".join(spec.zones), *categories)).start()
            EcsAdmin(self.ecs.endpoint).register_instances(self.provider.instances())
            env = dict(os.environ)
            key_id, secret = next(iter(DEFAULT_CREDENTIALS.items()))
            env.update(ALIBABA_CLOUD_ACCESS_KEY_ID=key_id, ALIBABA_CLOUD_ACCESS_KEY_SECRET=secret)

            controller = f"unix://{self.workdir}/controller.sock"
            start_process("csi-controller", self._serve_args(controller, "--zone-policy", self.zone_policy,
                                                             "--controller-zone", spec.zones[0]), logs, env)
            nodes = {}
            for name in self.provider.nodes():
                node = self.provider.core.read_node(name)
                endpoint = f"unix://{self.workdir}/nodes/{name}.sock"
                start_process(f"csi-node-{name}", self._serve_args(
                    endpoint, "--node-id", node.metadata.labels[labels.INSTANCE_ID],
                    "--node-zone", node.metadata.labels[labels.ZONE]), logs, env)
                nodes[name] = endpoint

            storage = client.StorageV1Api(self.provider.api_client)
            self._ensure_csidriver(storage)
            for name, endpoint in nodes.items():
                registrar.register(self.provider.api_client, name, DRIVER_NAME, registrar.node_info(endpoint))

            socket = controller[len("unix://"):]
            kubeconfig = str(self.provider.kubeconfig)
            start_process("csi-provisioner", [
                sidecars["csi-provisioner"], f"--csi-address={socket}", f"--kubeconfig={kubeconfig}",
                "--strict-topology", "--extra-create-metadata", "--leader-election=false", "--timeout=60s",
                "--retry-interval-start=1s", "--retry-interval-max=30s", "--worker-threads=16",
                "--v=3"], logs)
            start_process("csi-attacher", [
                sidecars["csi-attacher"], f"--csi-address={socket}", f"--kubeconfig={kubeconfig}",
                "--leader-election=false", "--timeout=60s", "--retry-interval-start=1s", "--retry-interval-max=30s",
                "--worker-threads=16", "--v=3"], logs)
            (self.workdir / STATE_FILE).write_text(json.dumps({
                "ecs_endpoint": self.ecs.endpoint, "zone_policy": self.zone_policy}))
            self._wait_sidecars(logs)
        except BaseException:
            log.warning("driver deployment failed; stopping what was started")
            self.down()
            raise
        log.info("driver %s up in %.1fs (zone policy %s, fake ECS at %s)", DRIVER_NAME,
                 time.monotonic() - started, self.zone_policy, self.ecs.endpoint)

    def _ensure_csidriver(self, storage: client.StorageV1Api) -> None:
        body = client.V1CSIDriver(metadata=client.V1ObjectMeta(name=DRIVER_NAME), spec=client.V1CSIDriverSpec(
            attach_required=True, pod_info_on_mount=False, volume_lifecycle_modes=["Persistent"]))
        try:
            storage.create_csi_driver(body)
        except ApiException as err:
            if err.status != 409:
                raise

    def _wait_sidecars(self, logs: Path) -> None:
        """Both sidecars must have connected to the driver and found its name."""
        def check():
            pending = []
            for name in ("csi-provisioner", "csi-attacher"):
                text = (logs / f"{name}.log").read_text(errors="replace") if (logs / f"{name}.log").exists() else ""
                if DRIVER_NAME not in text:
                    pending.append(name)
            return not pending, f"waiting on {', '.join(pending)}"
        wait_for(check, what="the CSI sidecars to connect to the driver", timeout=60)

    def down(self) -> None:
        try:
            if self.provider.is_up():
                self._unregister()
        finally:
            kill_processes_under(self.workdir, leftovers=False)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _unregister(self) -> None:
        for name in self.provider.nodes():
            try:
                registrar.unregister(self.provider.api_client, name, DRIVER_NAME)
            except ApiException as err:
                log.warning("could not unregister %s from %s: %s", DRIVER_NAME, name, err.reason)
        try:
            client.StorageV1Api(self.provider.api_client).delete_csi_driver(DRIVER_NAME)
        except ApiException as err:
            if err.status != 404:
                raise
