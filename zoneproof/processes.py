"""Child processes of zoneproof: started in process groups of their own with their logs in
a directory of ours, recorded by pid and start time, and stopped again by group, so that
nothing outlives a run. ``kill_processes_under`` is the safety net for tools that start
processes we never saw (kwokctl's control plane): it finds them by their directory."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
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


def _stat(pid: int | str) -> list[str] | None:
    """/proc/<pid>/stat after the command name (state, ppid, pgrp, ...), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """The kernel's start time of a process (clock ticks since boot), or None if it is gone:
    with the pid it names one process, never a later one that reused the pid."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None  # field 22 of stat


def stop_groups(groups: dict[str, tuple[int, int]], grace: float = 5.0) -> None:
    """Stop process groups we started (``start_process`` makes each child a group leader):
    name -> (pid, start time). SIGTERM to each group, then SIGKILL to what is left. A pid
    whose start time changed belongs to someone else now and is left alone."""
    live = {name: pid for name, (pid, started) in groups.items() if start_time(pid) == started}
    if not live:
        return
    log.info("stopping %s", ", ".join(sorted(live)))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in live.values():
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while live and time.monotonic() < deadline:
            for name, pid in list(live.items()):
                if _gone(pid):
                    del live[name]
            if live:
                time.sleep(0.05)
        if not live:
            return
    raise RuntimeError(f"processes survived SIGKILL: {', '.join(f'{n} ({p})' for n, p in live.items())}")


def _gone(pgid: int) -> bool:
    """Every process of the group has exited. The leader, when it is our child, counts as
    gone only once reaped (a process on its way out can vanish from /proc for a moment
    before it becomes a zombie); other members count as gone when absent or zombies."""
    try:
        reaped, _ = os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:  # not our child: someone else reaps it
        reaped = -1
    if reaped == 0:
        return False
    for proc in Path("/proc").iterdir():
        fields = _stat(proc.name) if proc.name.isdigit() else None
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
            return False
    return True


def python_module_as_in_a_terminal(module: str) -> list[str]:
    """The command that runs ``python -m module`` able to take a Ctrl-C, for tests that send
    one: started from a background shell (nohup, some CI runners) a child inherits SIGINT
    ignored, and Python then leaves it ignored, so the signal would never arrive."""
    return [sys.executable, "-c", "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                                  f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"]
