"""Option validation happens before anything starts and names what is wrong."""

import pytest

from zoneproof.cluster.spec import ClusterSpec, SpecError, Timings, parse_zones


def test_defaults_are_the_articles_cluster():
    spec = ClusterSpec().validate()
    assert spec.zones == ("cn-beijing-a", "cn-beijing-b", "cn-beijing-c")
    assert spec.region == "cn-beijing"
    assert spec.nodes_per_zone == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"zones": ()}, "no zones given"),
        ({"zones": ("cn-beijing-a", "cn-beijing-a")}, "'cn-beijing-a' is listed twice"),
        ({"zones": ("cn-beijing-a", "")}, "empty zone name"),
        ({"zones": ("Zone_A",)}, "zone 'Zone_A' must be a lowercase DNS label"),
        ({"zones": ("z" * 41,)}, "at most 40 characters"),
        ({"nodes_per_zone": 0}, "nodes per zone must be at least 1, got 0"),
        ({"nodes_per_zone": -3}, "nodes per zone must be at least 1, got -3"),
        ({"nodes_per_zone": 101}, "at most 100"),
        ({"region": "CN Beijing"}, "region 'CN Beijing'"),
        ({"name": "My.Cluster"}, "cluster name 'My.Cluster'"),
    ],
)
def test_bad_options_name_the_problem(kwargs, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        ClusterSpec(**kwargs).validate()


@pytest.mark.parametrize(
    ("timings", "message"),
    [
        (Timings(node_monitor_grace_period=0), "node_monitor_grace_period must be positive"),
        (Timings(heartbeat_factor=-1), "heartbeat_factor must be positive"),
        (Timings(not_ready_toleration=-1), "not_ready_toleration must not be negative"),
        (Timings(node_monitor_grace_period=2, node_lease_duration=10), "must exceed the lease renew interval"),
        (Timings(node_monitor_grace_period=3, node_status_update_frequency=5), "must exceed node_status_update"),
    ],
)
def test_bad_timings_name_the_problem(timings, message):
    with pytest.raises(SpecError, match=message):
        ClusterSpec(timings=timings).validate()


def test_zero_tolerations_are_allowed():
    ClusterSpec(timings=Timings(not_ready_toleration=0, unreachable_toleration=0)).validate()


def test_heartbeat_factor_scales_every_heartbeat_value():
    t = Timings(node_monitor_grace_period=10, node_monitor_period=2, node_lease_duration=8,
                node_status_update_frequency=4, heartbeat_factor=3)
    s = t.scaled()
    assert (s.node_monitor_grace_period, s.node_monitor_period, s.node_lease_duration,
            s.node_status_update_frequency, s.heartbeat_factor) == (30, 6, 24, 12, 1.0)
    assert s.not_ready_toleration == t.not_ready_toleration  # not a heartbeat
    assert t.not_ready_bound == 30 + 6 + 5


def test_spec_round_trips_through_its_saved_form():
    spec = ClusterSpec(name="x", zones=("a", "b"), nodes_per_zone=3, timings=Timings(heartbeat_factor=2.0))
    assert ClusterSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("text", "zones"),
    [("a,b,c", ("a", "b", "c")), (" a , b ", ("a", "b")), ("", ()), ("a,,b", ("a", "", "b"))],
)
def test_parse_zones(text, zones):
    assert parse_zones(text) == zones
