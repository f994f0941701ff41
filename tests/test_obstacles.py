"""A wait's time-out names what stands in the way, from the watch history: the scheduler's
word on a pod, the provisioner's refusal of a claim with the driver's gRPC code, an attach
error of the namespace's VolumeAttachment; nothing for what is fine or not the test's."""

import pytest

from zoneproof.obstacles import allowed_zones, final_refusals, lasting_refusals, obstacles
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


# ------------------------------------------------- refusals that cannot heal
DRIVER = "disk.example.com"
ZONES = {"n-a": "zone-a", "n-b": "zone-b", "n-c": "zone-c"}
REFUSED = "failed to provision volume with StorageClass: rpc error: code = InvalidArgument desc = one zone only"


def claim(name, storage_class, phase="Pending", selected=None):
    meta = {"name": name, "namespace": NS}
    if selected:
        meta["annotations"] = {"volume.kubernetes.io/selected-node": selected}
    return {"metadata": meta, "spec": {"storageClassName": storage_class}, "status": {"phase": phase}}


def storage_class(name, zone_ids=None, allowed=None, provisioner=DRIVER):
    body = {"metadata": {"name": name}, "provisioner": provisioner, "parameters": {"type": "ssd"}}
    if zone_ids:
        body["parameters"]["zoneId"] = zone_ids
    if allowed:
        body["allowedTopologies"] = [{"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone",
                                                                 "values": allowed}]}]
    return body


def refusals(history, classes):
    return lasting_refusals(final_refusals(history, NS), {c["metadata"]["name"]: c for c in classes}, ZONES,
                            ("topology.kubernetes.io/zone",), ("zoneId",), DRIVER)


def refused(at, claim_name, message=REFUSED):
    return change(at, "Event", event(f"e-{claim_name}-{at}", "PersistentVolumeClaim", claim_name,
                                     "ProvisioningFailed", message))


@pytest.mark.parametrize("message", [
    REFUSED,
    # The claim's name taken by a disk made for it in another zone (a lost answer's, before the
    # claim went to another node): the driver answers so for as long as that disk exists.
    "failed to provision volume with StorageClass: rpc error: code = AlreadyExists desc = pvc-1 exists in zone-c",
], ids=["invalid-argument", "already-exists"])
def test_a_claim_refused_for_a_zone_its_class_allows_with_a_final_code_cannot_heal(message):
    history = [change(1, "PersistentVolumeClaim", claim("now", "every-zone")), refused(2, "now", message),
               change(3, "PersistentVolumeClaim", claim("later", "wffc", selected="n-b")), refused(4, "later", message)]
    found = refusals(history, [storage_class("every-zone", zone_ids="zone-a,zone-c"), storage_class("wffc")])
    assert found == [
        "claim later of StorageClass wffc is refused for node n-b in zone-b, a zone its class allows, and "
        f"csi-provisioner repeats the request unchanged: ProvisioningFailed: {message}",
        "claim now of StorageClass every-zone is refused although its class allows zone-a, zone-c, and "
        f"csi-provisioner repeats the request unchanged: ProvisioningFailed: {message}"]


def test_a_refusal_that_is_due_or_may_heal_is_no_violation():
    history = [
        # The consumer's zone is one the class leaves out, by zoneId or by allowedTopologies.
        change(1, "PersistentVolumeClaim", claim("outside-zoneid", "a-only", selected="n-b")),
        refused(2, "outside-zoneid"),
        change(3, "PersistentVolumeClaim", claim("outside-allowed", "c-allowed", selected="n-b")),
        refused(4, "outside-allowed"),
        # A selected node gone: the claim goes back to the scheduler.
        change(5, "PersistentVolumeClaim", claim("node-gone", "wffc", selected="n-gone")), refused(6, "node-gone"),
        # A refusal that may heal (no stock), and one that a later success replaced.
        change(7, "PersistentVolumeClaim", claim("no-stock", "wffc", selected="n-a")),
        refused(8, "no-stock", "rpc error: code = ResourceExhausted desc = no stock"),
        change(9, "PersistentVolumeClaim", claim("bound", "wffc", selected="n-a")), refused(10, "bound"),
        change(11, "PersistentVolumeClaim", claim("bound", "wffc", phase="Bound", selected="n-a")),
        # Another driver's claim.
        change(12, "PersistentVolumeClaim", claim("theirs", "other")), refused(13, "theirs"),
    ]
    classes = [storage_class("a-only", zone_ids="zone-a"), storage_class("c-allowed", allowed=["zone-c"]),
               storage_class("wffc"), storage_class("other", provisioner="other.example.com")]
    assert final_refusals(history, NS).keys() == {"outside-zoneid", "outside-allowed", "node-gone", "theirs"}
    assert refusals(history, classes) == []


def test_allowed_zones_reads_every_term_and_only_zone_keys():
    sc = {"allowedTopologies": [
        {"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": ["zone-a", "zone-b"]},
                                   {"key": "my.driver/zone", "values": ["zone-b"]}]},
        {"matchLabelExpressions": [{"key": "my.driver/zone", "values": ["zone-c", "zone-d"]}]}],
        "parameters": {"zoneId": "zone-a, zone-c,zone-d"}}
    keys = ("topology.kubernetes.io/zone", "my.driver/zone")
    assert allowed_zones(sc, ZONES.values(), keys, ()) == {"zone-b", "zone-c"}
    assert allowed_zones(sc, ZONES.values(), keys, ("zoneId",)) == {"zone-c"}
    sc["allowedTopologies"].append({"matchLabelExpressions": [{"key": "topology.kubernetes.io/region",
                                                               "values": ["r1"]}]})  # any zone of r1
    assert allowed_zones(sc, ZONES.values(), keys, ()) == set(ZONES.values())
    assert allowed_zones({}, ZONES.values(), (), ("zoneId",)) == set(ZONES.values())
