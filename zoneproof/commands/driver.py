"""`zoneproof driver`: deploy a profile's driver beside a cluster zoneproof made, or take it down."""

from __future__ import annotations

from pathlib import Path

import click

from zoneproof import bugs as bug_catalogue
from zoneproof.commands.common import (
    attached, driver_options, fail, name_option, own_provider_option, profile_or_fail, start_or_fail,
)


@click.group()
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

    provider = attached(name, provider)
    try:
        deployment = DriverDeployment(provider, profile_or_fail(profile_name), zone_policy=zone_policy,
                                      zone_categories=parse_zone_categories(zone_categories, provider.spec.zones),
                                      driver_binary=driver_binary, logs=Path(logs) if logs else None,
                                      bugs=bug_catalogue.parse(bug_names))
    except (DriverError, bug_catalogue.BugError) as err:
        fail(err, 2)
    start_or_fail(deployment.up)
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
        deployment = attach(attached(name, provider))
    except DriverError as err:
        click.echo(f"no driver to stop: {err}")
        return
    deployment.down()
    click.echo(f"driver down; its logs stay in {deployment.logs}")
