"""`zoneproof bugs`: the bug catalogue, and the proof that the suites catch it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from zoneproof import bugs as bug_catalogue
from zoneproof.commands.common import fail, start_or_fail


@click.group("bugs")
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
        fail(err, 2)
    sys.exit(start_or_fail(lambda: run_catalogue(chosen, Path(reports), seed=seed)))
