"""`zoneproof chaos`: the Chaos Toolkit experiments (the optional extra zoneproof[chaos])."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from zoneproof.commands.common import cloud_or_fail, cluster_options, fail, profile_or_fail, selected


@click.group("chaos")
def chaos_group() -> None:
    """Run the Chaos Toolkit experiments of chaos/ against a local cluster (the chaos extra:
    pip install 'zoneproof[chaos]')."""
    from importlib.util import find_spec

    if find_spec("zoneproof_chaos") is None:
        fail(RuntimeError("the chaos commands need the Chaos Toolkit extension: pip install 'zoneproof[chaos]'"), 2)


def _experiment_paths(names: tuple[str, ...]) -> list[Path]:
    from zoneproof_chaos import running

    known = {p.stem: p for p in running.experiments()}
    paths = []
    for name in names or tuple(known):
        path = known.get(name) or (Path(name) if Path(name).is_file() else None)
        if path is None:
            fail(click.BadParameter(f"no experiment {name!r}; known: {', '.join(known)} (or give a file)",
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
    cluster = selected(provider, name, kubeconfig, context)
    profile_or_fail(profile_name)  # an unknown profile is refused before anything runs
    cloud_or_fail(cluster)  # fail now, not in the first activity, if the cloud is out of reach
    failed = 0
    with running.kubeconfig(cluster.kubeconfig, context):
        for path in paths:
            configuration = {**configuration_for(cluster, profile_name), **({"seed": seed} if seed is not None else {})}
            try:
                journal = running.run(path, configuration)
            except KeyboardInterrupt:
                fail(RuntimeError(f"interrupted during {path.stem}; its rollbacks were played"), code=130)
            problems, measured = running.problems(journal), running.metrics(journal)
            failed += bool(problems)
            click.echo(f"{path.stem}: {'FAILED' if problems else 'held'}; recovery "
                       f"{running.recovery_seconds(measured):.1f}s, wall time {measured['wall time']:.1f}s")
            for problem in problems:
                click.echo(f"  {problem}")
    sys.exit(1 if failed else 0)
