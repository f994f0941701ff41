"""The docker shim spells out `--privileged` minus what the host's capability bounding set
lacks, for kind on hosts that cannot grant it; everything else reaches docker unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from zoneproof.cluster.dockershim import (CAPABILITIES, LIB_MODULES_MOUNT, install, missing_capabilities,
                                          privileged_flags, rewrite)

# Every capability up to CHECKPOINT_RESTORE (bit 40) but SYS_RESOURCE (bit 24).
ALL_BUT_SYS_RESOURCE = f"Name:\tpython\nCapBnd:\t{((1 << 41) - 1) & ~(1 << 24):016x}\n"


def test_missing_capabilities_come_from_the_bounding_set():
    assert missing_capabilities(ALL_BUT_SYS_RESOURCE) == ["SYS_RESOURCE"]
    assert missing_capabilities(f"CapBnd:\t{(1 << 41) - 1:016x}\n") == []
    assert missing_capabilities("CapBnd:\t0000000000000000\n") == list(CAPABILITIES)
    with pytest.raises(ValueError, match="CapBnd"):
        missing_capabilities("Name:\tpython\n")


def test_run_privileged_is_spelled_out():
    args = ["run", "--name", "kind-worker", "--privileged", "-v", LIB_MODULES_MOUNT, "kindest/node"]
    out = rewrite(args, ["SYS_RESOURCE"], ("/dev/kmsg",), lib_modules="/cache/lib-modules")
    assert "--privileged" not in out
    assert out[:3] == ["run", "--name", "kind-worker"]
    assert out[3:3 + len(privileged_flags(["SYS_RESOURCE"], ("/dev/kmsg",)))] == [
        "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "systempaths=unconfined",
        "--device-cgroup-rule", "a *:* rwm", "--device", "/dev/kmsg"]
    assert "/cache/lib-modules:/lib/modules:ro" in out and out[-1] == "kindest/node"


def test_exec_loses_privileged_and_other_commands_pass_unchanged():
    assert rewrite(["exec", "--privileged", "-i", "node", "kubeadm", "init"], ["SYS_RESOURCE"], (), None) == [
        "exec", "-i", "node", "kubeadm", "init"]
    for args in (["ps", "-a", "--privileged"], ["inspect", "node"], []):
        assert rewrite(args, ["SYS_RESOURCE"], (), None) == args
    # With /lib/modules present (no stand-in given) the mount stays as kind wrote it.
    assert LIB_MODULES_MOUNT in rewrite(["run", "-v", LIB_MODULES_MOUNT, "img"], [], (), None)


def test_installed_shim_runs_the_real_docker_with_the_rewritten_arguments(tmp_path):
    real = tmp_path / "real-docker"
    real.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    real.chmod(0o755)
    shim_dir = install(tmp_path / "shim dir", str(real))
    run = subprocess.run([str(shim_dir / "docker"), "run", "--privileged", "img"], capture_output=True, text=True,
                         env=dict(os.environ, PATH=f"{shim_dir}{os.pathsep}{os.environ['PATH']}"), check=True)
    passed = json.loads(run.stdout)
    assert passed[:3] == ["run", "--cap-add", "ALL"] and passed[-1] == "img" and "--privileged" not in passed
    drops = [passed[i + 1] for i, a in enumerate(passed) if a == "--cap-drop"]
    assert drops == missing_capabilities()  # this machine's own bounding set
    plain = subprocess.run([str(shim_dir / "docker"), "version"], capture_output=True, text=True, check=True)
    assert json.loads(plain.stdout) == ["version"]


def test_without_the_real_docker_named_the_shim_says_so():
    run = subprocess.run([sys.executable, "-m", "zoneproof.cluster.dockershim", "ps"], capture_output=True,
                         text=True, env={k: v for k, v in os.environ.items() if k != "ZONEPROOF_REAL_DOCKER"})
    assert run.returncode != 0 and "ZONEPROOF_REAL_DOCKER is not set" in run.stderr
