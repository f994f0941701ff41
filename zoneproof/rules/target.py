"""What the zonal CSI rules talk to: the driver under test's controller, and where its
profile runs node endpoints outside a cluster (a node command, not a stand-in) a node
endpoint for the first instance of each zone, all run as the profile says, over a fake ECS
of its own (in this process, on loopback) with two instances in each zone. No cluster is
needed, unless the profile's controller names ``{kubeconfig}`` (the Alibaba plugin's reads
the cluster): then the caller gives one."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from zoneproof import bugs as bug_catalogue
from zoneproof.ecsapi import EcsApi, EcsSettings
from zoneproof.deploy.driver import check_run_inputs, render
from zoneproof.csi.proto import load
from zoneproof.ecs.backend import EcsConfig
from zoneproof.ecs.catalog import DEFAULT_CATEGORIES
from zoneproof.ecs.server import DEFAULT_CREDENTIALS, EcsServer
from zoneproof.processes import start_process, start_time, stop_groups
from zoneproof.profile import DriverProfile
from zoneproof.waiting import wait_for

log = logging.getLogger(__name__)
csi, csi_grpc = load()

INSTANCES_PER_ZONE = 2


class RulesSetupError(RuntimeError):
    """The driver cannot be run for the rules as asked; the message says why."""


@dataclass
class RulesTarget:
    profile: DriverProfile
    ecs: EcsServer
    cloud: EcsApi
    controller: object  # csi_grpc.ControllerStub, run with the profile's first zone policy
    zones: tuple[str, ...]
    instances: dict[str, list[str]] = field(default_factory=dict)  # zone -> instance ids
    nodes: dict[str, object] = field(default_factory=dict)  # instance id -> csi_grpc.NodeStub
    start_controller: object = None  # zone policy -> csi_grpc.ControllerStub, started on first use
    _by_policy: dict[str, object] = field(default_factory=dict, init=False, repr=False)

    def controller_for(self, policy: str):
        """A controller run with zone ``policy`` (one of the profile's), started the first
        time a rule asks for it and kept for the session."""
        if policy not in self.profile.zone_policies:
            raise ValueError(f"profile {self.profile.name!r} offers zone policies {list(self.profile.zone_policies)}, "
                             f"not {policy!r}")
        if policy == self.profile.zone_policies[0]:
            return self.controller
        if policy not in self._by_policy:
            self._by_policy[policy] = self.start_controller(policy)
        return self._by_policy[policy]

    @property
    def region(self) -> str:
        return self.ecs.backend.config.region

    def disk(self, disk_id: str) -> dict:
        found = self.cloud.describe_disk(disk_id)
        if found is None:
            raise AssertionError(f"ECS has no disk {disk_id}")
        return found

    def holders(self, disk_id: str) -> list[str]:
        return [a["InstanceId"] for a in self.disk(disk_id)["Attachments"]["Attachment"]]

    def created_disks(self) -> list[dict]:
        """Every CreateDisk ECS carried out, from its audit log (disk id and zone)."""
        return [{"DiskId": e["disk_id"], "ZoneId": e["disk_zone"]} for e in self.ecs.store.audit()
                if e["action"] == "CreateDisk" and e["code"] == "OK"]


def _instance_ids(zones: tuple[str, ...]) -> dict[str, list[str]]:
    return {zone: [f"i-rules{z}x{n}" for n in range(INSTANCES_PER_ZONE)] for z, zone in enumerate(zones)}


@contextmanager
def rules_target(profile: DriverProfile, workdir: Path, *, zones: tuple[str, ...], region: str,
                 driver_binary: str | None = None, kubeconfig: str | None = None,
                 bugs: tuple[str, ...] = ()) -> Iterator[RulesTarget]:
    check_run_inputs(profile, driver_binary)
    if "{kubeconfig}" in " ".join(profile.run.controller.args) + " ".join(profile.run.controller.env.values()) \
            and not kubeconfig:
        raise RulesSetupError(f"profile {profile.name!r} runs a controller that reads a cluster ({{kubeconfig}}): "
                              "give one with --kubeconfig")
    in_driver = bug_catalogue.of_layer(bugs, *bug_catalogue.DRIVER_LAYERS)
    if in_driver and not profile.run.bug_switches:
        raise RulesSetupError(f"bug(s) {', '.join(in_driver)} live in the driver, but profile {profile.name!r} has "
                              "no bug_switches")
    workdir.mkdir(parents=True, exist_ok=True)
    config = EcsConfig(region=region, zones={z: DEFAULT_CATEGORIES for z in zones},
                       bugs=bug_catalogue.of_layer(bugs, "cloud"))
    with EcsServer(config, db_path=str(workdir / "ecs.sqlite")) as ecs:
        instances = _instance_ids(zones)
        with ecs.store.transaction() as db:
            for zone, ids in instances.items():
                for instance_id in ids:
                    ecs.backend.register_instance(db, instance_id, zone)
        key_id, secret = next(iter(DEFAULT_CREDENTIALS.items()))
        cloud = EcsApi(EcsSettings(ecs.endpoint, key_id, secret, region))
        values = {"python": sys.executable, "driver": profile.driver, "driver_binary": driver_binary or "",
                  "ecs_endpoint": ecs.endpoint, "region": region, "kubeconfig": kubeconfig or "",
                  "access_key_id": key_id, "access_key_secret": secret, "zone_policy": profile.zone_policies[0],
                  "controller_zone": zones[0], "workdir": str(workdir)}
        running, channels = {}, []

        def start_controller(policy: str):
            """The profile's controller, run with zone ``policy``, answering on its own socket."""
            name = "csi-controller" if policy == profile.zone_policies[0] else f"csi-controller-{policy}"
            path = workdir / f"{name}.sock"
            args, env = render(profile.run.controller, {**values, "zone_policy": policy, "endpoint": f"unix://{path}",
                                                        "socket": str(path)})
            env[bug_catalogue.ENV] = ",".join(in_driver)
            running[name] = start_process(name, args, workdir, dict(os.environ, **env))
            channels.append(grpc.insecure_channel(f"unix://{path}"))
            wait_answering(channels[-1], running[name], f"the {profile.name} controller ({policy} zones)", workdir)
            return csi_grpc.ControllerStub(channels[-1])
        try:
            controller = start_controller(profile.zone_policies[0])
            nodes = {}
            if profile.run.node_command is not None:
                sockets = _start_node_endpoints(profile.run.node_command, values, workdir, in_driver,
                                                {ids[0]: zone for zone, ids in instances.items()}, running)
                for instance_id, node_socket in sockets.items():
                    channels.append(grpc.insecure_channel(f"unix://{node_socket}"))
                    process = running.get(f"csi-node-{instance_id}", running.get("csi-nodes"))
                    wait_answering(channels[-1], process, f"the {profile.name} node endpoint of {instance_id}",
                                   workdir)
                    nodes[instance_id] = csi_grpc.NodeStub(channels[-1])
            yield RulesTarget(profile, ecs, cloud, controller, tuple(zones), instances, nodes, start_controller)
        finally:
            for channel in channels:
                channel.close()
            stop_groups({name: (proc.pid, start_time(proc.pid)) for name, proc in running.items()})


def _start_node_endpoints(command, values: dict[str, str], workdir: Path, bugs: tuple[str, ...],
                          nodes: dict[str, str], running: dict) -> dict[str, Path]:
    """Start the profile's node command for ``nodes`` (instance id -> zone): one process
    for all when it says ``each_node``, else one each (added to ``running``); each node's
    socket."""
    sockets, per_node = {}, []
    for instance_id, zone in nodes.items():
        sockets[instance_id] = workdir / f"node-{instance_id}.sock"
        node_values = {**values, "instance_id": instance_id, "zone": zone, "node_name": f"rules-{instance_id}",
                       "endpoint": f"unix://{sockets[instance_id]}", "socket": str(sockets[instance_id])}
        if command.each_node:
            per_node += [arg.format_map(node_values) for arg in command.each_node]
        else:
            args, env = render(command, node_values)
            running[f"csi-node-{instance_id}"] = start_process(
                f"csi-node-{instance_id}", args, workdir, dict(os.environ, **env, **{bug_catalogue.ENV: ",".join(bugs)}))
    if command.each_node:
        args, env = render(command, {**values, "endpoint": "", "socket": ""})
        running["csi-nodes"] = start_process("csi-nodes", [*args, *per_node], workdir,
                                             dict(os.environ, **env, **{bug_catalogue.ENV: ",".join(bugs)}))
    return sockets


def wait_answering(channel, proc, what: str, workdir: Path) -> None:
    """Until the endpoint on ``channel`` answers GetPluginInfo; RulesSetupError if its
    process exits first."""
    identity = csi_grpc.IdentityStub(channel)

    def ready():
        if proc.poll() is not None:
            raise RulesSetupError(f"{what} exited ({proc.returncode}); see the logs in {workdir}")
        try:
            identity.GetPluginInfo(csi.GetPluginInfoRequest(), timeout=2)
        except grpc.RpcError as err:
            return False, f"not answering yet ({err.code().name})"
        return True, "answering"
    wait_for(ready, what=f"{what} to answer", timeout=60)
