"""`zoneproof csi`: the reference CSI driver's endpoints, and the node plugin's registration."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from zoneproof import bugs as bug_catalogue
from zoneproof.cluster.spec import DEFAULT_REGION
from zoneproof.commands.common import fail


@click.group("csi")
def csi_group() -> None:
    """The reference disk CSI driver (diskplugin.csi.alibabacloud.com) on the fake ECS."""


@csi_group.command("serve")
@click.option("--endpoint", required=True, help="unix:///path/to/csi.sock")
@click.option("--ecs-endpoint", envvar="ECS_ENDPOINT", required=True, help="host:port of ECS (env ECS_ENDPOINT).")
@click.option("--region", envvar="REGION_ID", default=DEFAULT_REGION, show_default=True, help="(env REGION_ID)")
@click.option("--zone-policy", type=click.Choice(["topology", "round-robin"]),
              help="Serve the controller, choosing zones by this policy.")
@click.option("--node-id", help="Serve a node endpoint for this ECS instance id.")
@click.option("--node-zone", help="The node's zone (with --node-id).")
@click.option("--node-name", help="Serve a node endpoint for this Kubernetes node (in a cluster): its instance "
                                   "from the Node's labels or providerID, its zone from ECS.")
@click.option("--block-devices", is_flag=True,
              help="Node: stage the attached disk's block device (by its serial under /dev/disk/by-id), formatted "
                   "ext4 on first use; without it, stage and publish only mark their paths (nodes without kubelets).")
@click.option("--controller-zone", help="The controller's own zone: the last resort when a request names none.")
@click.option("--bug", "bug_names", multiple=True, envvar=bug_catalogue.ENV, metavar="NAME",
              help="Switch on a driver bug of the catalogue (`zoneproof bugs list`); repeatable "
                   f"(env {bug_catalogue.ENV}, comma-separated).")
def csi_serve(endpoint, ecs_endpoint, region, zone_policy, node_id, node_zone, node_name, block_devices,
              controller_zone, bug_names) -> None:
    """Serve the CSI Identity plus Controller and/or Node services on a unix socket.
    Credentials come from ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET."""
    from pathlib import Path

    from zoneproof.csi.node_identity import NodeIdentityError, described_instance, driver_cloud
    from zoneproof.csi.server import build_server

    cloud = driver_cloud(ecs_endpoint, region)
    if node_name:
        if node_id or node_zone:
            fail(click.BadParameter("--node-name finds the instance and zone itself; drop --node-id/--node-zone"), 2)
        try:
            described = described_instance(node_name, cloud)
        except NodeIdentityError as err:
            fail(err)
        node_id, node_zone = described["InstanceId"], described["ZoneId"]
    try:
        server = build_server(endpoint, cloud, zone_policy=zone_policy, instance_id=node_id, zone=node_zone,
                              controller_zone=controller_zone, block_devices=block_devices,
                              bugs=bug_catalogue.parse(bug_names))
    except ValueError as err:
        fail(err, 2)
    server.start()
    roles = " + ".join(r for r, on in (("controller", zone_policy), ("node " + str(node_id), node_id)) if on)
    logging.getLogger(__name__).info("CSI %s serving on %s (ECS %s)", roles, endpoint, ecs_endpoint)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(grace=2).wait()


@csi_group.command("serve-nodes")
@click.option("--node", "nodes", type=(str, str, str), multiple=True, required=True,
              metavar="INSTANCE_ID ZONE ENDPOINT", help="A node endpoint to serve (repeatable).")
@click.option("--ecs-endpoint", envvar="ECS_ENDPOINT", required=True, help="host:port of ECS (env ECS_ENDPOINT).")
@click.option("--region", envvar="REGION_ID", default=DEFAULT_REGION, show_default=True, help="(env REGION_ID)")
@click.option("--bug", "bug_names", multiple=True, envvar=bug_catalogue.ENV, metavar="NAME",
              help="Switch on a driver bug of the catalogue (`zoneproof bugs list`); repeatable "
                   f"(env {bug_catalogue.ENV}, comma-separated).")
def csi_serve_nodes(nodes, ecs_endpoint, region, bug_names) -> None:
    """Serve the CSI Identity and Node services of many nodes from one process, each on its
    own unix socket: what a node plugin per node answers, for nodes no kubelet runs.
    Credentials as for `serve`."""
    from collections import Counter

    from zoneproof.csi.node_identity import driver_cloud
    from zoneproof.csi.server import build_server

    cloud = driver_cloud(ecs_endpoint, region)
    twice = sorted(e for e, count in Counter(endpoint for _, _, endpoint in nodes).items() if count > 1)
    if twice:
        fail(click.BadParameter(f"endpoint(s) given to more than one node: {', '.join(twice)}"), 2)
    try:
        bugs = bug_catalogue.parse(bug_names)
        servers = [build_server(endpoint, cloud, instance_id=instance, zone=zone, bugs=bugs)
                   for instance, zone, endpoint in nodes]
    except ValueError as err:
        fail(err, 2)
    for server in servers:
        server.start()
    logging.getLogger(__name__).info("CSI node endpoints of %d nodes serving (ECS %s): %s", len(servers),
                                     ecs_endpoint, ", ".join(f"{i} in {z}" for i, z, _ in nodes))
    try:
        for server in servers:
            server.wait_for_termination()
    except KeyboardInterrupt:
        for stopped in [server.stop(grace=2) for server in servers]:
            stopped.wait()


@csi_group.command("register")
@click.option("--csi-address", required=True, help="The node plugin's socket, as this container sees it.")
@click.option("--kubelet-registration-path", required=True, help="The node plugin's socket, as the kubelet sees it.")
@click.option("--registry-dir", default="/registration", show_default=True, type=click.Path(file_okay=False),
              help="The kubelet's plugin watcher directory, as mounted in this container.")
@click.option("--registered-mark", type=click.Path(dir_okay=False),
              help="A file written once the kubelet has registered the plugin (for a readiness probe).")
@click.option("--refusal-log", type=click.Path(dir_okay=False),
              help="Where to write the kubelet's refusal, if it refuses (a pod's termination message path).")
def csi_register(csi_address: str, kubelet_registration_path: str, registry_dir: str, registered_mark: str | None,
                 refusal_log: str | None) -> None:
    """Register a node plugin with the kubelet (the node-driver-registrar's job); its name
    comes from the plugin's GetPluginInfo, once it answers."""
    from pathlib import Path

    from zoneproof.deploy.plugin_registration import serve

    sys.exit(serve(csi_address, kubelet_registration_path, Path(registry_dir),
                   Path(registered_mark) if registered_mark else None, Path(refusal_log) if refusal_log else None))
