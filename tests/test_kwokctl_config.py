"""The kwokctl configuration carries our timings and the power-aware node selector."""

from pathlib import Path

from zoneproof import labels
from zoneproof.cluster.local import kwokctl_config
from zoneproof.cluster.spec import ClusterSpec, Timings

BINARIES = {b: Path(f"/bin/{b}") for b in
            ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd", "kwok")}


def _args(cfg, component):
    patch = next(p for p in cfg["componentsPatches"] if p["name"] == component)
    return {a["key"]: (a["value"], a["override"]) for a in patch["extraArgs"]}


def test_local_binaries_and_admission():
    opts = kwokctl_config(ClusterSpec(), BINARIES)["options"]
    assert opts["runtime"] == "binary"
    assert opts["kubeApiserverBinary"] == "/bin/kube-apiserver"
    assert opts["etcdBinary"] == "/bin/etcd"
    assert opts["kwokControllerBinary"] == "/bin/kwok"
    assert opts["kubeAdmission"] is True


def test_timings_are_scaled_by_the_heartbeat_factor():
    spec = ClusterSpec(timings=Timings(node_monitor_grace_period=12, node_lease_duration=10, heartbeat_factor=2,
                                       not_ready_toleration=7, unreachable_toleration=9, node_eviction_rate=0.5))
    cfg = kwokctl_config(spec, BINARIES)
    opts = cfg["options"]
    assert opts["kubeControllerManagerNodeMonitorGracePeriodMilliseconds"] == 24000
    assert opts["nodeLeaseDurationSeconds"] == 20
    assert opts["heartbeatFactor"] == 1
    api = _args(cfg, "kube-apiserver")
    assert api["default-not-ready-toleration-seconds"] == ("7", False)
    assert api["default-unreachable-toleration-seconds"] == ("9", False)
    assert _args(cfg, "kube-controller-manager")["node-eviction-rate"] == ("0.5", False)


def test_kwok_manages_only_powered_nodes():
    kwok = _args(kwokctl_config(ClusterSpec(), BINARIES), "kwok-controller")
    assert kwok["manage-all-nodes"] == ("false", True)  # replaces kwokctl's own --manage-all-nodes=true
    assert kwok["manage-nodes-with-label-selector"] == (f"{labels.POWER}={labels.POWER_ON}", False)
