"""A driver under test deployed beside a local cluster, as its profile says, as local
processes:

- the fake ECS (its state in the deployment directory), holding one instance per node,
  which cuts a node's power when its instance is stopped through the ECS API;
- the driver's controller, from the profile's command and environment templates;
- per node, the profile's node command (a node endpoint the registrar asks NodeGetInfo,
  as kubelet would) or a stand-in that reports what the real node plugin would;
- the real ``csi-provisioner`` and ``csi-attacher`` sidecars with the profile's flags;
- the ``CSIDriver`` object from the profile;
- the bugs of ``zoneproof.bugs`` it is asked to carry (by default those in
  ``ZONEPROOF_BUGS``), each handed to where it lives: the driver's processes, the fake
  ECS or the sidecars' flags; a cluster bug must be in the cluster already.

Every process is recorded by pid and start time in ``<cluster dir>/driver/deployment.json``
as it starts, so ``down()`` stops exactly those process groups, even after an interrupted
``up()``. Logs go to a directory of the caller's choice (``reports/`` in ``zoneproof e2e``)
and are kept after ``down()``: they are the evidence of a failure.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from zoneproof import bugs as bug_catalogue
from zoneproof import labels, toolchain
from zoneproof.cloud import CloudAccess
from zoneproof.cluster.base import ClusterError, ClusterProvider
from zoneproof.deploy import registrar
from zoneproof.ecs.admin import EcsAdmin, EcsProcess
from zoneproof.ecs import catalog
from zoneproof.ecs.catalog import DEFAULT_CATEGORIES
from zoneproof.processes import start_process, start_time, stop_groups
from zoneproof.profile import CATEGORY_VAR, Command, DriverProfile, ProfileError, load_profile
from zoneproof.waiting import wait_for

log = logging.getLogger(__name__)

STATE_FILE = "deployment.json"
REGISTER_THREADS = 8  # nodes registered at once
LEFTOVERS_FILE = "cloud-leftovers.jsonl"


class DriverError(ClusterError):
    """The driver cannot be deployed or is in the way; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Vars(dict):
    """Template values; ``{free_port}`` draws a new free port for each command."""

    def __missing__(self, key: str) -> str:
        if key == "free_port":
            self[key] = str(free_port())
            return self[key]
        raise KeyError(key)


def render(command: Command, values: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    values = _Vars(values)
    return ([arg.format_map(values) for arg in command.args],
            {key: value.format_map(values) for key, value in command.env.items()})


@dataclass(frozen=True)
class RunningDeployment:
    """What ``deployment.json`` records of a deployment."""

    profile: str
    zone_policy: str
    ecs_endpoint: str
    logs: str
    processes: dict[str, tuple[int, int]]  # name -> (pid, start time)
    bugs: tuple[str, ...] = ()

    @property
    def alive(self) -> bool:
        """Every recorded process still runs (none died, none is another's recycled pid)."""
        return bool(self.processes) and all(start_time(pid) == started for pid, started in self.processes.values())


def running_deployment(provider: ClusterProvider) -> RunningDeployment | None:
    """What ``deployment.json`` of a local cluster records, if a deployment was made there."""
    path = provider.cluster_dir / "driver" / STATE_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return RunningDeployment(data["profile"], data["zone_policy"], data["ecs_endpoint"], data["logs"],
                             {k: tuple(v) for k, v in data["processes"].items()}, tuple(data.get("bugs", ())))


def parse_zone_categories(values: tuple[str, ...] | list[str], zones: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """``--zone-categories`` of a deployment (zoneproof.ecs.catalog parses them); a wrong
    value is a DriverError, refused before anything starts."""
    try:
        return catalog.parse_zone_categories(values, zones)
    except ValueError as err:
        raise DriverError(str(err)) from None


def check_run_inputs(profile: DriverProfile, driver_binary: str | None) -> None:
    """What zoneproof needs to run a profile's driver, checked before anything starts."""
    if profile.run is None:
        raise DriverError(f"profile {profile.name!r} has no run section, so zoneproof cannot run the driver; "
                          "deploy it into a cluster yourself and use --provider existing")
    if profile.run.needs_binary:
        if not driver_binary:
            raise DriverError(f"profile {profile.name!r} runs a driver binary you build from its source tree: "
                              "pass --driver-binary PATH")
        if not (Path(driver_binary).is_file() and os.access(driver_binary, os.X_OK)):
            raise DriverError(f"--driver-binary {driver_binary}: not an executable file")


class DriverDeployment:
    # ``provider``: a cluster zoneproof made (local or kind), its state beside the deployment's.
    def __init__(self, provider: ClusterProvider, profile: DriverProfile, *, zone_policy: str | None = None,
                 zone_categories: dict[str, tuple[str, ...]] | None = None, driver_binary: str | None = None,
                 logs: Path | None = None, bugs: tuple[str, ...] | None = None):
        self.provider = provider
        self.bugs = bug_catalogue.from_env() if bugs is None else bug_catalogue.parse(bugs)
        self.profile = profile
        self.zone_policy = zone_policy or profile.zone_policies[0]
        self.zone_categories = zone_categories or {}  # zones selling fewer disk categories than all
        self.driver_binary = driver_binary
        self.workdir = provider.cluster_dir / "driver"
        self.logs = Path(logs) if logs else provider.cluster_dir / "driver-logs"

    # ------------------------------------------------------------ what runs
    def running(self) -> RunningDeployment | None:
        return running_deployment(self.provider)

    def is_up(self) -> bool:
        state = self.running()
        return state is not None and state.alive

    def running_policy(self) -> str | None:
        """The zone policy of the deployment running in this cluster, if one is."""
        state = self.running()
        return state.zone_policy if state and self.is_up() else None

    @property
    def ecs_endpoint(self) -> str:
        state = self.running()
        if state is None or not state.ecs_endpoint:
            raise DriverError(f"no driver is deployed in {self.provider.spec.name!r}")
        return state.ecs_endpoint

    def cloud(self) -> CloudAccess:
        return CloudAccess.fake(self.ecs_endpoint, self.provider.spec.region)

    # The cloud is the fake ECS this deployment started: a disk costs nothing there, so the
    # suites create static disks whatever the profile's static_disks.allowed says.
    cloud_is_ours = True

    def _record(self, **changes) -> None:
        path = self.workdir / STATE_FILE
        data = json.loads(path.read_text()) if path.is_file() else {
            "profile": self.profile.source, "zone_policy": self.zone_policy, "ecs_endpoint": "",
            "logs": str(self.logs), "processes": {}, "bugs": list(self.bugs)}
        processes = changes.pop("processes", {})
        data["processes"].update({name: [pid, start_time(pid)] for name, pid in processes.items()})
        data.update(changes)
        path.write_text(json.dumps(data, indent=2))

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        proc = start_process(name, args, self.logs, dict(os.environ, **env))
        self._record(processes={name: proc.pid})

    # ------------------------------------------------------------ up
    def _check(self) -> None:
        name = self.provider.spec.name
        if not self.provider.is_up():
            raise DriverError(f"cluster {name!r} is not running; start it first")
        if self.is_up():
            raise DriverError(f"a driver is already deployed in {name!r}; run `zoneproof driver down` first")
        check_run_inputs(self.profile, self.driver_binary)
        if self.provider.capabilities.runs_kubelets and self.profile.run.node_plugin is None:
            raise DriverError(f"profile {self.profile.name!r} has no node_plugin to run on nodes with kubelets "
                              f"(cluster {name!r}); it runs on the local provider, whose nodes are stood in for")
        if self.zone_policy not in self.profile.zone_policies:
            raise DriverError(f"profile {self.profile.name!r} declares zone policies "
                              f"{', '.join(self.profile.zone_policies)}, not {self.zone_policy!r}")
        self._check_bugs()

    def _check_bugs(self) -> None:
        in_driver = bug_catalogue.of_layer(self.bugs, *bug_catalogue.DRIVER_LAYERS)
        if in_driver and not self.profile.run.bug_switches:
            raise DriverError(f"bug(s) {', '.join(in_driver)} live in the driver, but profile {self.profile.name!r} "
                              "has no bug_switches (its driver does not read ZONEPROOF_BUGS)")
        missing = [b for b in bug_catalogue.of_layer(self.bugs, "cluster") if b not in self.provider.spec.bugs]
        if missing:
            raise DriverError(f"bug(s) {', '.join(missing)} live in the cluster's configuration, which cluster "
                              f"{self.provider.spec.name!r} was not started with: run `zoneproof cluster up "
                              + " ".join(f"--bug {b}" for b in missing) + "`")
        if "provisioner-without-strict-topology" in self.bugs \
                and "--strict-topology" not in self.profile.run.sidecars["csi-provisioner"]:
            raise DriverError(f"profile {self.profile.name!r} runs csi-provisioner without --strict-topology "
                              "already: bug provisioner-without-strict-topology would change nothing")

    def _sidecar_flags(self, name: str) -> tuple[str, ...]:
        flags = self.profile.run.sidecars[name]
        if name == "csi-provisioner" and "provisioner-without-strict-topology" in self.bugs:
            flags = tuple(f for f in flags if f != "--strict-topology")
        return flags

    def _driver_env(self, env: dict[str, str]) -> dict[str, str]:
        """A driver process's environment: its driver bugs, and none inherited."""
        return {**env, bug_catalogue.ENV: ",".join(bug_catalogue.of_layer(self.bugs, *bug_catalogue.DRIVER_LAYERS))}

    def _values(self, ecs_endpoint: str, socket_path: str) -> dict[str, str]:
        spec = self.provider.spec
        cloud = CloudAccess.fake(ecs_endpoint, spec.region)
        return {"python": sys.executable, "driver": self.profile.driver, "driver_binary": self.driver_binary or "",
                "endpoint": f"unix://{socket_path}", "socket": socket_path, "ecs_endpoint": ecs_endpoint,
                "region": spec.region, "kubeconfig": str(self.provider.kubeconfig),
                "access_key_id": cloud.access_key_id, "access_key_secret": cloud.access_key_secret,
                "zone_policy": self.zone_policy, "controller_zone": spec.zones[0], "workdir": str(self.workdir)}

    def up(self) -> None:
        self._check()
        if self.running() is not None:  # a deployment some of whose processes died: clear what is left
            log.warning("a broken driver deployment is in the way in %r; stopping what is left of it",
                        self.provider.spec.name)
            self.down()
        run = self.profile.run
        sidecars = {b: str(toolchain.binary(b)) for b in ("csi-provisioner", "csi-attacher")}
        started = time.monotonic()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            spec = self.provider.spec
            categories = [f"--categories={zone}={','.join(cats)}" for zone, cats in self.zone_categories.items()]
            provider_args, host = ("--power-provider", self.provider.ref.provider), "127.0.0.1"
            if self.provider.capabilities.runs_kubelets:
                # Nodes reach the host on their network's gateway; disks hold data per zone.
                provider_args += ("--disk-root", str(self.provider.disk_root))
                host = self.provider.host_address()
            ecs = EcsProcess(self.workdir / "ecs.sqlite", log_path=self.logs / "fake-ecs.log", host=host, args=(
                "--region", spec.region, "--zones", ",".join(spec.zones), *categories,
                "--power-cluster", spec.name, *provider_args,
                *bug_catalogue.options(bug_catalogue.of_layer(self.bugs, "cloud"))))
            try:
                ecs.start()
            finally:
                if ecs.proc is not None:
                    self._record(processes={"fake-ecs": ecs.proc.pid})
            self._record(ecs_endpoint=ecs.endpoint)
            EcsAdmin(ecs.endpoint).register_instances(self.provider.instances())

            controller_socket = str(self.workdir / "controller.sock")
            args, env = render(run.controller, self._values(ecs.endpoint, controller_socket))
            self._start("csi-controller", args, self._driver_env(env))
            storage = client.StorageV1Api(self.provider.api_client)
            self._ensure_csidriver(storage)
            # The sidecars wait for the controller's socket themselves: started now, they
            # connect while the nodes are registered.
            kubeconfig = str(self.provider.kubeconfig)
            common = [f"--csi-address={controller_socket}", f"--kubeconfig={kubeconfig}", "--leader-election=false",
                      "--v=3"]
            values = self._values(ecs.endpoint, controller_socket)
            for name, path in sidecars.items():
                flags = [flag.format_map(_Vars(values)) for flag in self._sidecar_flags(name)]
                self._start(name, [path, *common, *flags], {})
            if self.provider.capabilities.runs_kubelets:
                self._deploy_node_plugin(ecs.endpoint)
            else:
                self._register_nodes(ecs.endpoint)
            self._wait_sidecars()
        except BaseException:
            log.warning("driver deployment failed; stopping what was started (logs kept in %s)", self.logs)
            self.down()
            raise
        log.info("driver %s (profile %s) up in %.1fs (zone policy %s, fake ECS at %s, logs in %s)",
                 self.profile.driver, self.profile.name, time.monotonic() - started, self.zone_policy, ecs.endpoint,
                 self.logs)
        if self.bugs:
            log.warning("this deployment carries bug(s) on purpose: %s", ", ".join(self.bugs))

    def _deploy_node_plugin(self, ecs_endpoint: str) -> None:
        """On nodes with kubelets: the node plugin as a DaemonSet, registered by the kubelets."""
        from zoneproof.cluster.docker import attached
        from zoneproof.deploy import incluster
        from zoneproof.deploy.image import BINARY_IN_IMAGE, ensure_binary_image, ensure_driver_image

        plugin = self.profile.run.node_plugin
        docker = attached()
        own_image = ensure_driver_image(docker)
        plugin_image = own_image
        values = incluster.pod_values(self._values(ecs_endpoint, ""), self.profile.driver)
        if plugin.image == "driver-binary":
            plugin_image = ensure_binary_image(docker, Path(self.driver_binary))
            values["driver_binary"] = BINARY_IN_IMAGE
        self.provider.load_images(*dict.fromkeys((own_image, plugin_image)))
        args, env = render(plugin.command, values)
        incluster.deploy(self.provider.api_client, incluster.daemonset(
            self.profile.driver, plugin, plugin_image, own_image, args, self._driver_env(env), values))
        if plugin.metadata_service:
            log.info("each node answers as ECS's instance metadata service at %s, for its own instance",
                     incluster.ADDRESS)
        workers = [n for n in self.provider.nodes() if self.provider.core.read_node(n).metadata.labels.get(
            labels.INSTANCE_ID)]
        incluster.wait_registered(self.provider.api_client, self.profile, workers)

    def _register_nodes(self, ecs_endpoint: str) -> None:
        """Stand in for kubelet and node-driver-registrar on every node: ask each node
        endpoint NodeGetInfo (or take the profile's stand-in answer) and write what they
        would. Done for many nodes at once: a scale run has hundreds."""
        nodes = {name: node.metadata.labels for name, node in self._nodes().items()}
        if self.profile.run.node_command is not None:
            self._start_node_endpoints(ecs_endpoint, nodes)
        with ThreadPoolExecutor(REGISTER_THREADS) as pool:
            # list(): the first failure is raised here
            list(pool.map(lambda name: self._register_node(ecs_endpoint, name, nodes[name]), nodes))
        log.info("registered %s on %d nodes (%s)", self.profile.driver, len(nodes),
                 "node endpoints" if self.profile.run.node_command is not None else "stand-in nodes")

    def register_node(self, name: str) -> None:
        """The driver registered again on a node deleted and made anew (perhaps as another
        machine, in another zone): by its kubelet where nodes have kubelets (waited for),
        else as kubelet would, the node endpoints first serving the nodes as they are now."""
        if self.provider.capabilities.runs_kubelets:
            from zoneproof.deploy import incluster

            incluster.wait_registered(self.provider.api_client, self.profile, [name])
            return
        if self.profile.run.node_command is not None:
            self._serve_node_endpoints_again()
        self._register_node(self.ecs_endpoint, name, self.provider.core.read_node(name).metadata.labels)

    @property
    def runs_node_plugin(self) -> bool:
        """Whether nodes are served by the driver's node plugin (in pods, or as node endpoints
        beside kwok nodes), not by the profile's stand-in answers."""
        return self.provider.capabilities.runs_kubelets or self.profile.run.node_command is not None

    def restart_node_plugin(self, name: str) -> None:
        """The driver's node plugin on node ``name`` stopped and started again, as after a
        crash or an upgrade, and registered again: on nodes with kubelets, its pod deleted
        and made again by its DaemonSet; else the node endpoints' process."""
        if not self.runs_node_plugin:
            raise DriverError(f"profile {self.profile.name!r} runs no node plugin on these nodes (its answers are "
                              "stood in for), so there is none to restart")
        if self.provider.capabilities.runs_kubelets:
            from zoneproof.deploy import incluster

            incluster.restart_on(self.provider.api_client, name)
        self.register_node(name)

    def _serve_node_endpoints_again(self) -> None:
        """The node endpoints stopped and started for the nodes as they are now: an endpoint
        started for a node's former machine would still answer with its instance and zone,
        as a node plugin pod does until its node's new machine starts it again."""
        state = self.running()
        stop_groups({name: process for name, process in (state.processes if state else {}).items()
                     if name == "csi-nodes" or name.startswith("csi-node-")})
        self._start_node_endpoints(self.ecs_endpoint,
                                   {name: node.metadata.labels for name, node in self._nodes().items()})

    def _register_node(self, ecs_endpoint: str, name: str, node_labels: dict[str, str]) -> None:
        if self.profile.run.node_command is None:
            registrar.register(self.provider.api_client, name, self.profile.driver,
                               *self._stand_in_answer(ecs_endpoint, name, node_labels))
            return
        info = registrar.node_info(self._node_endpoint(name))
        if set(info.segments) != set(self.profile.topology_keys):
            raise DriverError(f"node {name}: NodeGetInfo reports topology keys {sorted(info.segments)}, but "
                              f"profile {self.profile.name!r} declares {sorted(self.profile.topology_keys)}")
        registrar.register(self.provider.api_client, name, self.profile.driver, info)

    def _node_socket(self, name: str) -> Path:
        return self.workdir / "nodes" / f"{name}.sock"

    def _node_endpoint(self, name: str) -> str:
        return f"unix://{self._node_socket(name)}"

    def _nodes(self) -> dict[str, client.V1Node]:
        names = set(self.provider.nodes())
        return {n.metadata.name: n for n in self.provider.core.list_node().items if n.metadata.name in names}

    def _node_values(self, name: str, node_labels: dict[str, str]) -> dict[str, str]:
        return {"node_name": name, "instance_id": node_labels[labels.INSTANCE_ID], "zone": node_labels[labels.ZONE]}

    def _start_node_endpoints(self, ecs_endpoint: str, nodes: dict[str, dict[str, str]]) -> None:
        """Start the profile's node command, serving each node at its ``_node_endpoint``:
        one process for every node when it says ``each_node``, else one per node."""
        command = self.profile.run.node_command
        (self.workdir / "nodes").mkdir(exist_ok=True)
        per_node = []
        for name, node_labels in nodes.items():
            values = {**self._values(ecs_endpoint, str(self._node_socket(name))),
                      **self._node_values(name, node_labels)}
            if command.each_node:
                per_node += [arg.format_map(_Vars(values)) for arg in command.each_node]
            else:
                args, env = render(command, values)
                self._start(f"csi-node-{name}", args, self._driver_env(env))
        if command.each_node:
            args, env = render(command, self._values(ecs_endpoint, ""))
            self._start("csi-nodes", [*args, *per_node], self._driver_env(env))

    def _stand_in_answer(self, ecs_endpoint: str, name: str,
                         node_labels: dict[str, str]) -> tuple[registrar.NodeInfo, dict[str, str]]:
        """What the profile's stand-in says the real node plugin would answer and label."""
        stand_in = self.profile.run.stand_in
        values = _Vars({**self._values(ecs_endpoint, ""), **self._node_values(name, node_labels)})
        sold = self.zone_categories.get(values["zone"], DEFAULT_CATEGORIES)
        extra = {}
        for key, value in stand_in.labels.items():
            for category in (sold if "{" + CATEGORY_VAR + "}" in key else ("",)):
                extra[key.format_map(_Vars({**values, CATEGORY_VAR: category}))] = value.format_map(values)
        info = registrar.NodeInfo(stand_in.node_id.format_map(values),
                                  {k: v.format_map(values) for k, v in stand_in.topology.items()},
                                  stand_in.max_volumes)
        return info, extra

    def _ensure_csidriver(self, storage: client.StorageV1Api) -> None:
        body = {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
                "metadata": {"name": self.profile.driver}, "spec": self.profile.run.csidriver}
        try:
            storage.create_csi_driver(body)
        except ApiException as err:
            if err.status == 409:
                raise DriverError(f"a CSIDriver {self.profile.driver!r} exists already in "
                                  f"{self.provider.spec.name!r}: another deployment of that driver is in the way; "
                                  "remove it first") from None
            if err.status in (400, 422):
                raise DriverError(f"profile {self.profile.name!r}: the API refused its csidriver spec: "
                                  f"{err.body}") from None
            raise

    def _wait_sidecars(self) -> None:
        """Both sidecars must have connected to the driver and found its name; a process
        that exits meanwhile fails the deployment at once, with its log's tail."""
        names = ("csi-controller", "csi-provisioner", "csi-attacher")

        def check():
            state = self.running()
            for name in names:
                pid, started = state.processes[name]
                if start_time(pid) != started:
                    tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise DriverError(f"{name} exited during start-up; the end of its log:\n{tail}")
            pending = [n for n in names[1:] if self.profile.driver not in self._log(n)]
            return not pending, f"waiting on {', '.join(pending)}"
        wait_for(check, what="the CSI sidecars to connect to the driver", timeout=60)

    def _log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------ down
    def down(self) -> None:
        state = self.running()
        try:
            if self.provider.is_up():
                self._unregister()
            # After the unregistration, which must not depend on a fake ECS that answers.
            if state is not None and state.alive:
                self._record_leftovers(state)
        finally:
            if state is not None:
                stop_groups(state.processes)
            shutil.rmtree(self.workdir, ignore_errors=True)
            if self.provider.capabilities.runs_kubelets:
                self._release_devices(state)

    def _release_devices(self, state: RunningDeployment | None) -> None:
        """The fake ECS releases its disks' loop devices as it stops; one killed before it
        could leaves them: released here, and recorded as what the run left behind."""
        from zoneproof.cluster.blockdev import release_under

        left = release_under(self.provider.disk_root)
        if left:
            log.warning("the fake ECS left %d loop device(s) behind: %s", len(left), ", ".join(left))
            self.logs.mkdir(parents=True, exist_ok=True)
            with open(self.logs / LEFTOVERS_FILE, "a") as out:
                out.write(json.dumps({"zone_policy": state.zone_policy if state else self.zone_policy,
                                      "loop devices": left}) + "\n")

    def _record_leftovers(self, state: RunningDeployment) -> None:
        """What the fake ECS still holds as it goes with the deployment: disks nobody deleted
        and instances left stopped. One line per deployment in ``cloud-leftovers.jsonl``
        beside the logs, which outlive the deployment, for ``zoneproof e2e`` to report."""
        held = EcsAdmin(state.ecs_endpoint).state()
        left = {"zone_policy": state.zone_policy,
                "disks": [f"{d['DiskId']} ({d['ZoneId']}, {d['Status']})" for d in held["disks"]],
                "stopped instances": sorted(i["InstanceId"] for i in held["instances"] if i["Status"] != "Running")}
        if left["disks"] or left["stopped instances"]:
            log.warning("the fake ECS going down still holds %d disk(s) and %d stopped instance(s) (listed in %s)",
                        len(left["disks"]), len(left["stopped instances"]), self.logs / LEFTOVERS_FILE)
        self.logs.mkdir(parents=True, exist_ok=True)  # a deployment taken down by another session's fixture
        with open(self.logs / LEFTOVERS_FILE, "a") as out:
            out.write(json.dumps(left) + "\n")

    def _unregister(self) -> None:
        driver = self.profile.driver
        if self.provider.capabilities.runs_kubelets:
            from zoneproof.deploy import incluster

            # The kubelets own CSINode there: they drop the driver once its registrar is gone.
            incluster.remove(self.provider.api_client)
        else:
            for name in self.provider.nodes():
                try:
                    registrar.unregister(self.provider.api_client, name, driver)
                except ApiException as err:
                    log.warning("could not unregister %s from %s: %s", driver, name, err.reason)
        try:
            client.StorageV1Api(self.provider.api_client).delete_csi_driver(driver)
        except ApiException as err:
            if err.status != 404:
                raise


def cloud_of(cluster) -> CloudAccess:
    """The cloud a cluster's driver works against: the environment's for an existing
    cluster, the fake ECS of the deployment running beside a local one."""
    if not cluster.ref.owned:
        return cluster.cloud
    state = running_deployment(cluster)
    if state is None or not state.alive:
        raise DriverError(f"no driver is deployed in {cluster.spec.name!r}: run `zoneproof driver up "
                          f"--name {cluster.spec.name}`")
    return CloudAccess.fake(state.ecs_endpoint, cluster.spec.region)


def attach(provider: ClusterProvider, **options) -> DriverDeployment:
    """The deployment running in a local cluster, with the profile it was started with."""
    state = running_deployment(provider)
    if state is None:
        raise DriverError(f"no driver is deployed in {provider.spec.name!r}: run `zoneproof driver up "
                          f"--name {provider.spec.name}`")
    try:
        profile = load_profile(state.profile)
    except ProfileError as err:
        raise DriverError(f"the running deployment's profile cannot be read again: {err}") from None
    return DriverDeployment(provider, profile, zone_policy=state.zone_policy, logs=Path(state.logs), bugs=state.bugs,
                            **options)
