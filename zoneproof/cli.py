"""The ``zoneproof`` command: the top-level group; each group of commands lives in
zoneproof.commands."""

from __future__ import annotations

import logging
import signal

import click

from zoneproof.commands import bugs, chaos, checks, cluster, csi, driver, ecs, run, tools


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


for command in (cluster.cluster, tools.tools, ecs.ecs, csi.csi_group, driver.driver, bugs.bugs_group, checks.rules,
                checks.check_placement, chaos.chaos_group, run.e2e, run.report_cmd):
    main.add_command(command)


if __name__ == "__main__":
    main()
