"""Child processes of zoneproof: started with their logs in a directory of ours, and found
and stopped again by that directory, so that nothing outlives a run."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


def processes_under(directory: Path) -> list[int]:
    """Pids of processes whose command line names a path inside ``directory``."""
    needle = str(directory).rstrip("/") + "/"
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            pids.append(int(proc.name))
    return pids


def kill_processes_under(directory: Path, grace: float = 5.0, *, leftovers: bool = True) -> None:
    """Stop every process whose command line names a path inside ``directory``: the
    normal stop of processes we started there (``leftovers=False``), and the safety net
    that keeps "no leaked process" true when a tool fails half-way."""
    pids = processes_under(directory)
    if not pids:
        return
    if leftovers:
        log.warning("stopping %d leftover process(es) of %s", len(pids), directory)
    else:
        log.info("stopping %d process(es) of %s", len(pids), directory)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (pids := processes_under(directory)):
            time.sleep(0.1)
        if not pids:
            return


def start_process(name: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a long-running child with stdout and stderr in ``log_dir/<name>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    log.debug("started %s (pid %d): %s", name, proc.pid, " ".join(args))
    return proc
