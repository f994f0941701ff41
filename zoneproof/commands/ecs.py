"""`zoneproof ecs`: the fake ECS and the instance metadata service of a node."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from zoneproof import bugs as bug_catalogue
from zoneproof.cluster.errors import ClusterError
from zoneproof.cluster.spec import DEFAULT_REGION, DEFAULT_ZONES, parse_zones
from zoneproof.commands.common import fail


@click.group()
def ecs() -> None:
    """The fake Alibaba Cloud ECS (disks and instances with real zone rules)."""


def _parse_access_keys(values: tuple[str, ...]) -> dict[str, str]:
    keys = {}
    for value in values:
        key_id, sep, secret = value.partition(":")
        if not sep or not key_id or not secret:
            raise click.BadParameter(f"{value!r} is not ACCESS_KEY_ID:SECRET", param_hint="--access-key")
        keys[key_id] = secret
    return keys


@ecs.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback).")
@click.option("--port", type=int, default=0, show_default=True, help="Port; 0 picks a free one.")
@click.option("--port-file", type=click.Path(dir_okay=False), help="Write the chosen port here once listening.")
@click.option("--db", default=":memory:", show_default=True, help="SQLite file holding the state.")
@click.option("--region", default=DEFAULT_REGION, show_default=True)
@click.option("--zones", default=",".join(DEFAULT_ZONES), show_default=True, help="Comma-separated zones.")
@click.option("--categories", multiple=True, metavar="ZONE=CAT,...",
              help="Disk categories offered in a zone (default: all). Repeatable.")
@click.option("--access-key", multiple=True, metavar="ID:SECRET",
              help="Accepted credentials (repeatable); default ZPTESTACCESSKEYID:zoneproof-test-secret.")
@click.option("--create-latency", type=float, default=0.0, show_default=True, help="Seconds a disk stays Creating.")
@click.option("--attach-latency", type=float, default=0.0, show_default=True, help="Seconds in Attaching.")
@click.option("--detach-latency", type=float, default=0.0, show_default=True, help="Seconds in Detaching.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for throttling draws.")
@click.option("--power-cluster", metavar="NAME",
              help="Cluster whose nodes lose power when their instances stop (StopInstances).")
@click.option("--power-provider", type=click.Choice(["local", "kind"]), default="local", show_default=True,
              help="Which provider made --power-cluster.")
@click.option("--disk-root", type=click.Path(file_okay=False),
              help="Keep each disk's data in an image <disk-root>/<zone>/<disk id>.img (for pods that use it); "
                   "with --power-provider kind, an attached disk is a block device in its instance's node.")
@click.option("--bug", "bug_names", multiple=True, metavar="NAME",
              help="Switch on a cloud bug of the catalogue (`zoneproof bugs list`); repeatable.")
def ecs_serve(host, port, port_file, db, region, zones, categories, access_key, create_latency, attach_latency,
              detach_latency, seed, power_cluster, power_provider, disk_root, bug_names) -> None:
    """Serve the ECS API (both signature styles) and the /_admin/ API until stopped."""
    from pathlib import Path

    from zoneproof.ecs.backend import EcsConfig, Latencies
    from zoneproof.ecs.catalog import DEFAULT_CATEGORIES, parse_zone_categories
    from zoneproof.ecs.server import EcsServer

    zone_list = parse_zones(zones)
    if not zone_list or "" in zone_list or len(set(zone_list)) != len(zone_list):
        fail(click.BadParameter(f"{zones!r}: give distinct, non-empty zone names", param_hint="--zones"), 2)
    try:
        offered = {zone: DEFAULT_CATEGORIES for zone in zone_list} | parse_zone_categories(categories, zone_list)
        config = EcsConfig(region=region, zones=offered,
                           latencies=Latencies(create_latency, attach_latency, detach_latency),
                           bugs=bug_catalogue.parse(bug_names)).validate()
        power_switch = devices_for = None
        if power_cluster:
            from zoneproof.cluster.power import cloud_hooks

            power_switch, devices_for = cloud_hooks(power_provider, power_cluster, with_devices=bool(disk_root))
        server = EcsServer(config, db_path=db, host=host, port=port,
                           credentials=_parse_access_keys(access_key) or None, seed=seed, power_switch=power_switch,
                           disk_root=Path(disk_root) if disk_root else None, devices_for=devices_for)
    except (ValueError, click.BadParameter, OSError, ClusterError) as err:
        fail(err, 2)
    if port_file:
        Path(port_file).write_text(str(server.httpd.server_address[1]))
    logging.getLogger(__name__).info("fake ECS for %s (%s) listening on http://%s", region, ", ".join(zone_list),
                                     server.endpoint)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


@ecs.command("metadata")
@click.option("--node-name", required=True, help="The Kubernetes node this runs on (in a cluster).")
@click.option("--ecs-endpoint", required=True, help="host:port of the ECS API.")
@click.option("--region", required=True)
@click.option("--address", default="100.100.100.200", show_default=True,
              help="The service's address, put on this node's loopback while it runs.")
@click.option("--port", type=int, default=80, show_default=True)
def ecs_metadata(node_name, ecs_endpoint, region, address, port) -> None:
    """Serve the instance metadata of this node's instance, as ECS's metadata service does,
    on an address of this node's own network namespace, taken off again as it stops. Run
    beside a node plugin, in the node's network namespace, after a blackhole route for the
    address is in place there (the DaemonSet's first init container), so that nothing
    asked of it ever leaves the node."""
    from zoneproof.csi.node_identity import NodeIdentityError, described_instance, driver_cloud
    from zoneproof.ecs.metadata import Identity, serve_on_node

    try:
        described = described_instance(node_name, driver_cloud(ecs_endpoint, region))
        serve_on_node(Identity(described["InstanceId"], described["ZoneId"], region, described["InstanceType"]),
                      address, port)
    except (NodeIdentityError, OSError) as err:
        fail(err)
