"""``zoneproof rules``: the rules as one pytest session of their own, in a child process
(the rules' fixtures start and stop the driver; nothing is left when it ends)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def rules_command(profile: str, *, driver_binary: str | None = None, kubeconfig: str | None = None,
                  zones: str | None = None, region: str | None = None, junit: Path | None = None,
                  extra: tuple[str, ...] = ()) -> list[str]:
    args = [sys.executable, "-m", "pytest", "--pyargs", "zoneproof.rules", "-p", "no:cacheprovider", "-p", "no:xdist",
            "-rfEs", "-o", "console_output_style=classic", f"--driver-profile={profile}"]
    for option, value in (("--driver-binary", driver_binary), ("--kubeconfig", kubeconfig), ("--zones", zones),
                          ("--region", region), ("--junitxml", junit)):
        if value:
            args.append(f"{option}={value}")
    return [*args, *extra]


def run_rules(profile: str, **options) -> int:
    """Run the rules against the profile's driver; pytest's exit code (0: every rule held)."""
    return subprocess.run(rules_command(profile, **options)).returncode
