"""The ``zoneproof`` command."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from dataclasses import fields

import click

from zoneproof import bugs as bug_catalogue
from zoneproof import toolchain
from zoneproof.cluster.errors import ClusterError
from zoneproof.cluster.spec import (
    DEFAULT_CLUSTER_NAME,
    DEFAULT_NODES_PER_ZONE,
    DEFAULT_REGION,
    DEFAULT_ZONES,
    NODE_IMAGE_CHOICES,
    PRIVILEGED_CHOICES,
    ClusterSpec,
    SpecError,
    Timings,
    parse_zones,
)
from zoneproof.waiting import WaitTimeout

TIMING_HELP = {
    "node_monitor_grace_period": "seconds without a heartbeat before a node is NotReady",
    "node_monitor_period": "seconds between node-controller health checks",
    "node_lease_duration": "node Lease duration in seconds (renewed every quarter of it)",
    "node_status_update_frequency": "seconds between node status refreshes",
    "heartbeat_factor": "multiplies every heartbeat timing above",
    "not_ready_toleration": "seconds pods tolerate a NotReady node before eviction",
    "unreachable_toleration": "seconds pods tolerate an unreachable node before eviction",
    "node_eviction_rate": "nodes per second the node controller may taint for eviction",
}


def _handle_sigterm(signum, frame):  # noqa: ARG001
    # Turn SIGTERM into KeyboardInterrupt so that clean-up code runs the same way as on Ctrl-C.
    raise KeyboardInterrupt


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
def main(verbose: bool) -> None:
    """Conformance and chaos tests for zonal block storage in multi-zone Kubernetes."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%H:%M:%S",
    )
    signal.signal(signal.SIGTERM, _handle_sigterm)


def _fail(err: Exception, code: int = 1) -> None:
    click.echo(f"error: {err}", err=True)
    sys.exit(code)


def _attached(name: str, provider: str = "local"):
    """The running cluster of that name made by ``provider``, or exit saying there is none."""
    from zoneproof.cluster import attach

    try:
        return attach(provider, name)
    except ClusterError as err:
        _fail(err)


def cluster_options(func):
    """Which cluster a command acts on: a local one by name, or an existing one."""
    for option in reversed((
            click.option("--provider", type=click.Choice(["local", "kind", "existing"]), default="local",
                         show_default=True, help="local or kind: a cluster zoneproof made here; "
                                                 "existing: the cluster of --kubeconfig"),
            click.option("--name", default=DEFAULT_CLUSTER_NAME, show_default=True, help="Local cluster name."),
            click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Kubeconfig of an existing cluster."),
            click.option("--context", help="Context in --kubeconfig (default: its current one)."))):
        func = option(func)
    return func


def _ref(provider: str, name: str, kubeconfig: str | None, context: str | None):
    """The cluster the options name; exits 2 naming what is wrong with them."""
    from zoneproof.cluster.ref import ClusterRef, ClusterRefError

    try:
        return ClusterRef(provider, name, kubeconfig or "", context or "")
    except ClusterRefError as err:
        _fail(click.BadParameter(str(err)), 2)


def _selected(provider: str, name: str, kubeconfig: str | None, context: str | None):
    """The cluster the options name, checked to answer; exits with the reason otherwise."""
    ref = _ref(provider, name, kubeconfig, context)
    try:
        return ref.attach()
    except ClusterError as err:
        _fail(err)


def _cloud_of(cluster):
    """The ECS API of a cluster's driver, or exit saying why there is none."""
    from zoneproof.deploy.driver import cloud_of

    try:
        return cloud_of(cluster)
    except ClusterError as err:  # a DriverError too
        _fail(err)


def driver_options(func):
    """The driver under test and what the fake cloud beside it sells."""
    for option in reversed((
            click.option("--profile", "profile_name", default="reference", show_default=True,
                         help="Driver profile: a shipped name (reference, alibaba) or a file."),
            click.option("--driver-binary", type=click.Path(dir_okay=False),
                         help="The driver binary, for profiles that run one you build (alibaba)."),
            click.option("--zone-categories", multiple=True, metavar="ZONE=CAT,...",
                         help="Disk categories a zone sells in the fake ECS (repeatable; default: all)."))):
        func = option(func)
    return func


def _profile(name: str):
    from zoneproof.profile import ProfileError, load_profile

    try:
        return load_profile(name)
    except ProfileError as err:
        _fail(err, 2)


def _start_or_fail(start):
    """Run a bring-up and return what it returns; report its failure, or an interrupt
    (after which it has cleaned up)."""
    try:
        return start()
    except (ClusterError, toolchain.ToolchainError, WaitTimeout) as err:
        _fail(err)
    except KeyboardInterrupt:
        _fail(RuntimeError("interrupted; everything started was stopped"), code=130)


# ----------------------------------------------------------------- cluster
@main.group()
def cluster() -> None:
    """Bring a multi-zone cluster up or down, inspect it, print its environment."""


name_option = click.option("--name", default=DEFAULT_CLUSTER_NAME, show_default=True, help="Cluster name.")


def timing_options(func):
    defaults = Timings()
    for f in reversed(fields(Timings)):
        func = click.option(
            f"--{f.name.replace('_', '-')}",
            type=float if isinstance(getattr(defaults, f.name), float) else int,
            default=getattr(defaults, f.name),
            show_default=True,
            help=TIMING_HELP[f.name],
        )(func)
    return func


own_provider_option = click.option("--provider", type=click.Choice(["local", "kind"]), default="local",
                                   show_default=True, help="local: real control plane with kwok nodes; "
                                                           "kind: node containers with real kubelets")


@cluster.command("up")
@own_provider_option
@name_option
@click.option("--zones", default=",".join(DEFAULT_ZONES), show_default=True, help="Comma-separated zone names.")
@click.option("--region", default=DEFAULT_REGION, show_default=True)
@click.option("--nodes-per-zone", type=int, default=DEFAULT_NODES_PER_ZONE, show_default=True)
@click.option("--node-image", type=click.Choice(NODE_IMAGE_CHOICES), default="auto", show_default=True,
              help="kind: kind's stock image, one built here, or auto (stock if it can be had).")
@click.option("--privileged", type=click.Choice(PRIVILEGED_CHOICES), default="auto", show_default=True,
              help="kind: docker --privileged as is, through the capability shim, or auto (probe).")
@click.option("--bug", "bug_names", multiple=True, metavar="NAME",
              help="Configure the control plane with a cluster bug of the catalogue (`zoneproof bugs list`).")
@timing_options
def cluster_up(provider: str, name: str, zones: str, region: str, nodes_per_zone: int, node_image: str,
               privileged: str, bug_names: tuple[str, ...], **timings) -> None:
    """Start a cluster with Ready nodes in every zone: local (real control plane, kwok
    nodes) or kind (node containers with real kubelets)."""
    from zoneproof.cluster import new_cluster

    try:
        spec = ClusterSpec(name=name, region=region, zones=parse_zones(zones), nodes_per_zone=nodes_per_zone,
                           timings=Timings(**timings), bugs=tuple(bug_names)).validate()
        cluster = new_cluster(provider, spec, node_image=node_image, privileged=privileged)
    except (SpecError, ClusterError) as err:
        _fail(err, code=2)
    _start_or_fail(cluster.up)
    _echo_environment(cluster)


def _echo_environment(cluster) -> None:
    click.echo(f"export KUBECONFIG={cluster.kubeconfig}")
    for name, value in cluster.ref.environment().items():  # read by the chaos experiments
        click.echo(f"export {name}={value}")


@cluster.command("down")
@own_provider_option
@name_option
def cluster_down(provider: str, name: str) -> None:
    """Stop a cluster and remove its processes, containers and files."""
    from zoneproof.cluster import OWN_PROVIDERS

    cls = OWN_PROVIDERS[provider]
    try:
        cls.attach(name).down()
    except ClusterError:
        # Nothing recorded: still clean any half-made leftovers under that name.
        try:
            cls(ClusterSpec(name=name)).down()
        except ClusterError as err:
            _fail(err)
    click.echo(f"cluster {name!r} is down")


@cluster.command("status")
@cluster_options
def cluster_status(provider: str, name: str, kubeconfig: str | None, context: str | None) -> None:
    """Show each zone's nodes: power, readiness and taints. Exits 1 if the cluster is not up."""
    provider = _selected(provider, name, kubeconfig, context)
    if not provider.is_up():
        _fail(ClusterError(f"cluster {name!r} exists but its API does not answer"))
    spec = provider.spec
    click.echo(f"cluster {spec.name!r}  region {spec.region}  kubeconfig {provider.kubeconfig}")
    for zone in provider.zones():
        click.echo(f"  zone {zone}")
        for s in (s for s in provider.node_states() if s.zone == zone):
            power = "on " if s.powered else "off"
            ready = {"True": "Ready", "False": "NotReady", "Unknown": "NotReady(Unknown)"}[s.ready]
            taints = f"  taints: {', '.join(s.taints)}" if s.taints else ""
            click.echo(f"    {s.name:<32} power {power}  {ready}{taints}")


@cluster.command("env")
@own_provider_option
@name_option
def cluster_env(provider: str, name: str) -> None:
    """Print shell exports for a running cluster: eval "$(zoneproof cluster env)"."""
    cluster = _attached(name, provider)
    _echo_environment(cluster)
    click.echo(f"export PATH={toolchain.binary('kubectl').parent}:$PATH")


# ----------------------------------------------------------------- tools
@main.group()
def tools() -> None:
    """Build and locate the Go tools (Kubernetes, etcd, kwok)."""


@tools.command("build")
@click.option("--force", is_flag=True, help="Rebuild even if an identical build is cached.")
@click.argument("names", nargs=-1)
def tools_build(force: bool, names: tuple[str, ...]) -> None:
    """Build the local provider's tool sets (or the named ones, kind node parts included)
    unless cached."""
    unknown = set(names) - toolchain.ALL_TOOL_SETS.keys()
    if unknown:
        _fail(toolchain.ToolchainError(
            f"unknown tool set(s) {', '.join(sorted(unknown))}; known: {', '.join(toolchain.ALL_TOOL_SETS)}"), code=2)
    try:
        for name in names or toolchain.TOOL_SETS:
            path = toolchain.build(toolchain.ALL_TOOL_SETS[name], force=force)
            click.echo(f"{name} {toolchain.ALL_TOOL_SETS[name].version}: {path}")
    except toolchain.ToolchainError as err:
        _fail(err)


@tools.command("path")
@click.argument("binary")
def tools_path(binary: str) -> None:
    """Print the path of a built binary (building it if needed)."""
    try:
        click.echo(toolchain.binary(binary))
    except toolchain.ToolchainError as err:
        _fail(err)


# ----------------------------------------------------------------- fake ECS
@main.group()
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
        _fail(click.BadParameter(f"{zones!r}: give distinct, non-empty zone names", param_hint="--zones"), 2)
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
        _fail(err, 2)
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
        _fail(err)


@main.group("csi")
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
            _fail(click.BadParameter("--node-name finds the instance and zone itself; drop --node-id/--node-zone"), 2)
        try:
            described = described_instance(node_name, cloud)
        except NodeIdentityError as err:
            _fail(err)
        node_id, node_zone = described["InstanceId"], described["ZoneId"]
    try:
        server = build_server(endpoint, cloud, zone_policy=zone_policy, instance_id=node_id, zone=node_zone,
                              controller_zone=controller_zone, block_devices=block_devices,
                              bugs=bug_catalogue.parse(bug_names))
    except ValueError as err:
        _fail(err, 2)
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
        _fail(click.BadParameter(f"endpoint(s) given to more than one node: {', '.join(twice)}"), 2)
    try:
        bugs = bug_catalogue.parse(bug_names)
        servers = [build_server(endpoint, cloud, instance_id=instance, zone=zone, bugs=bugs)
                   for instance, zone, endpoint in nodes]
    except ValueError as err:
        _fail(err, 2)
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
def csi_register(csi_address: str, kubelet_registration_path: str, registry_dir: str) -> None:
    """Register a node plugin with the kubelet (the node-driver-registrar's job); its name
    comes from the plugin's GetPluginInfo, once it answers."""
    from pathlib import Path

    from zoneproof.deploy.plugin_registration import serve

    sys.exit(serve(csi_address, kubelet_registration_path, Path(registry_dir)))


# ----------------------------------------------------------------- driver deployment
@main.group()
def driver() -> None:
    """Deploy the reference driver (with the fake ECS and the real CSI sidecars) into a local cluster."""


@driver.command("up")
@own_provider_option
@name_option
@driver_options
@click.option("--zone-policy", type=click.Choice(["topology", "round-robin"]),
              help="topology: current upstream; round-robin: the article's era (zoneId overrides topology). "
                   "Default: the profile's first.")
@click.option("--logs", type=click.Path(file_okay=False),
              help="Directory for the logs of the driver, the sidecars and the fake ECS (kept after `driver down`; "
                   "default: the cluster's driver-logs directory).")
@click.option("--bug", "bug_names", multiple=True, metavar="NAME",
              help="Switch on a bug of the catalogue where it lives (`zoneproof bugs list`); repeatable.")
def driver_up(provider: str, name: str, profile_name: str, driver_binary: str | None,
              zone_categories: tuple[str, ...], zone_policy: str | None, logs: str | None,
              bug_names: tuple[str, ...]) -> None:
    """Start the fake ECS, the driver as its profile says and the sidecars; register every node."""
    from zoneproof.deploy.driver import DriverDeployment, DriverError, parse_zone_categories

    provider = _attached(name, provider)
    try:
        deployment = DriverDeployment(provider, _profile(profile_name), zone_policy=zone_policy,
                                      zone_categories=parse_zone_categories(zone_categories, provider.spec.zones),
                                      driver_binary=driver_binary, logs=Path(logs) if logs else None,
                                      bugs=bug_catalogue.parse(bug_names))
    except (DriverError, bug_catalogue.BugError) as err:
        _fail(err, 2)
    _start_or_fail(deployment.up)
    click.echo(f"driver up (profile {deployment.profile.name}, zone policy {deployment.zone_policy}"
               + (f", bugs on purpose: {', '.join(deployment.bugs)}" if deployment.bugs else "")
               + f"); fake ECS at {deployment.ecs_endpoint}; logs in {deployment.logs}")
    click.echo(f"export ECS_ENDPOINT={deployment.ecs_endpoint}")


@driver.command("down")
@own_provider_option
@name_option
def driver_down(provider: str, name: str) -> None:
    """Stop the driver, its sidecars and the fake ECS; unregister the driver. Logs stay."""
    from zoneproof.deploy.driver import DriverError, attach

    try:
        deployment = attach(_attached(name, provider))
    except DriverError as err:
        click.echo(f"no driver to stop: {err}")
        return
    deployment.down()
    click.echo(f"driver down; its logs stay in {deployment.logs}")


# ----------------------------------------------------------------- placement oracle
# ----------------------------------------------------------------- the bug catalogue
@main.group("bugs")
def bugs_group() -> None:
    """Real placement bugs zoneproof can switch on, and the proof that its suites catch them."""


@bugs_group.command("list")
def bugs_list() -> None:
    """Every bug: where it lives, what goes wrong, where it comes from, what catches it."""
    for bug in bug_catalogue.CATALOGUE:
        click.echo(f"{bug.name}  [{bug.layer}]\n  effect: {bug.effect}\n  origin: {bug.origin}\n"
                   f"  caught by: {', '.join(bug.caught_by)}")


@bugs_group.command("run")
@click.option("--reports", type=click.Path(file_okay=False), default="reports", show_default=True)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the suites' random choices.")
@click.argument("names", nargs=-1)
def bugs_run(reports: str, seed: int, names: tuple[str, ...]) -> None:
    """Switch on each bug (all, or NAMES) alone on a local cluster and run the cases that must
    catch it, then those cases with no bug; exits 1 if a bug survives or the clean run fails."""
    from zoneproof.mutants import run_catalogue

    try:
        chosen = bug_catalogue.parse(names)
    except bug_catalogue.BugError as err:
        _fail(err, 2)
    sys.exit(_start_or_fail(lambda: run_catalogue(chosen, Path(reports), seed=seed)))


@main.command("rules")
@click.option("--profile", "profile_name", default="reference", show_default=True,
              help="Driver profile: a shipped name or a file.")
@click.option("--driver-binary", type=click.Path(dir_okay=False), help="The driver binary, for profiles that run one.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False),
              help="A cluster's kubeconfig, for a controller that reads one (the profile names {kubeconfig}).")
@click.option("--zones", help="Comma-separated zones of the fake ECS (default: the local cluster's).")
@click.option("--junitxml", type=click.Path(dir_okay=False), help="Write the results as JUnit XML here.")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def rules(profile_name, driver_binary, kubeconfig, zones, junitxml, pytest_args) -> None:
    """Check the zonal CSI rules at the driver's controller, over a fake ECS of its own: in
    which zone CreateVolume makes a disk, what ControllerPublish/Unpublish and DeleteVolume
    do in the cloud, each test naming the CSI rule it checks. Seconds; no cluster needed
    unless the controller reads one. Exits non-zero when a rule does not hold."""
    from zoneproof.rules.run import run_rules

    _profile(profile_name)  # a bad profile is named before anything starts
    sys.exit(run_rules(profile_name, driver_binary=driver_binary, kubeconfig=kubeconfig, zones=zones,
                       junit=Path(junitxml) if junitxml else None, extra=pytest_args))


@main.command("check")
@cluster_options
@click.option("--profile", "profile_name", default="reference", show_default=True,
              help="Profile of the driver whose volumes are judged.")
@click.option("--namespace", "-n", help="Only this namespace's pods (default: all).")
def check_placement(provider: str, name: str, kubeconfig: str | None, context: str | None, profile_name: str,
                    namespace: str | None) -> None:
    """Judge every pod with zonal volumes: node zone == PV zone == disk zone (read through the
    ECS API), attached only to its node, waiting with the conflict when its zone is gone.
    Exits 1 on a violation, and when there was no pod to judge."""
    from zoneproof.oracle import check, picture, take_snapshot

    cluster = _selected(provider, name, kubeconfig, context)
    profile = _profile(profile_name)
    cloud = _cloud_of(cluster)
    verdict = check(take_snapshot(cluster.api_client, cloud, namespace, driver=profile.driver), driver=profile.driver)
    click.echo(verdict.table())
    click.echo()
    click.echo(picture(verdict, cluster.zones()))
    click.echo(f"{len(verdict.pods)} pods checked, {len(verdict.violations)} violations")
    if not verdict.pods:
        _fail(RuntimeError(f"no pod with a volume of {profile.driver} "
                           f"{'in namespace ' + repr(namespace) if namespace else 'in the cluster'}: nothing was "
                           "checked"))
    if not verdict.ok:
        sys.exit(1)


# ----------------------------------------------------------------- chaos
@main.group("chaos")
def chaos_group() -> None:
    """Run the Chaos Toolkit experiments of chaos/ against a local cluster (the chaos extra:
    pip install 'zoneproof[chaos]')."""
    from importlib.util import find_spec

    if find_spec("zoneproof_chaos") is None:
        _fail(RuntimeError("the chaos commands need the Chaos Toolkit extension: pip install 'zoneproof[chaos]'"), 2)


def _experiment_paths(names: tuple[str, ...]) -> list[Path]:
    from zoneproof_chaos import running

    known = {p.stem: p for p in running.experiments()}
    paths = []
    for name in names or tuple(known):
        path = known.get(name) or (Path(name) if Path(name).is_file() else None)
        if path is None:
            _fail(click.BadParameter(f"no experiment {name!r}; known: {', '.join(known)} (or give a file)",
                                     param_hint="EXPERIMENTS"), 2)
        paths.append(path)
    return paths


@chaos_group.command("list")
def chaos_list() -> None:
    """Name and title of every experiment."""
    from chaoslib.loader import load_experiment

    for path in _experiment_paths(()):
        click.echo(f"{path.stem:<20} {load_experiment(str(path))['title']}")


@chaos_group.command("run")
@cluster_options
@click.option("--profile", "profile_name", default="reference", show_default=True,
              help="Profile of the driver under test.")
@click.option("--seed", type=int, default=None, help="Seed of the experiments' random choices (default: random).")
@click.argument("experiments", nargs=-1)
def chaos_run(provider: str, name: str, kubeconfig: str | None, context: str | None, profile_name: str,
              seed: int | None, experiments: tuple[str, ...]) -> None:
    """Run experiments (names from `zoneproof chaos list` or files; default: all) through
    chaoslib with rollbacks always played, against a running cluster with the driver
    deployed. Power cuts go through the ECS API. Prints each one's recovery time; exits 1
    if any did not hold."""
    from zoneproof_chaos import running
    from zoneproof_chaos.context import configuration_for

    paths = _experiment_paths(experiments)
    cluster = _selected(provider, name, kubeconfig, context)
    _profile(profile_name)  # an unknown profile is refused before anything runs
    _cloud_of(cluster)  # fail now, not in the first activity, if the cloud is out of reach
    failed = 0
    with running.kubeconfig(cluster.kubeconfig, context):
        for path in paths:
            configuration = {**configuration_for(cluster, profile_name), **({"seed": seed} if seed is not None else {})}
            try:
                journal = running.run(path, configuration)
            except KeyboardInterrupt:
                _fail(RuntimeError(f"interrupted during {path.stem}; its rollbacks were played"), code=130)
            problems, measured = running.problems(journal), running.metrics(journal)
            failed += bool(problems)
            click.echo(f"{path.stem}: {'FAILED' if problems else 'held'}; recovery "
                       f"{running.recovery_seconds(measured):.1f}s, wall time {measured['wall time']:.1f}s")
            for problem in problems:
                click.echo(f"  {problem}")
    sys.exit(1 if failed else 0)


# ----------------------------------------------------------------- end to end
@main.command("e2e", context_settings={"ignore_unknown_options": True})
@cluster_options
@driver_options
@click.option("--static-disk", multiple=True, metavar="ZONE=DISK_ID",
              help="A disk of yours for static PVs, for profiles that may not create disks (repeatable).")
@click.option("--workers", type=int, default=2, show_default=True,
              help="Parallel pytest workers for the suites that share one driver deployment (1: serial).")
@click.option("--reports", type=click.Path(file_okay=False), default="reports", show_default=True)
@click.option("--seed", type=int, default=None, help="Seed of every random choice, in every phase (default: random, "
                                                     "and printed in the report).")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def e2e(provider: str, name: str, kubeconfig: str | None, context: str | None, profile_name: str,
        driver_binary: str | None, zone_categories: tuple[str, ...], static_disk: tuple[str, ...], workers: int,
        reports: str, seed: int | None, pytest_args: tuple[str, ...]) -> None:
    """Run the suites against the driver of a profile: on a local cluster (started if
    needed, the driver deployed for each phase) or on an existing cluster (its driver as
    it runs). The suites that share one driver deployment run in parallel, then those that
    redeploy it, then the chaos experiments; JUnit and allure results, driver logs and one
    summary go to --reports. Extra arguments go to pytest."""
    from zoneproof.deploy.driver import DriverError
    from zoneproof.e2e import E2eOptions, run_e2e

    if workers < 1:
        _fail(click.BadParameter("must be at least 1", param_hint="--workers"), 2)
    opts = E2eOptions(profile=_profile(profile_name), cluster=_ref(provider, name, kubeconfig, context),
                      driver_binary=driver_binary, zone_categories=zone_categories,
                      static_disks=static_disk, workers=workers, reports=Path(reports), seed=seed,
                      pytest_args=list(pytest_args))
    try:
        code = run_e2e(opts)
    except (ClusterError, DriverError, toolchain.ToolchainError, WaitTimeout) as err:
        _fail(err)
    except KeyboardInterrupt:
        _fail(RuntimeError("interrupted; the cluster and driver this run started were stopped"), code=130)
    sys.exit(code)


# ----------------------------------------------------------------- reports
@main.command("report")
@click.option("--reports", type=click.Path(file_okay=False, exists=True), default="reports", show_default=True)
@click.option("--no-allure", is_flag=True, help="Only index.html, not the allure report (no npm or Java needed).")
def report_cmd(reports: str, no_allure: bool) -> None:
    """Make reports/index.html and the allure report again from what the last run left in
    --reports (``zoneproof e2e`` makes them at its end)."""
    from zoneproof import report

    try:
        built = report.build(Path(reports), with_allure=not no_allure)
    except (report.ReportError, report.allure.AllureError) as err:
        _fail(err)
    for regression in built.regressions:
        click.echo(f"slower than before: {regression}")
    click.echo(f"report: {built.page.resolve()}")
    if built.allure_report:
        click.echo(f"allure report: {built.allure_report.resolve()}")


if __name__ == "__main__":
    main()
