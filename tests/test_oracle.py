"""Each placement check fails on a crafted mismatch, and passes on a correct placement."""

from __future__ import annotations

import copy

import pytest

from zoneproof import labels
from zoneproof.oracle import SELECTED_NODE, LastingViolation, Snapshot, check, picture, settled

DRIVER = "diskplugin.csi.alibabacloud.com"


def node(name, zone, instance, ready=True, taints=()):
    return {"metadata": {"name": name, "labels": {labels.ZONE: zone, labels.ZONE_DEPRECATED: zone,
                                                  labels.DISK_ZONE: zone, labels.INSTANCE_ID: instance}},
            "spec": {"taints": [{"key": t, "effect": "NoExecute"} for t in taints]},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}]}}


def good() -> Snapshot:
    pod = {"metadata": {"name": "web-0", "namespace": "ns", "ownerReferences": [{"kind": "StatefulSet",
                                                                                 "name": "web"}]},
           "spec": {"nodeName": "a-0", "volumes": [{"name": "disk-ssd",
                                                    "persistentVolumeClaim": {"claimName": "disk-ssd-web-0"}}]},
           "status": {"phase": "Running"}}
    pvc = {"metadata": {"name": "disk-ssd-web-0", "namespace": "ns"}, "spec": {"volumeName": "pv-0"}}
    pv = {"metadata": {"name": "pv-0", "labels": {labels.ZONE_DEPRECATED: "a"}},
          "spec": {"csi": {"driver": DRIVER, "volumeHandle": "d-0"},
                   "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                       {"key": labels.DISK_ZONE, "operator": "In", "values": ["a"]}]}]}}}}
    disk = {"DiskId": "d-0", "ZoneId": "a", "Attachments": {"Attachment": [{"InstanceId": "i-a0"}]}}
    va = {"metadata": {"name": "csi-1"}, "spec": {"attacher": DRIVER, "nodeName": "a-0",
                                                  "source": {"persistentVolumeName": "pv-0"}},
          "status": {"attached": True}}
    return Snapshot(pods=[pod], pvcs={("ns", "disk-ssd-web-0"): pvc}, pvs={"pv-0": pv},
                    nodes={"a-0": node("a-0", "a", "i-a0"), "b-0": node("b-0", "b", "i-b0")},
                    volume_attachments=[va], disks={"d-0": disk}, instance_zones={"i-a0": "a", "i-b0": "b"})


def test_a_correct_placement_passes():
    verdict = check(good(), driver=DRIVER)
    assert verdict.ok, verdict.violations
    assert [(p.pod, p.node_zone, p.volumes[0].pv_zone, p.volumes[0].disk_zone) for p in verdict.pods] == \
        [("web-0", "a", "a", "a")]
    assert "web-0" in verdict.table() and "ok" in verdict.table()


def mutated(change) -> list[str]:
    snap = copy.deepcopy(good())
    change(snap)
    verdict = check(snap, driver=DRIVER)
    assert not verdict.ok
    return verdict.violations


def test_wrong_node_zone():
    def change(s):
        s.pods[0]["spec"]["nodeName"] = "b-0"
        s.disks["d-0"]["Attachments"]["Attachment"] = [{"InstanceId": "i-b0"}]
        s.volume_attachments[0]["spec"]["nodeName"] = "b-0"
    assert any("pod runs on b-0 in b but disk d-0 is in a" in v for v in mutated(change))


def test_node_zone_labels_that_disagree():
    def change(s):
        s.nodes["a-0"]["metadata"]["labels"][labels.ZONE_DEPRECATED] = "b"
    assert any("zone labels disagree" in v for v in mutated(change))


def test_pv_label_and_affinity_disagree():
    def change(s):
        s.pvs["pv-0"]["metadata"]["labels"][labels.ZONE_DEPRECATED] = "b"
    assert any("zone statements disagree" in v for v in mutated(change))


def test_pv_without_any_zone():
    def change(s):
        s.pvs["pv-0"]["metadata"]["labels"] = {}
        del s.pvs["pv-0"]["spec"]["nodeAffinity"]
    assert any("states no zone" in v for v in mutated(change))


def test_ecs_zone_different():
    def change(s):
        s.disks["d-0"]["ZoneId"] = "b"
    violations = mutated(change)
    assert any("PV pv-0 says zone a but disk d-0 is in b" in v for v in violations)


def test_attachment_on_another_instance():
    def change(s):
        s.disks["d-0"]["Attachments"]["Attachment"].append({"InstanceId": "i-b0"})
    assert any("attached to i-b0 (zone b)" in v for v in mutated(change))


def test_volume_attachment_to_another_node():
    def change(s):
        s.volume_attachments[0]["spec"]["nodeName"] = "b-0"
    assert any("VolumeAttachment csi-1 attaches PV pv-0 to b-0" in v for v in mutated(change))


def test_claim_name_must_follow_the_template():
    def change(s):
        s.pods[0]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = "data-0"
        s.pvcs[("ns", "data-0")] = s.pvcs.pop(("ns", "disk-ssd-web-0"))
    assert any("is not named disk-ssd-web-0" in v for v in mutated(change))


@pytest.mark.parametrize("conflict", [True, False])
def test_pending_pod_whose_zone_is_gone(conflict):
    snap = copy.deepcopy(good())
    snap.nodes["a-0"] = node("a-0", "a", "i-a0", ready=False, taints=(labels.TAINT_UNREACHABLE,))
    snap.pods[0]["spec"]["nodeName"] = None
    snap.pods[0]["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False",
         "message": "0/2 nodes are available: 1 node(s) didn't match PersistentVolume's node affinity"
         if conflict else "0/2 nodes are available: 2 node(s) had untolerated taint"}]}
    snap.disks["d-0"]["Attachments"]["Attachment"] = []
    snap.volume_attachments = []
    verdict = check(snap, driver=DRIVER)
    assert verdict.ok is conflict
    assert verdict.pods[0].state == ("waiting" if conflict else "violation")


def test_pending_pod_must_not_hold_an_attachment():
    snap = copy.deepcopy(good())
    snap.nodes["a-0"] = node("a-0", "a", "i-a0", ready=False)
    snap.pods[0]["spec"]["nodeName"] = None
    snap.pods[0]["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "message": "1 node(s) had volume node affinity conflict"}]}
    verdict = check(snap, driver=DRIVER)
    assert not verdict.ok
    assert any("not to the pod's node (none)" in v for v in verdict.violations)


def test_pods_without_zonal_volumes_are_not_judged():
    snap = good()
    snap.pvs["pv-0"]["spec"]["csi"]["driver"] = "nfs.csi.k8s.io"
    assert check(snap, driver=DRIVER).pods == []


def test_picture_draws_pods_and_disks_by_zone():
    ok = picture(check(good(), driver=DRIVER), ["a", "b"])
    assert ok.splitlines()[0].split() == ["a", "b"]
    assert "web-0 + d-0" in ok and "!!" not in ok
    snap = copy.deepcopy(good())
    snap.disks["d-0"]["ZoneId"] = "b"
    split = picture(check(snap, driver=DRIVER), ["a", "b"])
    row = split.splitlines()[2]
    assert row.index("web-0 (pod) !!") < row.index("d-0 of web-0 (disk) !!")


def lost_zone_a() -> Snapshot:
    """web-0's zone a is gone: the pod waits Pending with the conflict, its disk detached."""
    snap = copy.deepcopy(good())
    snap.nodes["a-0"] = node("a-0", "a", "i-a0", ready=False, taints=(labels.TAINT_OUT_OF_SERVICE,))
    snap.pods[0]["spec"]["nodeName"] = None
    snap.pods[0]["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "message": "1 node(s) had no available volume zone"}]}
    snap.disks["d-0"]["Attachments"]["Attachment"] = []
    snap.volume_attachments = []
    return snap


def test_settled_when_every_pod_runs_attached_in_its_zone():
    assert settled(check(good(), driver=DRIVER), 1) == (True, "1 placed, 0 waiting")


def test_not_settled_while_a_replica_is_missing():
    done, state = settled(check(good(), driver=DRIVER), 2)
    assert not done and "1/2 pods" in state


def test_not_settled_while_a_pod_is_terminating():
    snap = good()
    snap.pods[0]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    done, state = settled(check(snap, driver=DRIVER), 1)
    assert not done and "terminating" in state


def test_not_settled_while_a_disk_is_not_attached_yet():
    snap = good()
    snap.disks["d-0"]["Attachments"]["Attachment"] = []
    done, state = settled(check(snap, driver=DRIVER), 1)
    assert not done and "attached to nothing" in state


def test_a_pod_waiting_for_its_lost_zone_is_settled_only_when_that_zone_is_named_lost():
    verdict = check(lost_zone_a(), driver=DRIVER)
    assert settled(verdict, 1, lost_zone="a") == (True, "0 placed, 1 waiting")
    assert not settled(verdict, 1)[0]


def test_a_pod_still_running_in_the_lost_zone_is_not_settled():
    done, state = settled(check(good(), driver=DRIVER), 1, lost_zone="a")
    assert not done and "not yet waiting for a" in state


def test_a_violation_is_never_settled():
    snap = good()
    snap.disks["d-0"]["Attachments"]["Attachment"].append({"InstanceId": "i-b0"})
    done, state = settled(check(snap, driver=DRIVER), 1)
    assert not done and "attached to i-b0" in state


def test_a_waiting_pod_is_not_settled_while_its_volume_attachment_says_attached():
    snap = lost_zone_a()
    snap.volume_attachments = [good().volume_attachments[0]]  # still attached to the dead node a-0
    done, state = settled(check(snap, driver=DRIVER), 1, lost_zone="a")
    assert not done and "attaches PV pv-0 to a-0" in state


# ---------------------------------------------------------------- no check passes on nothing
def test_a_verdict_over_no_pod_is_not_ok():
    snap = good()
    snap.pods = []
    verdict = check(snap, driver=DRIVER)
    assert not verdict.ok
    assert verdict.violations == ["no pod with a zonal volume of the driver was judged"]


def test_a_pod_whose_claim_of_the_driver_is_unbound_is_judged_pending():
    snap = good()
    snap.pvcs[("ns", "disk-ssd-web-0")]["spec"] = {"storageClassName": "csi-disk"}
    snap.storage_classes = {"csi-disk": DRIVER}
    snap.pods[0]["spec"]["nodeName"] = None
    snap.pods[0]["status"] = {"phase": "Pending"}
    verdict = check(snap, driver=DRIVER)
    assert [(p.pod, p.state) for p in verdict.pods] == [("web-0", "pending")]
    assert settled(verdict, 1) == (False, "web-0 Pending on no node, attached to nothing")


def test_a_pv_of_another_driver_behind_a_claim_of_the_driver_is_a_violation():
    def change(s):
        s.pvcs[("ns", "disk-ssd-web-0")]["spec"]["storageClassName"] = "csi-disk"
        s.storage_classes = {"csi-disk": DRIVER}
        s.pvs["pv-0"]["spec"]["csi"]["driver"] = "impostor.csi.example.com"
    violations = mutated(change)
    assert any("impostor.csi.example.com" in v for v in violations), violations


@pytest.mark.parametrize("key", [labels.ZONE, labels.ZONE_DEPRECATED, labels.DISK_ZONE])
def test_an_empty_node_zone_label_is_a_violation(key):
    def change(s):
        s.nodes["a-0"]["metadata"]["labels"][key] = ""
    assert any("zone labels disagree or are missing" in v for v in mutated(change))


def test_an_empty_pv_zone_label_is_a_violation():
    def change(s):
        s.pvs["pv-0"]["metadata"]["labels"][labels.ZONE] = ""
    assert any("empty" in v for v in mutated(change))


def test_a_volume_attachment_for_a_pod_without_a_node_is_a_violation():
    def change(s):
        s.pods[0]["spec"]["nodeName"] = None
        s.pods[0]["status"] = {"phase": "Pending"}
        s.disks["d-0"]["Attachments"]["Attachment"] = []  # the cloud let go; Kubernetes still says attached
    violations = mutated(change)
    assert any("VolumeAttachment csi-1" in v and "(none)" in v for v in violations), violations


def test_a_claim_provisioned_for_a_node_of_another_zone_is_a_lasting_violation():
    def change(s):
        s.pvcs[("ns", "disk-ssd-web-0")]["metadata"]["annotations"] = {SELECTED_NODE: "b-0"}
    snap = copy.deepcopy(good())
    change(snap)
    verdict = check(snap, driver=DRIVER)
    assert [p.lasting for p in verdict.pods] == [
        ["claim disk-ssd-web-0 was provisioned for node b-0 in b, but its disk d-0 is in a"]]
    with pytest.raises(LastingViolation, match="cannot heal"):
        settled(verdict, 1)
    snap.pvcs[("ns", "disk-ssd-web-0")]["metadata"]["annotations"] = {SELECTED_NODE: "a-0"}
    assert settled(check(snap, driver=DRIVER), 1)[0]


def test_a_selected_node_made_again_after_the_pv_says_nothing_of_where_the_claim_was_provisioned():
    """The claim was provisioned for a-0 in a; a-0 has since been made again as a machine
    in b. Its node now is not where the claim was provisioned for."""
    snap = copy.deepcopy(good())
    snap.pvcs[("ns", "disk-ssd-web-0")]["metadata"]["annotations"] = {SELECTED_NODE: "b-0"}
    snap.pvs["pv-0"]["metadata"]["creationTimestamp"] = "2026-12-05T10:00:00Z"
    snap.nodes["b-0"]["metadata"]["creationTimestamp"] = "2026-12-05T10:05:00Z"
    assert check(snap, driver=DRIVER).ok
    snap.nodes["b-0"]["metadata"]["creationTimestamp"] = "2026-12-05T09:55:00Z"  # there when the PV was made
    assert not check(snap, driver=DRIVER).ok


@pytest.mark.parametrize(("what", "change", "lasting"), [
    ("PV zone != disk zone", lambda s: s.disks["d-0"].update(ZoneId="b"), True),
    ("node zone keys disagree", lambda s: s.nodes["a-0"]["metadata"]["labels"].update({labels.DISK_ZONE: "b"}),
     True),
    ("node zone key missing", lambda s: s.nodes["a-0"]["metadata"]["labels"].pop(labels.DISK_ZONE), False),
    ("disk attached elsewhere", lambda s: s.disks["d-0"]["Attachments"]["Attachment"].append({"InstanceId": "i-b0"}),
     False),
    ("disk gone from the cloud", lambda s: s.disks.pop("d-0"), True),
    ("disk gone, its claim being deleted", lambda s: (s.disks.pop("d-0"), s.pvcs[("ns", "disk-ssd-web-0")][
        "metadata"].update(deletionTimestamp="2026-12-06T07:00:00Z")), False),
    ("disk gone, its pod being deleted", lambda s: (s.disks.pop("d-0"), s.pods[0]["metadata"].update(
        deletionTimestamp="2026-12-06T07:00:00Z")), False),
])
def test_waits_fail_at_once_only_on_what_cannot_heal(what, change, lasting):
    snap = copy.deepcopy(good())
    change(snap)
    verdict = check(snap, driver=DRIVER)
    assert not verdict.ok, what
    if lasting:
        with pytest.raises(LastingViolation):
            settled(verdict, 1)
    else:
        assert settled(verdict, 1)[0] is False, what


def test_a_node_zone_written_empty_fails_waits_at_once_even_for_pods_not_on_it():
    snap = copy.deepcopy(good())
    snap.nodes["b-0"]["metadata"]["labels"][labels.DISK_ZONE] = ""  # web-0 runs on a-0
    verdict = check(snap, driver=DRIVER)
    assert not verdict.ok
    assert verdict.violations[0].startswith(f"node b-0 states an empty zone under {labels.DISK_ZONE}")
    with pytest.raises(LastingViolation, match="node b-0 states an empty zone"):
        settled(verdict, 1)
