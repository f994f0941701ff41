"""The watcher's history analysis catches violations that came and went."""

from zoneproof import labels
from zoneproof.watcher import Change, History, transient_violations

NODES = {"a-0": "a", "b-0": "b"}


def pv(name, zone):
    return {"metadata": {"name": name}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": labels.DISK_ZONE, "operator": "In", "values": [zone]}]}]}}}}


def pod(node, phase="Running"):
    return {"metadata": {"name": "web-0"}, "spec": {"nodeName": node, "volumes": [
        {"name": "disk-ssd", "persistentVolumeClaim": {"claimName": "disk-ssd-web-0"}}]}, "status": {"phase": phase}}


def history(*pod_versions, audit=()):
    changes = [Change(1, "PersistentVolume", "ADDED", pv("pv-0", "a")),
               Change(2, "PersistentVolumeClaim", "ADDED", {"metadata": {"name": "disk-ssd-web-0"},
                                                            "spec": {"volumeName": "pv-0"}})]
    changes += [Change(3 + i, "Pod", "MODIFIED", p) for i, p in enumerate(pod_versions)]
    return History(changes=changes, audit=list(audit))


def test_a_clean_history_has_no_violation():
    assert transient_violations(history(pod("a-0", "Pending"), pod("a-0")), NODES) == []


def test_a_pod_running_for_a_moment_in_the_wrong_zone_is_caught():
    found = transient_violations(history(pod("b-0"), pod("a-0")), NODES)
    assert found == ["pod web-0 Running on b-0 (b) while its claim disk-ssd-web-0 is bound to a volume in a"]


def test_a_node_is_judged_by_its_zone_at_that_moment_when_nodes_were_watched():
    """b-0 was made again as a machine in zone a during the test, and is back in b at its
    end: web-0 ran there, in a, beside its volume in a."""
    def node(zone, at):
        return Change(at, "Node", "ADDED", {"metadata": {"name": "b-0", "labels": {labels.ZONE: zone}}})
    watched = history(pod("b-0"))
    watched.changes += [node("a", 2.5), node("b", 9)]
    assert transient_violations(watched, NODES) == []
    watched.changes.append(node("b", 2.7))  # in b when web-0 ran there
    assert transient_violations(watched, NODES) == [
        "pod web-0 Running on b-0 (b) while its claim disk-ssd-web-0 is bound to a volume in a"]


def test_a_refused_cross_zone_attach_attempt_is_caught():
    attempt = {"action": "AttachDisk", "disk_id": "d-1", "disk_zone": "a", "instance_id": "i-b", "instance_zone": "b",
               "code": "ResourcesNotInSameZone"}
    found = transient_violations(history(pod("a-0"), audit=[attempt]), NODES)
    assert found and "cross-zone attach attempt: disk d-1 (a) to i-b (b)" in found[0]


def test_a_history_must_show_the_kinds_a_test_makes():
    assert history(pod("a-0")).problems() == []
    assert History().problems() == ["the watcher saw no Pod change"]
    claims_only = History(changes=[Change(1, "PersistentVolumeClaim", "ADDED", {"metadata": {"name": "c"}})])
    assert claims_only.problems(("PersistentVolumeClaim",)) == []
    assert History(broken=["Pod broke: ProtocolError()"], gaps=["Pod after resourceVersion 7"]).problems(()) == [
        "watch of Pod broke: ProtocolError()", "changes may be lost: Pod after resourceVersion 7"]
    # Events only explain: their loss is kept apart, and the history still vouches.
    explained = History(changes=history(pod("a-0")).changes, commentary_gaps=["Event after resourceVersion 9"])
    assert explained.problems() == []
