"""The Chaos Toolkit experiments shipped with zoneproof_chaos, run through chaoslib with
rollbacks always played: each journal must show no deviation and no failed activity or rollback, the
watcher's full history no transient violation, and the recovery times go to the report.

These tests break nodes, zones and the cloud for the whole cluster, so they are marked
``disruptive``: they run one at a time with nothing else on the cluster (``zoneproof e2e``
runs them after the parallel phase, in one process). One cluster per xdist worker would
let them run in parallel, but on the 2-core machines this targets a second cluster costs
more than it saves, and a zone loss in one cluster would slow every other cluster's
timings.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess

import allure
import pytest

from zoneproof import labels, results, workloads
from zoneproof.cluster.nodes import instance_of
from zoneproof.namespaces import TEST_LABEL
from zoneproof.processes import python_module_as_in_a_terminal
from zoneproof.report import timeline
from zoneproof.waiting import wait_for

# The experiments come with the optional chaos extra; without it their cases are skipped, saying so.
pytest.importorskip("zoneproof_chaos", reason="the Chaos Toolkit extension is not installed: "
                                              "pip install 'zoneproof[chaos]'")
from zoneproof_chaos import running  # noqa: E402
from zoneproof_chaos.context import configuration_env, configuration_for  # noqa: E402

log = logging.getLogger(__name__)

pytestmark = pytest.mark.disruptive


@pytest.fixture
def alone():
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.fail("disruptive tests break whole zones of the shared cluster; run them in one process "
                    "(`zoneproof e2e` runs them alone, after the parallel phase), never on a parallel worker")


@pytest.fixture
def chaos_env(alone, placement, cluster):
    """The driver with the topology policy, a watched namespace (and nodes, for the
    timeline), and chaostoolkit-kubernetes pointed at this cluster."""
    env = placement("topology", watch_nodes=True)
    with running.kubeconfig(cluster.kubeconfig, getattr(cluster, "context", None)):
        yield env


def record_metrics(name: str, measured: dict[str, float], drawn: dict, record_testsuite_property) -> None:
    for key, value in measured.items():
        record_testsuite_property(f"{name} seconds: {key}", value)
    allure.attach(json.dumps(measured, indent=2), name="recovery times (s)",
                  attachment_type=allure.attachment_type.JSON)
    allure.attach(timeline.draw(drawn), name="timeline", attachment_type=allure.attachment_type.SVG)
    results.add_chaos({"experiment": name, "recovery": running.recovery_seconds(measured), "seconds": measured,
                       "timeline": drawn})


@pytest.mark.parametrize("experiment", running.experiments(), ids=lambda p: p.stem)
def test_experiment(chaos_env, cluster, experiment, seed, record_testsuite_property):
    journal = running.run(experiment, {**configuration_for(cluster, chaos_env.profile.source),
                                       "namespace": chaos_env.namespace, "seed": seed})
    allure.attach(json.dumps(journal, indent=2, default=str), name="chaos journal",
                  attachment_type=allure.attachment_type.JSON)
    measured = running.metrics(journal)
    log.info("%s: %s", experiment.stem, ", ".join(f"{k} {v:g}s" for k, v in measured.items()))
    drawn = timeline.build(experiment.stem, journal, chaos_env.watcher.changes_so_far(),
                           chaos_env.watcher.audit_so_far())
    record_metrics(experiment.stem, measured, drawn, record_testsuite_property)
    found = running.problems(journal)
    assert not found, f"{experiment.name}:\n" + "\n".join(found)
    # Every experiment measures at least one recovery: a run that measured none proved nothing.
    assert any(k.startswith(running.RECOVERY_PREFIX) for k in measured), f"no recovery measured: {measured}"


def test_interrupt_during_zone_loss_restores_the_zone(alone, cluster, deployments, profile, tmp_path):
    """Ctrl-C while a zone is powered off and tainted: `chaos run` must still power the zone
    on, lift the taint, and delete the namespace and disks it made."""
    cloud = deployments.get("topology").cloud()
    core = cluster.core
    env = configuration_env(cluster, profile.source, dict(os.environ))
    experiment = running.experiment("zone-loss")
    proc = subprocess.Popen([*python_module_as_in_a_terminal("chaostoolkit"), "--log-file",
                             str(tmp_path / "chaos.log"), "run", str(experiment),
                             "--journal-path", str(tmp_path / "journal.json")],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        def in_outage():
            states = cluster.node_states()
            tainted = [s.name for s in states if not s.is_ready
                       and any(t.startswith(labels.TAINT_OUT_OF_SERVICE) for t in s.taints)]
            if proc.poll() is not None:
                raise AssertionError(f"`chaos run` ended ({proc.returncode}) before the outage began")
            return bool(tainted), f"NotReady and out of service: {tainted or 'none yet'}"

        wait_for(in_outage, what="the zone-loss experiment to take a zone down", timeout=120)
        made = [ns.metadata.name for ns in core.list_namespace(label_selector=f"{TEST_LABEL}=chaos").items]
        assert made, "the experiment made no namespace"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    journal = json.loads((tmp_path / "journal.json").read_text())
    assert journal["status"] == "interrupted", journal["status"]
    assert proc.returncode == 1
    assert all(r["status"] == "succeeded" for r in journal.get("rollbacks") or []), journal.get("rollbacks")
    states = cluster.node_states()
    workers = [s for s in states if s.zone]  # the zones' nodes (a kind control plane is in none)
    assert len(workers) == len(cluster.spec.zones) * cluster.spec.nodes_per_zone, workers
    assert all(s.is_ready for s in states), [s for s in states if not s.is_ready]
    instances = [instance_of(n) for n in core.list_node().items if n.metadata.name in {s.name for s in workers}]
    assert not cloud.stopped(instances), f"instances still stopped: {cloud.stopped(instances)}"
    assert not [s.name for s in states if any(t.startswith(labels.TAINT_OUT_OF_SERVICE) for t in s.taints)]

    def namespaces_gone():
        left = [n for n in made if n in {ns.metadata.name for ns in core.list_namespace().items}]
        return not left, f"namespaces left: {left}"

    wait_for(namespaces_gone, what="the experiment's namespace to be deleted", timeout=90)
    leaked = [d["DiskId"] for n in made for d in workloads.disks_created_for(cloud, n)]
    assert not leaked, f"disks left behind by the interrupted run: {leaked}"
