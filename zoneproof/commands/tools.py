"""`zoneproof tools`: build and locate the pinned Go tools."""

from __future__ import annotations

import click

from zoneproof import toolchain
from zoneproof.commands.common import fail


@click.group()
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
        fail(toolchain.ToolchainError(
            f"unknown tool set(s) {', '.join(sorted(unknown))}; known: {', '.join(toolchain.ALL_TOOL_SETS)}"), code=2)
    try:
        for name in names or toolchain.TOOL_SETS:
            path = toolchain.build(toolchain.ALL_TOOL_SETS[name], force=force)
            click.echo(f"{name} {toolchain.ALL_TOOL_SETS[name].version}: {path}")
    except toolchain.ToolchainError as err:
        fail(err)


@tools.command("path")
@click.argument("binary")
def tools_path(binary: str) -> None:
    """Print the path of a built binary (building it if needed)."""
    try:
        click.echo(toolchain.binary(binary))
    except toolchain.ToolchainError as err:
        fail(err)
