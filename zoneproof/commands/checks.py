"""`zoneproof rules` and `zoneproof check`: the zonal CSI rules at the driver, the oracle over a cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from zoneproof.commands.common import cloud_or_fail, cluster_options, fail, profile_or_fail, selected


@click.command("rules")
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

    profile_or_fail(profile_name)  # a bad profile is named before anything starts
    sys.exit(run_rules(profile_name, driver_binary=driver_binary, kubeconfig=kubeconfig, zones=zones,
                       junit=Path(junitxml) if junitxml else None, extra=pytest_args))


@click.command("check")
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

    cluster = selected(provider, name, kubeconfig, context)
    profile = profile_or_fail(profile_name)
    cloud = cloud_or_fail(cluster)
    verdict = check(take_snapshot(cluster.api_client, cloud, namespace, driver=profile.driver), driver=profile.driver)
    click.echo(verdict.table())
    click.echo()
    click.echo(picture(verdict, cluster.zones()))
    click.echo(f"{len(verdict.pods)} pods checked, {len(verdict.violations)} violations")
    if not verdict.pods:
        fail(RuntimeError(f"no pod with a volume of {profile.driver} "
                           f"{'in namespace ' + repr(namespace) if namespace else 'in the cluster'}: nothing was "
                           "checked"))
    if not verdict.ok:
        sys.exit(1)
