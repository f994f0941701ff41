"""Processes zoneproof starts are stopped by process group, by pid and start time: the
whole group goes, and a pid that now names another process is left alone."""

from __future__ import annotations

import os
import sys
import time

from zoneproof.processes import start_process, start_time, stop_groups

# A leader that starts a grandchild in its group and prints its pid, then waits; both ignore SIGTERM
# so that only SIGKILL ends them.
STUBBORN = ("import os, signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)']); "
            "print(child.pid, flush=True); time.sleep(600)")


def _alive(pid: int) -> bool:
    state = start_time(pid)
    if state is None:
        return False
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_group_is_stopped_whole_even_when_it_ignores_sigterm(tmp_path):
    proc = start_process("stubborn", [sys.executable, "-u", "-c", STUBBORN], tmp_path)
    log = tmp_path / "stubborn.log"
    deadline = time.monotonic() + 20
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(log.read_text().split()[0])
    assert _alive(proc.pid) and _alive(grandchild)
    started = time.monotonic()
    stop_groups({"stubborn": (proc.pid, start_time(proc.pid))}, grace=1)
    assert not _alive(proc.pid) and not _alive(grandchild)
    assert not os.path.exists(f"/proc/{proc.pid}"), "our child was left a zombie"
    assert time.monotonic() - started < 5


def test_a_pid_with_another_start_time_is_not_ours(tmp_path):
    proc = start_process("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"], tmp_path)
    try:
        stop_groups({"sleeper": (proc.pid, start_time(proc.pid) + 1)}, grace=1)
        assert _alive(proc.pid), "a process whose start time differs from the recorded one was stopped"
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def test_a_process_already_gone_is_fine(tmp_path):
    proc = start_process("brief", [sys.executable, "-c", "pass"], tmp_path)
    recorded = (proc.pid, start_time(proc.pid))
    proc.wait()
    stop_groups({"brief": recorded}, grace=1)
    assert start_time(proc.pid) is None
