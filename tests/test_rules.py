"""`zoneproof rules`: the zonal CSI rules against the reference driver's controller and node
endpoints hold, and each driver bug of the catalogue that the rules can see fails them by the rule's
name, in seconds and without a cluster."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from zoneproof import bugs as bug_catalogue

pytestmark = pytest.mark.driver


def rules(*args: str, bugs: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoneproof.cli", "rules", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **{bug_catalogue.ENV: bugs}))


def test_the_reference_driver_keeps_every_rule():
    run = rules("--profile", "reference")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "24 passed" in run.stdout.splitlines()[-1], run.stdout[-2000:]  # 21 controller rules, 3 node rules


# The rule each bug breaks, as the failing test's message names it.
CAUGHT = {
    "own-zone": "CSI CreateVolume",
    "no-accessible-topology": "accessible_topology must name where the volume is",
    "topology-other-zone": "accessible_topology must name where the volume is",
    "zoneid-overrides-topology": "with a zone list of every zone",
    "conflicting-zone-fallback": "the volume cannot be accessible from the requisite",
    "no-stock-internal": "MUST be RESOURCE_EXHAUSTED",
    "throttling-rezone": "retried after Throttling",
    "unpublish-keeps-disk-attached": "CSI ControllerUnpublishVolume",
    "delete-keeps-disk": "CSI DeleteVolume",
    "volume-stealing": "MUST be FAILED_PRECONDITION",
    "unpublish-fails-for-gone-instance": "from released instance",
    "delete-with-instance-on-attach": "releasing the node's instance released the disk too",
    "publish-ignores-attach-failure": "answered success, but every AttachDisk failed",
    "first-term-only-topology": "a driver that reads only the first term",
    "create-not-idempotent": "MUST answer the same volume",
    "lost-answer-is-final": "tells the CO the call is over",
    "multi-zone-request-refused": "CSI CreateVolume refused a request it can serve",
    "name-reuse-ignores-topology": "MUST answer ALREADY_EXISTS and make nothing",
    "node-info-one-zone": "CSI NodeGetInfo of the node on",
    "node-info-empty-zone": "accessible_topology names {'topology.diskplugin.csi.alibabacloud.com/zone': ''}",
    "attach-limit-over-reported": "max_volumes_per_node is 32",
    "round-robin-unlocked": "the turn is not kept under concurrent calls",
    "well-known-key-ignored": "the first preferred topology (topology.kubernetes.io/zone=",
    "topology-foreign-key": "the volume says [{'topology.disk.example.com/zone'",
    "topology-region-only": "the volume says [{'topology.kubernetes.io/region'",
}


def test_every_bug_of_the_controller_has_a_rule_it_breaks():
    controller = {bug.name for bug in bug_catalogue.CATALOGUE if bug.layer == "controller"}
    assert controller, "the catalogue has no bug of the controller: nothing to check"
    assert controller <= set(CAUGHT), f"controller bugs no rule is shown to catch: {sorted(controller - set(CAUGHT))}"


@pytest.mark.parametrize("bug", sorted(CAUGHT))
def test_a_driver_bug_fails_the_rule_it_breaks(bug):
    run = rules("--profile", "reference", bugs=bug)
    assert run.returncode == 1, run.stdout[-3000:]
    assert CAUGHT[bug] in run.stdout, run.stdout[-4000:]


def test_a_controller_that_reads_a_cluster_needs_one(tmp_path):
    binary = tmp_path / "plugin"
    binary.write_text("#!/bin/sh\nexit 1\n")
    binary.chmod(0o755)
    run = rules("--profile", "alibaba", "--driver-binary", str(binary))
    assert run.returncode != 0
    assert "reads a cluster ({kubeconfig}): give one with --kubeconfig" in run.stdout + run.stderr
