"""A wait's time-out names what stands in the way, from the watch history: the scheduler's
word on a pod, the provisioner's refusal of a claim with the driver's gRPC code, an attach
error of the namespace's VolumeAttachment; nothing for what is fine or not the test's."""

from zoneproof.obstacles import obstacles
from zoneproof.watcher import Change

NS = "zp-test"


def change(at, kind, obj, type_="ADDED"):
    return Change(at, kind, type_, obj)


def pod(name, phase, node=None, deleting=False):
    meta = {"name": name, "namespace": NS}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-05T00:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}, "status": {"phase": phase}}


def event(name, kind, involved, reason, message, type_="Warning"):
    return {"metadata": {"name": name, "namespace": NS}, "type": type_, "reason": reason, "message": message,
            "involvedObject": {"kind": kind, "name": involved}}


def pv(name, claim, namespace=NS):
    return {"metadata": {"name": name}, "spec": {"claimRef": {"namespace": namespace, "name": claim}}}


def attachment(name, pv_name, node, status):
    return {"metadata": {"name": name}, "spec": {"nodeName": node, "source": {"persistentVolumeName": pv_name}},
            "status": status}


def test_each_obstacle_is_named_with_the_last_word_on_it():
    history = [
        change(1, "Pod", pod("web-0", "Pending")),
        change(2, "Event", event("e1", "Pod", "web-0", "FailedScheduling", "0/6 nodes are available: old")),
        change(3, "Event", event("e2", "Pod", "web-0", "FailedScheduling", "0/6 nodes are available: 3 node(s) "
                                 "had volume node affinity conflict")),
        change(4, "Pod", pod("web-1", "Running", "n1")),
        change(5, "Pod", pod("web-2", "Pending", "n2")),
        change(6, "PersistentVolumeClaim", {"metadata": {"name": "data-web-0"}, "status": {"phase": "Pending"}}),
        change(7, "Event", event("e3", "PersistentVolumeClaim", "data-web-0", "ProvisioningFailed",
                                 "failed to provision volume: rpc error: code = Internal desc = NoStock")),
        change(8, "Event", event("e4", "PersistentVolumeClaim", "data-web-0", "ExternalProvisioning",
                                 "waiting for a volume", type_="Normal")),
        change(9, "PersistentVolumeClaim", {"metadata": {"name": "data-web-2"}, "status": {"phase": "Bound"}}),
        change(10, "PersistentVolume", pv("pv-2", "data-web-2")),
        change(11, "PersistentVolume", pv("pv-other", "data-web-0", namespace="someone-else")),
        change(12, "VolumeAttachment", attachment("csi-a", "pv-2", "n2",
                                                  {"attached": False, "attachError": {"message": "InvalidInstance"}})),
        change(13, "VolumeAttachment", attachment("csi-b", "pv-other", "n9",
                                                  {"attached": False, "attachError": {"message": "not ours"}})),
        change(14, "Pod", pod("web-3", "Pending", "n3", deleting=True)),
    ]
    assert obstacles(history, NS) == [
        "pod web-0 Pending unscheduled: FailedScheduling: 0/6 nodes are available: 3 node(s) had volume node "
        "affinity conflict",
        "pod web-2 Pending on n2: no warning event",
        "claim data-web-0 Pending: ProvisioningFailed: failed to provision volume: rpc error: code = Internal "
        "desc = NoStock",
        "VolumeAttachment csi-a (claim data-web-2, node n2) attach error: InvalidInstance",
    ]


def test_what_was_deleted_or_came_right_is_no_obstacle():
    history = [
        change(1, "Pod", pod("web-0", "Pending")),
        change(2, "Event", event("e1", "Pod", "web-0", "FailedScheduling", "no nodes")),
        change(3, "Pod", pod("web-0", "Running", "n1"), "MODIFIED"),
        change(4, "Pod", pod("web-1", "Pending")),
        change(5, "Pod", pod("web-1", "Pending"), "DELETED"),
        change(6, "PersistentVolume", pv("pv-0", "data-web-0")),
        change(7, "VolumeAttachment", attachment("csi-a", "pv-0", "n1", {"attached": False,
                                                                         "attachError": {"message": "busy"}})),
        change(8, "VolumeAttachment", attachment("csi-a", "pv-0", "n1", {"attached": True}), "MODIFIED"),
    ]
    assert obstacles(history, NS) == []


def test_an_attachment_being_detached_without_an_error_is_named_so():
    detaching = attachment("csi-a", "pv-0", "n1", {"attached": True})
    detaching["metadata"]["deletionTimestamp"] = "2026-12-05T00:00:00Z"
    history = [change(1, "PersistentVolume", pv("pv-0", "data-web-0")), change(2, "VolumeAttachment", detaching)]
    assert obstacles(history, NS) == [
        "VolumeAttachment csi-a (claim data-web-0, node n1) being detached, no detach error yet (attached: True)"]
