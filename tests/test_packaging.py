"""The project's wheels (zoneproof, and its Chaos Toolkit extension zoneproof_chaos, the
optional extra ``zoneproof[chaos]``), installed into a fresh virtual environment, work from
any directory: the CLI, the shipped experiments and profiles, the suites (found by import
name through the pytest plugin) and `chaos discover` of the extension. The core package
does not import the extension, and installed without it, works and says what is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parent.parent


def _uv() -> str:
    found = os.environ.get("ZONEPROOF_UV") or shutil.which("uv")
    if not found:
        pytest.fail("no uv to build and install the wheel with: `make test` sets ZONEPROOF_UV; or put uv on PATH")
    return found


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    """The two wheels built from the tree, and the locked dependencies as requirements
    (with the chaos extra's: ``requirements.txt``; without: ``core.txt``)."""
    uv, work = _uv(), tmp_path_factory.mktemp("wheel")
    subprocess.run([uv, "build", "--all-packages", "--wheel", "--out-dir", str(work)], cwd=REPO, check=True,
                   capture_output=True)
    built = sorted(work.glob("*.whl"))
    assert [w.name.split("-")[0] for w in built] == ["zoneproof", "zoneproof_chaos"], built
    for name, extra in (("requirements.txt", ["--all-packages", "--all-extras"]), ("core.txt", ["--package", "zoneproof"])):
        subprocess.run([uv, "export", "--frozen", *extra, "--no-dev", "--no-hashes", "--no-emit-workspace",
                        "--output-file", str(work / name)], check=True, cwd=REPO, capture_output=True)
    return work


def _venv(wheels: Path, where: Path, requirements: str, *to_install: Path) -> Path:
    """bin/ of a fresh venv with ``to_install`` and the locked requirements (from uv's cache)."""
    uv = _uv()
    subprocess.run([uv, "venv", "--python", sys.executable, str(where)], check=True, capture_output=True)
    subprocess.run([uv, "pip", "install", "--requirements", str(wheels / requirements), *map(str, to_install)],
                   check=True, capture_output=True, env=dict(os.environ, VIRTUAL_ENV=str(where)))
    return where / "bin"


@pytest.fixture(scope="module")
def installed(wheels, tmp_path_factory) -> Path:
    """bin/ of a venv with zoneproof and its chaos extra."""
    return _venv(wheels, tmp_path_factory.mktemp("venv") / "venv", "requirements.txt", *sorted(wheels.glob("*.whl")))


def test_the_core_alone_runs_and_names_the_extra_it_lacks(wheels, tmp_path):
    core = _venv(wheels, tmp_path / "venv", "core.txt", next(wheels.glob("zoneproof-*.whl")))
    assert not (core / "chaos").exists()
    helped = run(core, "zoneproof", "e2e", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "--driver-binary" in helped.stdout, helped.stderr
    refused = run(core, "zoneproof", "chaos", "list", cwd=tmp_path)
    assert refused.returncode == 2 and "pip install 'zoneproof[chaos]'" in refused.stderr, refused.stderr
    collected = run(core, str(core / "python"), "-m", "pytest", "--pyargs", "zoneproof.suites", "--collect-only",
                    "-q", "-p", "no:cacheprovider", "-rs", cwd=tmp_path)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr
    assert "test_placement.py::test_pods_follow_their_disks" in collected.stdout
    assert "test_chaos.py::" not in collected.stdout
    assert "Chaos Toolkit extension is not installed" in collected.stdout, collected.stdout[-2000:]


def run(installed: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{installed}{os.pathsep}{env['PATH']}"
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_cli_runs_from_anywhere(installed, tmp_path):
    e2e = run(installed, "zoneproof", "e2e", "--help", cwd=tmp_path)
    assert e2e.returncode == 0 and "--driver-binary" in e2e.stdout, e2e.stderr
    listed = run(installed, "zoneproof", "chaos", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[0] for line in listed.stdout.splitlines()} == {
        "cloud-faults", "node-drain", "partial-zone-loss", "pod-delete", "zone-drain", "zone-loss"}


def test_the_installed_files_are_the_packages_own(installed, tmp_path):
    code = ("import zoneproof, zoneproof_chaos.running as r, zoneproof.profile as p; "
            "print(zoneproof.__file__); print(r.experiments()[0]); print(p.shipped())")
    shown = run(installed, str(installed / "python"), "-c", code, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    package, experiment, profiles = shown.stdout.splitlines()
    venv = str(installed.parent)
    assert package.startswith(venv) and experiment.startswith(venv), shown.stdout
    assert profiles == "['alibaba', 'reference']"


LINKED = ("suites", "fixtures", "manifests")  # at the repository's root, linked into the package


def test_the_checkout_links_the_root_folders_into_the_package():
    for name in LINKED:
        link = REPO / "zoneproof" / name
        assert link.is_symlink() and os.readlink(link) == f"../{name}", f"zoneproof/{name} is not a link to ../{name}"
        assert (REPO / name / "__init__.py").is_file()


def test_the_wheel_carries_the_root_folders_as_files_of_the_package(installed, tmp_path):
    code = ("import os, zoneproof.suites.steps, zoneproof.fixtures.cluster, zoneproof.manifests as m; "
            "[print(mod.__file__, os.path.islink(os.path.dirname(mod.__file__))) for mod in "
            "(zoneproof.suites.steps, zoneproof.fixtures.cluster, m)]; "
            "print(sorted(p.name for p in m.BASES.iterdir() if p.name.endswith('.yaml')))")
    shown = run(installed, str(installed / "python"), "-c", code, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    *modules, manifests = shown.stdout.splitlines()
    venv = str(installed.parent)
    for line, name in zip(modules, LINKED):
        path, linked = line.split()
        assert path.startswith(venv) and f"/zoneproof/{name}/" in path and linked == "False", shown.stdout
    assert manifests == "['service.yaml', 'statefulset.yaml', 'static-pv.yaml', 'static-pvc.yaml']", shown.stdout


def test_the_core_does_not_import_the_chaos_extension(installed, tmp_path):
    # The extension and Chaos Toolkit (zoneproof.commands.chaos, the command group, imports them only when run).
    code = ("import sys, zoneproof.cli, zoneproof.e2e; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('zoneproof_chaos', 'chaoslib', 'chaostoolkit', 'chaosk8s')))")
    shown = run(installed, str(installed / "python"), "-c", code, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "[]"


def test_chaos_discover_finds_the_extensions_activities(installed, tmp_path):
    found = run(installed, "chaos", "discover", "--no-system-info", "--no-install", "--discovery-path",
                str(tmp_path / "discovery.json"), "zoneproof_chaos", cwd=tmp_path)
    assert found.returncode == 0, found.stdout + found.stderr
    names = {a["name"] for a in json.loads((tmp_path / "discovery.json").read_text())["activities"]}
    assert {"power_off", "restore_power", "placement_settled", "no_cross_zone_attach_attempt"} <= names


def test_the_suites_are_found_by_import_name_through_the_plugin(installed, tmp_path):
    collected = run(installed, str(installed / "python"), "-m", "pytest", "--pyargs", "zoneproof.suites",
                    "--collect-only", "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr
    assert "test_placement.py::test_pods_follow_their_disks[wait-for-first-consumer-3zones-6replicas]" \
        in collected.stdout
    assert "test_chaos.py::test_experiment[zone-loss]" in collected.stdout


def test_a_profile_that_needs_a_binary_fails_before_starting_anything(installed, tmp_path):
    refused = run(installed, "zoneproof", "e2e", "--profile", "alibaba", cwd=tmp_path)
    assert refused.returncode != 0
    assert "pass --driver-binary PATH" in refused.stderr, refused.stderr
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())
