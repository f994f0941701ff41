"""The Docker daemon the kind provider talks to.

Where a daemon answers (``DOCKER_HOST`` or the default socket) it is used as it is. Where
none answers and ``dockerd`` is installed and we are root, zoneproof starts a private one:
its data root lives in the cache (so a built node image survives the daemon), its socket
and exec root in a folder of its own, and it is stopped when the last cluster using it goes
down. A daemon zoneproof did not start is never stopped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from zoneproof import toolchain
from zoneproof.cluster.base import ClusterError
from zoneproof.processes import start_time
from zoneproof.waiting import wait_for

log = logging.getLogger(__name__)

DOCKER_PACKAGE = "docker.io"  # Debian's package with docker and dockerd


class DockerError(ClusterError):
    """No Docker daemon can be used; the message says what to install or start."""


def docker_binary() -> str:
    found = shutil.which("docker")
    if not found:
        raise DockerError(f"the `docker` command is not on PATH; install it (Debian: apt-get install {DOCKER_PACKAGE})")
    return found


@dataclass(frozen=True)
class Docker:
    """A Docker daemon: ``host`` is its DOCKER_HOST ("" for the client's default)."""

    host: str
    private: bool = False

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.host:
            env["DOCKER_HOST"] = self.host
        return env

    def run(self, *args: str, timeout: float = 600, check: bool = True, input: bytes | None = None,
            ) -> subprocess.CompletedProcess:
        proc = subprocess.run([docker_binary(), *args], env=self.env(), capture_output=True, timeout=timeout,
                              input=input)
        if check and proc.returncode != 0:
            raise DockerError(f"`docker {' '.join(args[:4])}` failed ({proc.returncode}): "
                              f"{proc.stderr.decode(errors='replace').strip()[-2000:]}")
        return proc

    def answers(self) -> bool:
        try:
            return self.run("version", "--format", "{{.Server.Version}}", timeout=10, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def has_image(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, check=False, timeout=30).returncode == 0

    def image_id(self, ref: str) -> str:
        return self.run("image", "inspect", "--format", "{{.Id}}", ref, timeout=30).stdout.decode().strip()

    def prune_repository(self, repository: str, keep: str) -> None:
        """Remove the other tags of one of our image repositories (older builds, gigabytes
        each), except those a container still uses."""
        out = self.run("image", "ls", repository, "--format", "{{.Repository}}:{{.Tag}}").stdout.decode().split()
        in_use = set(self.run("ps", "-a", "--format", "{{.Image}}").stdout.decode().split())
        for ref in out:
            if ref != keep and ref not in in_use:
                log.info("removing the outdated image %s", ref)
                self.run("rmi", ref, check=False)


def private_dir() -> Path:
    """The private daemon's socket, exec root, pid and log; kept short for the socket path."""
    return toolchain.cache_root() / "docker"


def _record_path() -> Path:
    return private_dir() / "daemon.json"


@contextmanager
def _locked() -> Iterator[None]:
    private_dir().mkdir(parents=True, exist_ok=True)
    with open(private_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _read_record() -> dict | None:
    try:
        record = json.loads(_record_path().read_text())
    except FileNotFoundError:
        return None
    if start_time(record["pid"]) != record["start_time"]:
        return None  # the daemon we started is gone (or its pid was reused)
    return record


def _private_host() -> str:
    return f"unix://{private_dir() / 'docker.sock'}"


def _start_private() -> dict:
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        why = "`dockerd` is not installed" if dockerd is None else "zoneproof is not running as root"
        raise DockerError(
            f"no Docker daemon answers (DOCKER_HOST={os.environ.get('DOCKER_HOST', '') or 'default'}) and {why}, "
            f"so none can be started here: start Docker, or install Debian's `{DOCKER_PACKAGE}` package and run "
            "as root to let zoneproof start a private daemon")
    root = private_dir()
    args = [dockerd, "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "dockerd.pid"), "-H", _private_host()]
    log.info("no Docker daemon answers; starting a private one (data root %s)", root / "data")
    with open(root / "dockerd.log", "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    record = {"pid": proc.pid, "start_time": start_time(proc.pid), "host": _private_host(), "users": []}
    docker = Docker(_private_host(), private=True)

    def answering():
        if proc.poll() is not None:
            raise DockerError(f"the private dockerd exited with {proc.returncode}; see {root / 'dockerd.log'}")
        return docker.answers(), "dockerd starting"

    try:
        wait_for(answering, what="the private Docker daemon", timeout=60)
    except BaseException:
        _stop(record)
        raise
    _record_path().write_text(json.dumps(record))
    return record


def _stop(record: dict) -> None:
    pid = record["pid"]
    if start_time(pid) != record["start_time"]:
        return
    log.info("stopping the private Docker daemon (pid %d)", pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while start_time(pid) == record["start_time"] and time.monotonic() < deadline:
        try:  # reap it when it is our child; otherwise wait for it to vanish
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        except ChildProcessError:
            pass
        time.sleep(0.2)
    else:
        if start_time(pid) == record["start_time"]:
            log.warning("the private Docker daemon did not stop in 30 s; killing it")
            os.kill(pid, signal.SIGKILL)


def acquire(user: str) -> Docker:
    """A daemon for ``user`` (a cluster name, or a build): the one that answers, else
    the private one, started if needed and marked as used by ``user``."""
    ambient = Docker(os.environ.get("DOCKER_HOST", ""))
    docker_binary()
    with _locked():
        record = _read_record()
        if record is None and ambient.answers():
            return ambient
        if record is None:
            record = _start_private()
        if user not in record["users"]:
            record["users"].append(user)
        _record_path().write_text(json.dumps(record))
        return Docker(record["host"], private=True)


def release(user: str) -> None:
    """``user`` no longer needs the private daemon; the last user stops it."""
    with _locked():
        record = _read_record()
        if record is None:
            _record_path().unlink(missing_ok=True)
            return
        record["users"] = [u for u in record["users"] if u != user]
        if record["users"]:
            _record_path().write_text(json.dumps(record))
            return
        _stop(record)
        _record_path().unlink(missing_ok=True)


def attached() -> Docker:
    """The daemon a running cluster uses, without starting one: the private daemon if it
    runs, else the ambient one."""
    with _locked():
        record = _read_record()
    if record is not None:
        return Docker(record["host"], private=True)
    return Docker(os.environ.get("DOCKER_HOST", ""))


@contextmanager
def borrowed(user: str) -> Iterator[Docker]:
    """A daemon for the length of a block (a node-image build outside any cluster)."""
    docker = acquire(user)
    try:
        yield docker
    finally:
        if docker.private:
            release(user)
