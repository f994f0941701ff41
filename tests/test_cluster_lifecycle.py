"""Bring-up with other shapes, refusal of bad options, and a clean tear-down."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from zoneproof.cluster import ClusterSpec, LocalProvider
from zoneproof.processes import processes_under, python_module_as_in_a_terminal
from zoneproof.cluster.spec import Timings
from zoneproof.waiting import wait_for

ZONEPROOF = [sys.executable, "-m", "zoneproof.cli"]


def _api_port(kubeconfig: Path) -> int:
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    return urlparse(server).port


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.cluster
def test_four_custom_zones_one_node_each_then_nothing_left(tmp_path):
    zones = ("mars-north-1", "mars-north-2", "mars-south-1", "mars-south-2")
    provider = LocalProvider(ClusterSpec(name="zp-four", region="mars", zones=zones, nodes_per_zone=1,
                                         timings=Timings(heartbeat_factor=2)),
                             workdir=tmp_path / "state")
    provider.up()
    try:
        assert provider.zones() == sorted(zones)
        assert all(len(provider.nodes(z)) == 1 for z in zones)
        assert all(s.is_ready for s in provider.node_states())
        port = _api_port(provider.kubeconfig)
        assert _port_open(port)
        assert processes_under(provider.cluster_dir), "no cluster processes found while up"
        cluster_dir = provider.cluster_dir
        # Power a node off the moment the cluster is up (kwok may still be adopting it) and
        # on again at once: each must still take effect.
        first = provider.nodes(zones[0])[0]
        provider.stop_node(first)
        provider.wait_nodes_ready([first], ready=False, timeout=provider.spec.timings.not_ready_bound)
        provider.start_node(first)
        provider.stop_node(first)
        provider.start_node(first)
        provider.wait_nodes_ready([first], timeout=30)
        assert all(s.is_ready for s in provider.node_states())
    finally:
        provider.down()
    assert not processes_under(cluster_dir)
    # A process that has just exited may hold its socket for a moment longer.
    wait_for(lambda: (not _port_open(port), f"port {port} still open"), what="the API port to close", timeout=10)
    assert not (tmp_path / "state").exists()
    provider.down()  # a second down is harmless


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zones", ""], "no zones given"),
        (["--zones", "cn-beijing-a,cn-beijing-a"], "'cn-beijing-a' is listed twice"),
        (["--nodes-per-zone", "0"], "nodes per zone must be at least 1"),
        (["--heartbeat-factor", "0"], "heartbeat_factor must be positive"),
    ],
)
def test_cli_refuses_bad_options_before_starting_anything(tmp_path, args, message):
    env = dict(os.environ, ZONEPROOF_STATE_DIR=str(tmp_path / "state"))
    proc = subprocess.run([*ZONEPROOF, "cluster", "up", "--name", "zp-bad", *args],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.cluster
def test_interrupted_bring_up_leaves_nothing(tmp_path):
    """Ctrl-C while the control plane is up but nodes are still registering."""
    state = tmp_path / "state"
    env = dict(os.environ, ZONEPROOF_STATE_DIR=str(state))
    proc = subprocess.Popen([*python_module_as_in_a_terminal("zoneproof.cli"), "cluster", "up",
                             "--name", "zp-interrupted"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "control plane up" in line:
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None or proc.returncode != 130:  # the interrupt did not land: clean up here
            proc.kill()
            subprocess.run([*ZONEPROOF, "cluster", "down", "--name", "zp-interrupted"], env=env,
                           capture_output=True, timeout=120)
    assert proc.returncode == 130, "".join(seen) + (rest or "")
    cluster_dir = state / "kwok" / "clusters" / "zp-interrupted"
    assert not processes_under(cluster_dir)
    assert not state.exists()
