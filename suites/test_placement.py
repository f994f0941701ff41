"""Placement conformance of the article's schemes: every pod runs in its disk's zone, and
comes back to that zone when its pods are deleted (pod follows disk).

Matrix: scheme × zones (2, 3) × replicas (3, 6). Schemes: static PVs with zone labels or
with nodeAffinity; dynamic PVs with a ``zoneId`` list under both driver zone policies;
WaitForFirstConsumer (disk follows pod on first start, then pod follows disk).
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import allure
import pytest
from kubernetes import client

from zoneproof import manifests
from zoneproof.suites.capabilities import require_scheme
from zoneproof.suites.steps import deploy, wait_placed, wait_running
from zoneproof.workloads import claim, disks_created_for

# scheme -> driver zone policy it needs
SCHEMES = {
    "static-nodeaffinity": "topology",
    "static-zone-labels": "topology",
    "dynamic-zoneid-topology": "topology",
    "wait-for-first-consumer": "topology",
    "dynamic-zoneid-round-robin": "round-robin",  # marked zone_policy: a session runs it last
}
MATRIX = [pytest.param(scheme, zones, replicas, id=f"{scheme}-{zones}zones-{replicas}replicas",
                       marks=[pytest.mark.placement_matrix(scheme=scheme, zones=zones, replicas=replicas),
                              *([pytest.mark.serial, pytest.mark.zone_policy(SCHEMES[scheme])]
                                if SCHEMES[scheme] != "topology" else [])])
          for scheme, zones, replicas in itertools.product(SCHEMES, (2, 3), (3, 6))]


def pods_by_name(env) -> dict[str, client.V1Pod]:
    return {p.metadata.name: p for p in env.cluster.core.list_namespaced_pod(env.namespace).items}


@pytest.mark.parametrize(("scheme", "zone_count", "replicas"), MATRIX)
def test_pods_follow_their_disks(placement, cluster, profile, scheme, zone_count, replicas, seed):
    if zone_count > len(cluster.spec.zones):
        pytest.skip(f"needs {zone_count} zones; the cluster under test has {len(cluster.spec.zones)}")
    if not scheme.startswith("static-"):
        require_scheme(profile, "wait-for-first-consumer" if scheme == "wait-for-first-consumer" else "dynamic-zoneid")
    rng = random.Random(f"{seed}-{scheme}-{zone_count}-{replicas}")
    zones = sorted(rng.sample(list(cluster.spec.zones), zone_count))
    env = placement(SCHEMES[scheme])
    allure.dynamic.parameter("zones", ",".join(zones))
    expected = deploy(env, scheme, zones, replicas, rng)

    first = wait_running(env, replicas)
    verdict = wait_placed(env, replicas)
    env.check_data(replicas)
    outside = [f"{v.disk} in {v.disk_zone}" for p in verdict.pods for v in p.volumes if v.disk_zone not in zones]
    assert not outside, f"disks outside the zones the claims allowed ({', '.join(zones)}): {outside}"
    for ordinal, zone in expected.items():
        assert first[f"web-{ordinal}"] == zone, f"web-{ordinal} runs in {first[f'web-{ordinal}']}, its disk in {zone}"
    if scheme == "dynamic-zoneid-round-robin":
        counts = Counter(first.values())
        assert max(counts.values()) - min(counts.get(z, 0) for z in zones) <= 1, f"uneven spread {dict(counts)}"

    # Pod follows disk: after `kubectl delete pod --all`, every pod returns to its zone.
    old = {p.metadata.uid for p in pods_by_name(env).values()}
    env.cluster.core.delete_collection_namespaced_pod(env.namespace)
    again = wait_running(env, replicas, not_uids=old)
    wait_placed(env, replicas)
    env.check_data(replicas)  # each pod found its own disk again, with its data
    assert again == first, f"zones changed after the pods were deleted: {first} -> {again}"


@pytest.mark.serial
@pytest.mark.zone_policy("round-robin")
def test_claims_made_at_once_take_the_zoneid_zones_in_turn(placement, cluster, profile):
    """Round-robin over zoneId under concurrency: claims created at once (as a StatefulSet
    with Parallel pod management makes them) take the zones in turn, each zone as often."""
    require_scheme(profile, "dynamic-zoneid")
    env = placement("round-robin")
    env.watched_kinds = ("PersistentVolumeClaim", "PersistentVolume")  # claims only, no pod
    zones = list(cluster.spec.zones)
    sc = manifests.storage_class(profile, "dynamic-zoneid", zones, name=f"csi-disk-zoneid-{env.namespace}")
    client.StorageV1Api(cluster.api_client).create_storage_class(sc)
    env.storage_classes.append(sc["metadata"]["name"])
    per_zone = 2
    names = [f"data-{n}" for n in range(per_zone * len(zones))]

    def create(name: str) -> None:
        cluster.core.create_namespaced_persistent_volume_claim(
            env.namespace, claim(name, sc["metadata"]["name"], profile.size))
    # A region answering in half a second, as a loaded one does, makes the requests overlap
    # (a real cloud needs no help).
    slow = env.cloud.admin.add_fault("latency", action="DescribeZones", seconds=0.5) if env.cloud.admin else None
    try:
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(create, names))  # list(): an exception of any creation is raised here

        def bound():
            phases = {c.metadata.name: c.status.phase for c in
                      cluster.core.list_namespaced_persistent_volume_claim(env.namespace).items}
            return sorted(phases) == names and set(phases.values()) == {"Bound"}, phases
        env.wait_for(bound, what=f"{len(names)} claims bound", timeout=90)
    finally:
        if slow:
            env.cloud.admin.remove_fault(slow["id"])
    counts = Counter(d["ZoneId"] for d in disks_created_for(env.cloud, env.namespace))
    assert counts == {zone: per_zone for zone in zones}, \
        f"{len(names)} claims made at once over zoneId {','.join(zones)} took zones {dict(counts)}"
