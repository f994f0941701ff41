"""Zone choice under both driver policies, and StorageClass parameter checking."""

import pytest

from zoneproof import labels
from zoneproof.csi.params import DEFAULT_TYPES, ParameterError, parse
from zoneproof.csi.zones import NoZoneError, ZoneChooser


def seg(zone, key=labels.DISK_ZONE):
    return {key: zone}


def test_topology_prefers_preferred_then_requisite():
    chooser = ZoneChooser("topology")
    assert chooser.choose((), [seg("b")], [seg("a"), seg("b")]).zone == "b"
    assert chooser.choose((), [], [seg("c")]).zone == "c"


def test_topology_reads_the_standard_zone_key_too():
    assert ZoneChooser("topology").choose((), [], [seg("a", labels.ZONE)]).zone == "a"


def test_topology_intersects_with_zone_ids():
    chooser = ZoneChooser("topology")
    assert chooser.choose(("c", "b"), [seg("a"), seg("b")], [seg("a"), seg("b"), seg("c")]).zone == "b"


def test_topology_conflict_falls_back_to_zone_ids_and_says_so():
    choice = ZoneChooser("topology").choose(("c",), [], [seg("a")])
    assert (choice.zone, choice.conflict) == ("c", True)


def test_no_zone_at_all_uses_the_controller_zone_or_fails():
    assert ZoneChooser("topology", controller_zone="x").choose((), [], []).zone == "x"
    with pytest.raises(NoZoneError, match="no zone"):
        ZoneChooser("topology").choose((), [], [])


def test_round_robin_ignores_topology_and_rotates():
    chooser = ZoneChooser("round-robin")
    picks = [chooser.choose(("a", "b", "c"), [seg("a")], [seg("a")]).zone for _ in range(6)]
    assert picks == ["a", "b", "c", "a", "b", "c"]
    # Another zoneId list has its own position.
    assert chooser.choose(("b", "c"), [], []).zone == "b"


def test_round_robin_without_zone_ids_follows_topology():
    assert ZoneChooser("round-robin").choose((), [], [seg("b")]).zone == "b"


def test_unknown_policy_is_named():
    with pytest.raises(ValueError, match="'random'"):
        ZoneChooser("random")


def test_parameters_defaults_and_lists():
    p = parse({})
    assert p.types == DEFAULT_TYPES and p.zone_ids == ()
    p = parse({"type": "cloud_essd,cloud_ssd", "zoneId": "a, b", "performanceLevel": "PL2", "encrypted": "true",
               "csi.storage.k8s.io/pvc/name": "x"})
    assert (p.types, p.zone_ids, p.performance_level, p.encrypted) == (("cloud_essd", "cloud_ssd"), ("a", "b"),
                                                                      "PL2", True)
    assert parse({"zoneid": "c"}).zone_ids == ("c",)


@pytest.mark.parametrize(("params", "message"), [
    ({"type": "cloud_floppy"}, "unknown disk type cloud_floppy"),
    ({"performanceLevel": "PL7"}, "performanceLevel 'PL7'"),
    ({"zoneID": "a"}, "unknown StorageClass parameter\\(s\\) zoneID"),
    ({"zoneId": "a,a"}, "lists a zone twice"),
])
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ParameterError, match=message):
        parse(params)
