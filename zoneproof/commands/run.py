"""`zoneproof e2e` and `zoneproof report`: a whole run, and its reports made again."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from zoneproof import toolchain
from zoneproof.cluster.errors import ClusterError
from zoneproof.commands.common import cluster_options, cluster_ref, driver_options, fail, profile_or_fail
from zoneproof.waiting import WaitTimeout


@click.command("e2e", context_settings={"ignore_unknown_options": True})
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
        fail(click.BadParameter("must be at least 1", param_hint="--workers"), 2)
    opts = E2eOptions(profile=profile_or_fail(profile_name), cluster=cluster_ref(provider, name, kubeconfig, context),
                      driver_binary=driver_binary, zone_categories=zone_categories,
                      static_disks=static_disk, workers=workers, reports=Path(reports), seed=seed,
                      pytest_args=list(pytest_args))
    try:
        code = run_e2e(opts)
    except (ClusterError, DriverError, toolchain.ToolchainError, WaitTimeout) as err:
        fail(err)
    except KeyboardInterrupt:
        fail(RuntimeError("interrupted; the cluster and driver this run started were stopped"), code=130)
    sys.exit(code)


# ----------------------------------------------------------------- reports
@click.command("report")
@click.option("--reports", type=click.Path(file_okay=False, exists=True), default="reports", show_default=True)
@click.option("--no-allure", is_flag=True, help="Only index.html, not the allure report (no npm or Java needed).")
def report_cmd(reports: str, no_allure: bool) -> None:
    """Make reports/index.html and the allure report again from what the last run left in
    --reports (``zoneproof e2e`` makes them at its end)."""
    from zoneproof import report

    try:
        built = report.build(Path(reports), with_allure=not no_allure)
    except (report.ReportError, report.allure.AllureError) as err:
        fail(err)
    for regression in built.regressions:
        click.echo(f"slower than before: {regression}")
    click.echo(f"report: {built.page.resolve()}")
    if built.allure_report:
        click.echo(f"allure report: {built.allure_report.resolve()}")
