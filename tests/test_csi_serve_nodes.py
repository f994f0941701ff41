"""`zoneproof csi serve-nodes`: one process answering for many nodes, each on its own
socket with its own identity, as a node plugin per node would."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.ecs_clients import register_instances
from zoneproof.deploy.registrar import node_info
from zoneproof.ecs.backend import EcsConfig
from zoneproof.ecs.catalog import INSTANCE_TYPE
from zoneproof.ecs.server import EcsServer
from zoneproof.processes import stop_groups, start_process, start_time

pytestmark = pytest.mark.driver  # the reference driver's node process
ZONE_KEY = "topology.diskplugin.csi.alibabacloud.com/zone"


def serve_nodes(*nodes: tuple[str, str, str], ecs_endpoint: str = "127.0.0.1:1") -> list[str]:
    return [sys.executable, "-m", "zoneproof.cli", "csi", "serve-nodes", "--ecs-endpoint", ecs_endpoint,
            *(arg for node in nodes for arg in ("--node", *node))]


def test_each_socket_answers_for_its_own_node(tmp_path):
    nodes = [("i-a", "cn-beijing-a", f"unix://{tmp_path}/a.sock"), ("i-b", "cn-beijing-b", f"unix://{tmp_path}/b.sock"),
             ("i-c", "cn-beijing-b", f"unix://{tmp_path}/c.sock")]
    with EcsServer(EcsConfig(region="cn-beijing", zones={"cn-beijing-a": ("cloud_essd",),
                                                         "cn-beijing-b": ("cloud_essd",)})) as ecs:
        register_instances(ecs, {instance: zone for instance, zone, _ in nodes})
        proc = start_process("csi-nodes", serve_nodes(*nodes, ecs_endpoint=ecs.endpoint), tmp_path)
        try:
            answers = {endpoint: node_info(endpoint) for _, _, endpoint in nodes}
        finally:
            stop_groups({"csi-nodes": (proc.pid, start_time(proc.pid))})
    assert {(a.node_id, a.segments[ZONE_KEY]) for a in answers.values()} == {(i, z) for i, z, _ in nodes}
    for instance, zone, endpoint in nodes:
        assert (answers[endpoint].node_id, answers[endpoint].segments[ZONE_KEY]) == (instance, zone)
        # The attach limit is what the instance's type holds, read from the cloud.
        assert answers[endpoint].max_volumes == INSTANCE_TYPE.disk_quantity


@pytest.mark.parametrize(("nodes", "message"), [
    ([("i-a", "z", "unix:///tmp/x.sock"), ("i-b", "z", "unix:///tmp/x.sock")],
     "endpoint(s) given to more than one node: unix:///tmp/x.sock"),
    ([("i-a", "z", "tcp://127.0.0.1:9")], "must be unix:///path/to/socket"),
    ([], "Missing option '--node'"),
])
def test_bad_nodes_are_refused_by_name(nodes, message):
    proc = subprocess.run(serve_nodes(*nodes), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
