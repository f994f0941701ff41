"""The allure HTML report of a run, made from ``reports/allure-results`` by the allure
command line that ``tools/allure`` pins (npm's ``allure-commandline``, whose lock file
fixes version and checksum). It is installed with npm from the registry into the tool cache
on first use, keyed by the lock, and needs a Java runtime, as allure 2 does.

Before generating, the results get what allure shows beside the tests: the environment,
the categories failures fall into, and the history of the previous report (so its trend
graphs and each test's history carry over from run to run)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from zoneproof.progress import step
from zoneproof.toolchain import TOOLS_DIR, cache_root

log = logging.getLogger(__name__)

PIN_DIR = TOOLS_DIR / "allure"
PIN_FILES = ("package.json", "package-lock.json")
# What allure files failures under (first match wins); broken = an error outside the
# test's assertions (a fixture, the cluster, the cloud), which allure calls "broken".
CATEGORIES = [
    {"name": "placement violation", "matchedStatuses": ["failed"],
     "messageRegex": r"(?s).*(VIOLATION|placement violations that cannot heal|disks outside the zones|runs in .* "
                     r"its disk in|pod runs on .* but disk|cross-zone).*"},
    {"name": "transient violation", "matchedStatuses": ["failed"],
     "messageRegex": r"(?s).*transient placement violations.*"},
    {"name": "timeout", "matchedStatuses": ["failed", "broken"],
     "messageRegex": r"(?s).*(timed out|Timeout|WaitTimeout|gave up waiting).*"},
    {"name": "infrastructure", "matchedStatuses": ["broken"]},
    {"name": "other assertion", "matchedStatuses": ["failed"]},
]


class AllureError(RuntimeError):
    """The allure command line could not be installed or failed."""


def _pin_digest() -> str:
    h = hashlib.sha256()
    for name in PIN_FILES:
        h.update(name.encode() + b"\0" + (PIN_DIR / name).read_bytes() + b"\0")
    return h.hexdigest()[:12]


def version() -> str:
    return json.loads((PIN_DIR / "package.json").read_text())["dependencies"]["allure-commandline"]


def install() -> Path:
    """The pinned allure command line, installed on first use; returns its executable."""
    target = cache_root() / "tools" / f"allure-{version()}-{_pin_digest()}"
    executable = target / "node_modules" / ".bin" / "allure"
    missing = [(cmd, pkg) for cmd, pkg in (("npm", "npm"), ("java", "default-jre-headless")) if not shutil.which(cmd)]
    if missing:
        raise AllureError("the allure report needs " + " and ".join(f"{c} (Debian package {p})" for c, p in missing))
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".allure.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time
        if executable.is_file():
            return executable
        staging = Path(tempfile.mkdtemp(prefix=".allure-", dir=target.parent))
        try:
            for name in PIN_FILES:
                shutil.copy(PIN_DIR / name, staging / name)
            with step(f"npm ci of allure-commandline {version()} into {target}"):
                proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=staging,
                                      capture_output=True, text=True)
            if proc.returncode != 0:
                raise AllureError(f"npm ci of allure-commandline {version()} failed:\n{proc.stderr[-3000:]}")
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return executable


def _properties(environment: dict) -> str:
    """allure's environment.properties: one key=value per line, nested values flattened."""
    lines = []
    for key, value in environment.items():
        if isinstance(value, dict):
            lines += [f"{key}.{k}={v}" for k, v in value.items()]
        else:
            lines.append(f"{key}={value}")
    return "\n".join(line.replace("\n", " ") for line in lines) + "\n"


def generate(results: Path, report: Path, environment: dict) -> Path:
    """Write the environment and categories into ``results``, carry the history of the
    report already at ``report`` over, and generate the report there anew."""
    if not results.is_dir() or not any(results.glob("*-result.json")):
        raise AllureError(f"no allure results in {results}: nothing to report on")
    (results / "environment.properties").write_text(_properties(environment))
    (results / "categories.json").write_text(json.dumps(CATEGORIES, indent=2))
    (results / "executor.json").write_text(json.dumps({"name": "zoneproof e2e", "type": "zoneproof",
                                                       "buildName": environment.get("started", "")}))
    history = report / "history"
    if history.is_dir():
        shutil.rmtree(results / "history", ignore_errors=True)
        shutil.copytree(history, results / "history")
    executable = install()
    # A single-file report opens from file:// (the multi-file one loads its data by XHR,
    # which browsers refuse there), but writes no history: a multi-file generation beside
    # it provides the history the next run carries over.
    with tempfile.TemporaryDirectory(prefix=".allure-multi-", dir=report.parent) as multi:
        with step(f"allure generate into {report}"):
            _allure(executable, "generate", "--clean", "-o", multi, str(results))
            _allure(executable, "generate", "--single-file", "--clean", "-o", str(report), str(results))
        shutil.copytree(Path(multi) / "history", report / "history")
    return report / "index.html"


def _allure(executable: Path, *args: str) -> None:
    # "true" (allure reads a boolean): no analytics sent while generating (up to 10 s lost on
    # a closed network) and no analytics script in the page, which must open offline.
    env = dict(os.environ, ALLURE_NO_ANALYTICS="true")
    proc = subprocess.run([str(executable), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise AllureError(f"allure {' '.join(args)} failed ({proc.returncode}):\n{(proc.stderr or proc.stdout)[-3000:]}")
