"""`zoneproof cluster`: bring a multi-zone cluster up or down, inspect it, print its environment."""

from __future__ import annotations

from dataclasses import fields

import click

from zoneproof import toolchain
from zoneproof.cluster.errors import ClusterError
from zoneproof.cluster.spec import (
    DEFAULT_NODES_PER_ZONE, DEFAULT_REGION, DEFAULT_ZONES, NODE_IMAGE_CHOICES, PRIVILEGED_CHOICES, ClusterSpec,
    SpecError, Timings, parse_zones,
)
from zoneproof.commands.common import (
    attached, cluster_options, fail, name_option, own_provider_option, selected, start_or_fail,
)


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


@click.group()
def cluster() -> None:
    """Bring a multi-zone cluster up or down, inspect it, print its environment."""


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
        fail(err, code=2)
    start_or_fail(cluster.up)
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
            fail(err)
    click.echo(f"cluster {name!r} is down")


@cluster.command("status")
@cluster_options
def cluster_status(provider: str, name: str, kubeconfig: str | None, context: str | None) -> None:
    """Show each zone's nodes: power, readiness and taints. Exits 1 if the cluster is not up."""
    provider = selected(provider, name, kubeconfig, context)
    if not provider.is_up():
        fail(ClusterError(f"cluster {name!r} exists but its API does not answer"))
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
    cluster = attached(name, provider)
    _echo_environment(cluster)
    click.echo(f"export PATH={toolchain.binary('kubectl').parent}:$PATH")
