"""Zone choice under both driver policies (and the zone-choice bugs of the catalogue), and
StorageClass parameter checking."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from zoneproof import labels
from zoneproof.csi.params import DEFAULT_TYPES, ParameterError, parse
from zoneproof.csi.zones import ConflictingZoneError, NoZoneError, ZoneChooser


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


def test_a_topology_sharing_no_zone_with_zone_ids_chooses_none():
    with pytest.raises(ConflictingZoneError, match="allows a, the StorageClass's zoneId c"):
        ZoneChooser("topology").choose(("c",), [], [seg("a")])


def test_conflicting_zone_fallback_bug_uses_zone_ids_and_says_so():
    choice = ZoneChooser("topology", bugs=("conflicting-zone-fallback",)).choose(("c",), [], [seg("a")])
    assert (choice.zone, choice.conflict) == ("c", True)


def test_own_zone_bug_ignores_topology_and_zone_ids():
    chooser = ZoneChooser("topology", controller_zone="x", bugs=("own-zone",))
    assert chooser.choose(("a", "b"), [seg("b")], [seg("b")]).zone == "x"


def test_zoneid_overrides_topology_bug_takes_the_first_zone_id():
    chooser = ZoneChooser("topology", bugs=("zoneid-overrides-topology",))
    assert chooser.choose(("a", "b", "c"), [seg("c")], [seg("c")]).zone == "a"
    assert ZoneChooser("topology").choose(("a", "b", "c"), [seg("c")], [seg("c")]).zone == "c"


def concurrent_choices(chooser: ZoneChooser, count: int) -> list[str]:
    """``count`` choices whose cloud lookups all overlap (each waits for the others)."""
    barrier = threading.Barrier(count, timeout=10)
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: chooser.choose(("a", "b", "c"), [], [], barrier.wait).zone, range(count)))


def test_round_robin_takes_turns_under_concurrency_and_the_unlocked_bug_does_not():
    assert sorted(concurrent_choices(ZoneChooser("round-robin"), 3)) == ["a", "b", "c"]
    assert concurrent_choices(ZoneChooser("round-robin", bugs=("round-robin-unlocked",)), 3) == ["a", "a", "a"]


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
