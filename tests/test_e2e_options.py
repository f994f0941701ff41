"""`zoneproof e2e` refuses bad options before anything starts: no cluster, no driver, no
reports of a run that did not happen."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(("args", "message"), [
    (["--profile", "alibaba"], "pass --driver-binary PATH"),
    (["--zone-categories", "bogus"], "zone categories 'bogus': write ZONE=CATEGORY"),
    (["--zone-categories", "cn-beijing-a=floppy"], "unknown categories floppy"),
    (["--static-disk", "cn-beijing-q=d-1"], "--static-disk 'cn-beijing-q=d-1': write ZONE=DISK_ID"),
    (["--provider", "existing"], "--provider existing needs --kubeconfig PATH"),
    (["--kubeconfig", "kubeconfig.yaml"], "--kubeconfig and --context go with --provider existing"),
    (["--profile", "no-such-profile"], "no driver profile 'no-such-profile'"),
])
def test_bad_options_are_refused_before_anything_starts(tmp_path, args, message):
    state = tmp_path / "state"
    run = subprocess.run([sys.executable, "-m", "zoneproof.cli", "e2e", "--name", "zp-refused",
                          "--reports", str(tmp_path / "reports"), *args],
                         env=dict(os.environ, ZONEPROOF_STATE_DIR=str(state)), capture_output=True, text=True,
                         timeout=60)
    assert run.returncode in (1, 2), run.stdout + run.stderr
    assert message in run.stderr, run.stderr
    assert not state.exists(), "a cluster was started for a run that was refused"
    assert not (tmp_path / "reports").exists(), "reports were touched for a run that was refused"
