"""What the commands share: which cluster and driver they act on, and failing with a
clear message and exit code."""

from __future__ import annotations

import sys

import click

from zoneproof import toolchain
from zoneproof.cluster.errors import ClusterError
from zoneproof.cluster.spec import DEFAULT_CLUSTER_NAME
from zoneproof.waiting import WaitTimeout


name_option = click.option("--name", default=DEFAULT_CLUSTER_NAME, show_default=True, help="Cluster name.")

own_provider_option = click.option("--provider", type=click.Choice(["local", "kind"]), default="local",
                                   show_default=True, help="local: real control plane with kwok nodes; "
                                                           "kind: node containers with real kubelets")


def fail(err: Exception, code: int = 1) -> None:
    click.echo(f"error: {err}", err=True)
    sys.exit(code)


def attached(name: str, provider: str = "local"):
    """The running cluster of that name made by ``provider``, or exit saying there is none."""
    from zoneproof.cluster import attach

    try:
        return attach(provider, name)
    except ClusterError as err:
        fail(err)


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


def cluster_ref(provider: str, name: str, kubeconfig: str | None, context: str | None):
    """The cluster the options name; exits 2 naming what is wrong with them."""
    from zoneproof.cluster.ref import ClusterRef, ClusterRefError

    try:
        return ClusterRef(provider, name, kubeconfig or "", context or "")
    except ClusterRefError as err:
        fail(click.BadParameter(str(err)), 2)


def selected(provider: str, name: str, kubeconfig: str | None, context: str | None):
    """The cluster the options name, checked to answer; exits with the reason otherwise."""
    ref = cluster_ref(provider, name, kubeconfig, context)
    try:
        return ref.attach()
    except ClusterError as err:
        fail(err)


def cloud_or_fail(cluster):
    """The ECS API of a cluster's driver, or exit saying why there is none."""
    from zoneproof.deploy.driver import cloud_of

    try:
        return cloud_of(cluster)
    except ClusterError as err:  # a DriverError too
        fail(err)


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


def profile_or_fail(name: str):
    from zoneproof.profile import ProfileError, load_profile

    try:
        return load_profile(name)
    except ProfileError as err:
        fail(err, 2)


def start_or_fail(start):
    """Run a bring-up and return what it returns; report its failure, or an interrupt
    (after which it has cleaned up)."""
    try:
        return start()
    except (ClusterError, toolchain.ToolchainError, WaitTimeout) as err:
        fail(err)
    except KeyboardInterrupt:
        fail(RuntimeError("interrupted; everything started was stopped"), code=130)
