"""The generic deployment path runs whatever a profile says: here the shipped alibaba
profile, with the reference driver's own command put in place of the plugin binary, so its
stand-in nodes (the registrar reporting what the plugin's node side would) and its four
topology keys are exercised without the upstream binary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from zoneproof import labels
from zoneproof.deploy.driver import LEFTOVERS_FILE
from zoneproof.fixtures.driver import provide_driver
from zoneproof.profile import PROFILES, parse_profile
from zoneproof.suites.conftest import PlacementEnv
from zoneproof.waiting import wait_for
from zoneproof.workloads import claim, pod_with_claims

pytestmark = pytest.mark.cluster

REFERENCE_CONTROLLER = ["{python}", "-m", "zoneproof.cli", "csi", "serve", "--endpoint", "{endpoint}",
                        "--ecs-endpoint", "{ecs_endpoint}", "--region", "{region}", "--zone-policy", "topology",
                        "--controller-zone", "{controller_zone}"]


@pytest.fixture(scope="module")
def profile():
    data = yaml.safe_load(PROFILES.joinpath("alibaba.yaml").read_text())
    data["run"]["binary"] = "none"
    data["run"]["controller"]["command"] = REFERENCE_CONTROLLER
    data["run"].pop("node_plugin")  # built from the plugin's binary, for kind; this cluster is local
    return parse_profile(data, "alibaba profile running the reference controller")


@pytest.fixture(scope="module")
def driver(cluster, profile, tmp_path_factory):
    # The last zone sells no cloud_essd: its stand-in nodes must say so in their labels.
    yield from provide_driver(cluster, profile, logs=tmp_path_factory.mktemp("logs"),
                              zone_categories={cluster.spec.zones[-1]: ("cloud_ssd", "cloud_efficiency")})


def test_stand_in_nodes_report_the_profiles_keys_and_disk_types(cluster, driver, profile):
    last = cluster.spec.zones[-1]
    for name in cluster.nodes():
        node = cluster.core.read_node(name)
        entry = next(d for d in client.StorageV1Api(cluster.api_client).read_csi_node(name).spec.drivers
                     if d.name == profile.driver)
        assert sorted(entry.topology_keys) == sorted(profile.topology_keys)
        assert entry.node_id == node.metadata.labels[labels.INSTANCE_ID]
        assert entry.allocatable.count == 15
        types = sorted(k.rsplit(".", 1)[-1] for k in node.metadata.labels
                       if k.startswith("node.csi.alibabacloud.com/disktype."))
        zone = node.metadata.labels[labels.ZONE]
        expected = ["cloud_efficiency", "cloud_ssd"] if zone == last else None
        assert types == expected or (expected is None and "cloud_essd" in types), (name, types)


def test_a_claim_provisions_in_its_consumers_zone_through_the_generic_path(cluster, driver, profile, namespace):
    zone = cluster.spec.zones[1]
    name = f"{namespace}-wffc"
    client.StorageV1Api(cluster.api_client).create_storage_class(
        profile.storage_class("wait-for-first-consumer", name, cluster.spec.zones))
    try:
        cluster.core.create_namespaced_persistent_volume_claim(namespace, claim("data", name, profile.size))
        cluster.core.create_namespaced_pod(namespace, pod_with_claims("app", ["data"], {labels.ZONE: zone}))

        def bound():
            pvc = cluster.core.read_namespaced_persistent_volume_claim("data", namespace)
            return pvc.status.phase == "Bound", pvc.status.phase
        wait_for(bound, what="the claim to bind", timeout=60)
        volume = cluster.core.read_namespaced_persistent_volume_claim("data", namespace).spec.volume_name
        handle = cluster.core.read_persistent_volume(volume).spec.csi.volume_handle
        assert [d["ZoneId"] for d in driver.cloud().describe_disks([handle])] == [zone]
    finally:
        cluster.core.delete_collection_namespaced_pod(namespace)
        cluster.core.delete_collection_namespaced_persistent_volume_claim(namespace)
        client.StorageV1Api(cluster.api_client).delete_storage_class(name)


def test_static_disks_are_created_on_the_fake_ecs_though_the_profile_allows_none(cluster, driver, profile,
                                                                                  namespace):
    """``static_disks.allowed: false`` guards a real account; on the fake ECS this
    deployment started a disk costs nothing, so the static schemes run for every profile,
    each disk in the first of the profile's categories its zone sells."""
    assert not profile.static_disks.allowed
    env = PlacementEnv(cluster, namespace, driver, profile, user_disks={})
    try:
        try:
            made = {zone: env.static_disk(zone, f"{namespace}-static") for zone in cluster.spec.zones}
        except pytest.skip.Exception as skipped:  # what the suites did before: a skip for want of disks
            pytest.fail(f"the static case would be skipped on the fake ECS: {skipped}")
        found = {d["DiskId"]: (d["ZoneId"], d["Category"]) for d in driver.cloud().describe_disks(list(made.values()))}
        last = cluster.spec.zones[-1]
        assert found == {disk: (zone, "cloud_ssd" if zone == last else "cloud_essd") for zone, disk in made.items()}
        assert env.created_disks == list(made.values())  # deleted after the test, as the suites' own
    finally:
        for disk_id in env.created_disks:
            driver.cloud().api.call("DeleteDisk", DiskId=disk_id)


def test_down_stops_every_process_it_started_and_keeps_the_logs(driver):
    """Last in this module: it takes the deployment down itself (the fixture's own down()
    then finds nothing left to do)."""
    pids = [pid for pid, _ in driver.running().processes.values()]
    assert len(pids) == 4, driver.running().processes  # fake ECS, controller, provisioner, attacher
    cloud = driver.cloud()
    forgotten = cloud.api.call("CreateDisk", RegionId=cloud.region, ZoneId=driver.provider.spec.zones[0],
                               DiskCategory="cloud_ssd", Size=20, DiskName="forgotten")["DiskId"]
    driver.down()
    # What the fake ECS still held as it went is recorded beside the logs, for e2e to report.
    # (The tests before may leave disks that are still being deleted: only this one is known.)
    recorded = [json.loads(line) for line in (driver.logs / LEFTOVERS_FILE).read_text().splitlines()]
    assert len(recorded) == 1, recorded
    assert f"{forgotten} ({driver.provider.spec.zones[0]}, Available)" in recorded[0]["disks"], recorded
    assert not driver.is_up() and driver.running() is None
    left = {pid: Path(f"/proc/{pid}/stat").read_text(errors="replace")[:80] for pid in pids
            if Path(f"/proc/{pid}").exists()}
    assert not left, left
    assert {"fake-ecs.log", "csi-controller.log", "csi-provisioner.log", "csi-attacher.log"} <= {
        p.name for p in driver.logs.iterdir()}


def test_a_node_command_without_each_node_runs_a_process_per_node(cluster, tmp_path):
    """Last: it makes a deployment of its own. A driver whose node binary serves one node
    gets a process per node, each registered from its own NodeGetInfo."""
    data = yaml.safe_load(PROFILES.joinpath("reference.yaml").read_text())
    node = data["run"]["node"]
    node["command"] = ["{python}", "-m", "zoneproof.cli", "csi", "serve", "--endpoint", "{endpoint}",
                       "--ecs-endpoint", "{ecs_endpoint}", "--region", "{region}", "--node-id", "{instance_id}",
                       "--node-zone", "{zone}"]
    del node["each_node"]
    for deployment in provide_driver(cluster, parse_profile(data, "reference, a process per node"), logs=tmp_path):
        processes = deployment.running().processes
        assert {f"csi-node-{name}" for name in cluster.nodes()} <= set(processes), sorted(processes)
        for name in cluster.nodes():
            entry = next(d for d in client.StorageV1Api(cluster.api_client).read_csi_node(name).spec.drivers
                         if d.name == deployment.profile.driver)
            assert entry.node_id == cluster.core.read_node(name).metadata.labels[labels.INSTANCE_ID]

