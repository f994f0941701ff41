"""The bug catalogue: every switch changes the behaviour it names (and nothing without it),
each bug is refused where it cannot live, and every case a bug names exists in the suites.
Whether the suites catch the bugs is what `make mutants` proves, on a cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from zoneproof import bugs, labels
from zoneproof.cloud import CloudError
from zoneproof.cluster import ClusterSpec, LocalProvider, SpecError
from zoneproof.cluster.local import kwokctl_config, scheduler_configuration
from zoneproof.ecsapi import EcsApi, EcsSettings
from zoneproof.csi.controller import FOREIGN_ZONE_KEY
from zoneproof.deploy.driver import DriverDeployment, DriverError
from zoneproof.csi.proto import load
from zoneproof.csi.server import build_server
from zoneproof.ecs.backend import EcsConfig
from zoneproof.ecs.catalog import INSTANCE_TYPE
from zoneproof.ecs.server import DEFAULT_CREDENTIALS, EcsServer
from zoneproof.mutants import BugRun, CaseResult, kill_table, report, results_of
from zoneproof.profile import load_profile

csi, csi_grpc = load()
REGION = "cn-beijing"
ZONES = ("cn-beijing-a", "cn-beijing-b", "cn-beijing-c")
INSTANCES = {"i-nodea1": ZONES[0], "i-nodea2": ZONES[0], "i-nodeb1": ZONES[1]}
SUITES = Path(bugs.__file__).parent / "suites"
WRITER = csi.VolumeCapability(mount=csi.VolumeCapability.MountVolume(), access_mode=csi.VolumeCapability.AccessMode(
    mode=csi.VolumeCapability.AccessMode.SINGLE_NODE_WRITER))


def ecs_server(cloud_bugs: tuple[str, ...] = ()) -> EcsServer:
    server = EcsServer(EcsConfig(region=REGION, zones={z: ("cloud_ssd",) for z in ZONES}, bugs=cloud_bugs))
    with server.store.transaction() as db:
        for instance_id, zone in INSTANCES.items():
            server.backend.register_instance(db, instance_id, zone)
    return server


def cloud_of(ecs: EcsServer) -> EcsApi:
    key_id, secret = next(iter(DEFAULT_CREDENTIALS.items()))
    return EcsApi(EcsSettings(ecs.endpoint, key_id, secret, REGION))


class Driver:
    """The reference driver's controller and the node service of ``i-nodeb1``, carrying
    ``bugs``, on a fake ECS, reached through gRPC as the sidecars reach it."""

    def __init__(self, ecs: EcsServer, socket: Path, driver_bugs: tuple[str, ...]):
        self.ecs, self.cloud = ecs, cloud_of(ecs)
        endpoint = f"unix://{socket}"
        self.server = build_server(endpoint, self.cloud, zone_policy="topology", controller_zone=ZONES[0],
                                   instance_id="i-nodeb1", zone=ZONES[1], bugs=driver_bugs)
        self.server.start()
        self.channel = grpc.insecure_channel(endpoint)
        self.controller = csi_grpc.ControllerStub(self.channel)
        self.node = csi_grpc.NodeStub(self.channel)

    def create(self, name: str, zone: str | None = None, key: str = labels.DISK_ZONE, **parameters) -> csi.Volume:
        requirement = csi.TopologyRequirement()
        if zone:
            segment = csi.Topology(segments={key: zone})
            requirement = csi.TopologyRequirement(requisite=[segment], preferred=[segment])
        return self.controller.CreateVolume(csi.CreateVolumeRequest(
            name=name, volume_capabilities=[WRITER], parameters={"type": "cloud_ssd", **parameters},
            accessibility_requirements=requirement)).volume

    def disk(self, disk_id: str) -> dict | None:
        return self.cloud.describe_disk(disk_id)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(0).wait()


@pytest.fixture
def driver(tmp_path):
    """``driver(*bugs)``: a fresh driver and fake ECS carrying those bugs."""
    made: list[tuple[EcsServer, Driver]] = []

    def make(*names: str) -> Driver:
        ecs = ecs_server(bugs.of_layer(names, "cloud")).__enter__()
        made.append((ecs, Driver(ecs, tmp_path / f"csi-{len(made)}.sock", bugs.of_layer(names, *bugs.DRIVER_LAYERS))))
        return made[-1][1]
    yield make
    for ecs, drv in made:
        drv.close()
        ecs.__exit__(None, None, None)


def zone_of(volume: csi.Volume) -> dict[str, str]:
    return {k: v for t in volume.accessible_topology for k, v in t.segments.items()}


# ------------------------------------------------------------------ the catalogue itself
def test_every_bug_names_a_layer_an_origin_and_cases_that_exist():
    cases = sorted({case for bug in bugs.CATALOGUE for case in bug.caught_by})
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *(str(SUITES / case) for case in cases)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = {line.rsplit("suites/", 1)[-1].replace("zoneproof/rules/", "../rules/")
                 for line in proc.stdout.splitlines() if "::" in line}
    assert set(cases) <= collected, f"cases named by bugs but not in the suites: {sorted(set(cases) - collected)}"
    for bug in bugs.CATALOGUE:
        assert bug.layer in bugs.LAYERS and bug.effect and bug.origin and bug.caught_by, bug


def test_bug_names_are_checked_and_split():
    assert bugs.parse(["own-zone,delete-keeps-disk", "own-zone"]) == ("own-zone", "delete-keeps-disk")
    assert bugs.from_env({bugs.ENV: ""}) == ()
    with pytest.raises(bugs.BugError, match="unknown bug.*no-such-bug"):
        bugs.parse(["no-such-bug"])


def test_a_bug_is_refused_where_it_does_not_live(tmp_path):
    with pytest.raises(ValueError, match="cross-zone-attach do not live in the driver"):
        build_server(f"unix://{tmp_path}/x.sock", None, zone_policy="topology", bugs=("cross-zone-attach",))
    with pytest.raises(ValueError, match="own-zone do not live in the cloud"):
        EcsConfig(bugs=("own-zone",)).validate()
    with pytest.raises(SpecError, match="own-zone do not live in the cluster"):
        ClusterSpec(bugs=("own-zone",)).validate()


# ------------------------------------------------------------------ controller
def test_own_zone_makes_the_disk_in_the_controllers_zone(driver):
    assert zone_of(driver().create("pvc-1", ZONES[2])) == {labels.DISK_ZONE: ZONES[2]}
    buggy = driver("own-zone")
    volume = buggy.create("pvc-1", ZONES[2])
    assert buggy.disk(volume.volume_id)["ZoneId"] == ZONES[0]


def test_zoneid_overrides_topology_ignores_the_requirement(driver):
    assert zone_of(driver().create("pvc-1", ZONES[2], zoneId=",".join(ZONES)))[labels.DISK_ZONE] == ZONES[2]
    assert zone_of(driver("zoneid-overrides-topology").create("pvc-1", ZONES[2], zoneId=",".join(ZONES))) == {
        labels.DISK_ZONE: ZONES[0]}


@pytest.mark.parametrize(("bug", "expected"), [
    ("no-accessible-topology", {}),
    ("topology-foreign-key", {FOREIGN_ZONE_KEY: ZONES[1]}),
    ("topology-region-only", {labels.REGION: REGION}),
    ("topology-other-zone", {labels.DISK_ZONE: ZONES[2]}),
])
def test_topology_bugs_misstate_the_volumes_topology(driver, bug, expected):
    assert zone_of(driver().create("pvc-1", ZONES[1])) == {labels.DISK_ZONE: ZONES[1]}
    buggy = driver(bug)
    volume = buggy.create("pvc-1", ZONES[1])
    assert zone_of(volume) == expected
    assert buggy.disk(volume.volume_id)["ZoneId"] == ZONES[1]


def test_well_known_key_ignored_reads_the_drivers_key_only(driver):
    def zone(drv: Driver) -> str:
        return drv.disk(drv.create("pvc-1", ZONES[2], key=labels.ZONE).volume_id)["ZoneId"]
    assert zone(driver()) == ZONES[2]
    assert zone(driver("well-known-key-ignored")) == ZONES[0]  # the controller's


def test_multi_zone_request_refused_refuses_a_requisite_of_two_zones(driver):
    two_zones = csi.TopologyRequirement(requisite=[csi.Topology(segments={labels.DISK_ZONE: z}) for z in ZONES[1:]])

    def create(drv: Driver) -> csi.Volume:
        return drv.controller.CreateVolume(csi.CreateVolumeRequest(
            name="pvc-1", volume_capabilities=[WRITER], parameters={"type": "cloud_ssd"},
            accessibility_requirements=two_zones)).volume
    assert zone_of(create(driver()))[labels.DISK_ZONE] in ZONES[1:]
    buggy = driver("multi-zone-request-refused")
    with pytest.raises(grpc.RpcError) as refused:
        create(buggy)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert zone_of(buggy.create("pvc-2", ZONES[2]))[labels.DISK_ZONE] == ZONES[2]  # one zone is served


def test_name_reuse_ignores_topology_hands_back_a_disk_of_another_zone(driver):
    for names, expected in (((), grpc.StatusCode.ALREADY_EXISTS), (("name-reuse-ignores-topology",), None)):
        drv = driver(*names)
        first = drv.create("pvc-1", ZONES[1])
        try:
            again, code = drv.create("pvc-1", ZONES[2]), None
        except grpc.RpcError as err:
            again, code = None, err.code()
        assert code == expected, names
        if again is not None:
            assert again.volume_id == first.volume_id and drv.disk(again.volume_id)["ZoneId"] == ZONES[1]
        assert drv.create("pvc-1", ZONES[1]).volume_id == first.volume_id  # its own zone: the same volume


def test_throttling_rezone_retries_in_another_zone(driver):
    for names, zone in (((), ZONES[1]), (("throttling-rezone",), ZONES[2])):
        drv = driver(*names)
        drv.ecs.faults.add({"kind": "fail_next", "action": "CreateDisk", "count": 1, "code": "Throttling"})
        volume = drv.create("pvc-1", ZONES[1])
        assert drv.disk(volume.volume_id)["ZoneId"] == zone, names
        assert [e["code"] for e in drv.ecs.store.audit() if e["action"] == "CreateDisk"][0] == "Throttling"


def test_no_stock_internal_hides_resource_exhausted(driver):
    for names, code in (((), grpc.StatusCode.RESOURCE_EXHAUSTED), (("no-stock-internal",), grpc.StatusCode.INTERNAL)):
        drv = driver(*names)
        drv.ecs.faults.add({"kind": "no_stock", "zone": ZONES[1]})
        with pytest.raises(grpc.RpcError) as failed:
            drv.create("pvc-1", ZONES[1])
        assert failed.value.code() == code, names


def test_conflicting_zone_fallback_makes_a_disk_outside_the_requirement(driver):
    with pytest.raises(grpc.RpcError) as refused:
        driver().create("pvc-1", ZONES[1], zoneId=ZONES[2])
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ConflictingZone" in refused.value.details()
    buggy = driver("conflicting-zone-fallback")
    assert buggy.disk(buggy.create("pvc-1", ZONES[1], zoneId=ZONES[2]).volume_id)["ZoneId"] == ZONES[2]


def test_delete_keeps_disk_leaves_it_in_the_cloud(driver):
    for names, left in (((), False), (("delete-keeps-disk",), True)):
        drv = driver(*names)
        volume = drv.create("pvc-1", ZONES[1])
        drv.controller.DeleteVolume(csi.DeleteVolumeRequest(volume_id=volume.volume_id))
        assert (drv.disk(volume.volume_id) is not None) == left, names


def test_unpublish_keeps_disk_attached_leaves_it_attached(driver):
    for names, holders in (((), []), (("unpublish-keeps-disk-attached",), ["i-nodeb1"])):
        drv = driver(*names)
        volume = drv.create("pvc-1", ZONES[1])
        drv.controller.ControllerPublishVolume(csi.ControllerPublishVolumeRequest(
            volume_id=volume.volume_id, node_id="i-nodeb1", volume_capability=WRITER))
        drv.controller.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(
            volume_id=volume.volume_id, node_id="i-nodeb1"))
        attached = [a["InstanceId"] for a in drv.disk(volume.volume_id)["Attachments"]["Attachment"]]
        assert attached == holders, names


# ------------------------------------------------------------------ node
def test_node_info_one_zone_reports_the_regions_first_zone(driver):
    def reported(drv: Driver) -> dict[str, str]:
        return dict(drv.node.NodeGetInfo(csi.NodeGetInfoRequest()).accessible_topology.segments)
    assert reported(driver())[labels.DISK_ZONE] == ZONES[1]
    buggy = reported(driver("node-info-one-zone"))
    assert (buggy[labels.DISK_ZONE], buggy[labels.ZONE]) == (ZONES[0], ZONES[1])


def test_node_info_empty_zone_reports_no_zone_under_the_drivers_key(driver):
    reported = dict(driver("node-info-empty-zone").node.NodeGetInfo(csi.NodeGetInfoRequest()).accessible_topology
                    .segments)
    assert (reported[labels.DISK_ZONE], reported[labels.ZONE]) == ("", ZONES[1])


def test_attach_limit_over_reported_reports_more_than_the_instance_holds(driver):
    def limit(drv: Driver) -> int:
        return drv.node.NodeGetInfo(csi.NodeGetInfoRequest()).max_volumes_per_node
    assert limit(driver()) == INSTANCE_TYPE.disk_quantity  # read from the cloud for the instance's type
    assert limit(driver("attach-limit-over-reported")) > INSTANCE_TYPE.disk_quantity


@pytest.mark.parametrize("bugs_on, reported_after", [((), ZONES[2]), (("node-zone-cached",), ZONES[1])],
                         ids=["clean", "node-zone-cached"])
def test_node_zone_cached_reports_the_first_zone_served_at_a_socket(tmp_path, bugs_on, reported_after):
    """A node endpoint served again at the same socket for a node made anew in another zone."""
    with ecs_server() as ecs:
        socket = tmp_path / "node.sock"
        for zone, expected in ((ZONES[1], ZONES[1]), (ZONES[2], reported_after)):
            server = build_server(f"unix://{socket}", cloud_of(ecs), instance_id="i-nodeb1", zone=zone, bugs=bugs_on)
            server.start()
            try:
                with grpc.insecure_channel(f"unix://{socket}") as channel:
                    info = csi_grpc.NodeStub(channel).NodeGetInfo(csi.NodeGetInfoRequest())
            finally:
                server.stop(0).wait()
            assert dict(info.accessible_topology.segments)[labels.DISK_ZONE] == expected


@pytest.mark.parametrize("bugs_on, id_after", [((), "i-nodeb1"), (("node-id-changed-on-restart",), f"{REGION}.i-nodeb1")],
                         ids=["clean", "node-id-changed-on-restart"])
def test_node_id_changed_on_restart_names_the_node_otherwise_once_restarted(tmp_path, bugs_on, id_after):
    """A node endpoint of the same machine stopped and served again at its socket."""
    with ecs_server() as ecs:
        socket = tmp_path / "node.sock"
        for expected in ("i-nodeb1", id_after):
            server = build_server(f"unix://{socket}", cloud_of(ecs), instance_id="i-nodeb1", zone=ZONES[1],
                                  bugs=bugs_on)
            server.start()
            try:
                with grpc.insecure_channel(f"unix://{socket}") as channel:
                    assert csi_grpc.NodeStub(channel).NodeGetInfo(csi.NodeGetInfoRequest()).node_id == expected
            finally:
                server.stop(0).wait()


# ------------------------------------------------------------------ cloud
def test_cross_zone_attach_lets_a_disk_attach_in_another_zone():
    for names in ((), ("cross-zone-attach",)):
        with ecs_server(names) as ecs:
            cloud = cloud_of(ecs)
            disk_id = cloud.call("CreateDisk", RegionId=REGION, ZoneId=ZONES[1], DiskCategory="cloud_ssd",
                                 Size=20)["DiskId"]
            if not names:
                with pytest.raises(CloudError, match="ResourcesNotInSameZone"):
                    cloud.call("AttachDisk", DiskId=disk_id, InstanceId="i-nodea1")
                continue
            cloud.call("AttachDisk", DiskId=disk_id, InstanceId="i-nodea1")
            assert cloud.wait_disk(disk_id, {"In_use"})["Attachments"]["Attachment"][0]["InstanceId"] == "i-nodea1"


def test_multi_attach_without_flag_lets_a_disk_attach_twice():
    for names in ((), ("multi-attach-without-flag",)):
        with ecs_server(names) as ecs:
            cloud = cloud_of(ecs)
            disk_id = cloud.call("CreateDisk", RegionId=REGION, ZoneId=ZONES[0], DiskCategory="cloud_ssd",
                                 Size=20)["DiskId"]
            cloud.call("AttachDisk", DiskId=disk_id, InstanceId="i-nodea1")
            cloud.wait_disk(disk_id, {"In_use"})
            if not names:
                with pytest.raises(CloudError, match="IncorrectDiskStatus"):
                    cloud.call("AttachDisk", DiskId=disk_id, InstanceId="i-nodea2")
                continue
            cloud.call("AttachDisk", DiskId=disk_id, InstanceId="i-nodea2")
            holders = cloud.wait_disk(disk_id, {"In_use"})["Attachments"]["Attachment"]
            assert sorted(a["InstanceId"] for a in holders) == ["i-nodea1", "i-nodea2"]


# ------------------------------------------------------------------ sidecars and cluster
def test_provisioner_without_strict_topology_drops_the_flag(tmp_path):
    provider = LocalProvider(ClusterSpec(name="bugs-flags"), workdir=tmp_path)
    profile = load_profile("reference")
    assert "--strict-topology" in DriverDeployment(provider, profile, bugs=())._sidecar_flags("csi-provisioner")
    flags = DriverDeployment(provider, profile, bugs=("provisioner-without-strict-topology",))._sidecar_flags(
        "csi-provisioner")
    assert "--strict-topology" not in flags
    assert set(flags) == set(profile.run.sidecars["csi-provisioner"]) - {"--strict-topology"}


def test_driver_bugs_need_a_driver_that_reads_them_and_cluster_bugs_the_cluster(tmp_path):
    provider = LocalProvider(ClusterSpec(name="bugs-checks"), workdir=tmp_path)
    alibaba = load_profile("alibaba")
    with pytest.raises(DriverError, match="no bug_switches"):
        DriverDeployment(provider, alibaba, bugs=("own-zone",))._check_bugs()
    DriverDeployment(provider, alibaba, bugs=("cross-zone-attach",))._check_bugs()  # the fake ECS carries it
    with pytest.raises(DriverError, match="zoneproof cluster up --bug scheduler-without-volumezone"):
        DriverDeployment(provider, load_profile("reference"), bugs=("scheduler-without-volumezone",))._check_bugs()


def test_scheduler_without_volumezone_configures_the_scheduler(tmp_path):
    assert scheduler_configuration(()) is None
    config = scheduler_configuration(("scheduler-without-volumezone",))
    assert config["profiles"][0]["plugins"]["filter"]["disabled"] == [{"name": "VolumeZone"}]
    options = kwokctl_config(ClusterSpec(), {b: Path(b) for b in (
        "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd", "kwok")},
        tmp_path / "scheduler.yaml")["options"]
    assert options["kubeSchedulerConfig"] == str(tmp_path / "scheduler.yaml")


# ------------------------------------------------------------------ the kill matrix
def junit(path: Path, cases: str) -> Path:
    path.write_text(f"<testsuites><testsuite>{cases}</testsuite></testsuites>")
    return path


def test_a_case_failing_in_call_and_teardown_counts_by_its_call_and_a_missing_case_did_not_run(tmp_path):
    report = junit(tmp_path / "j.xml", """
        <testcase classname="zoneproof.suites.test_x" name="test_a[p]"><failure message="AssertionError: PV says a&#10;more"/></testcase>
        <testcase classname="zoneproof.suites.test_x" name="test_a[p]"><error message="WaitTimeout: clean-up"/></testcase>
        <testcase classname="zoneproof.suites.test_x" name="test_b"><skipped message="needs 2 zones"/></testcase>
        <testcase classname="zoneproof.suites.test_x" name="test_d"><failure message="cannot heal:&#10;  PV p"/></testcase>""")
    results = results_of(report, ("test_x.py::test_a[p]", "test_x.py::test_b", "test_x.py::test_c", "test_x.py::test_d"))
    assert [(r.outcome, r.first_line) for r in results] == [
        ("failure", "AssertionError: PV says a"), ("skipped", "needs 2 zones"), ("not run", ""),
        ("failure", "cannot heal: PV p")]


def test_the_run_fails_when_a_bug_survives_or_the_clean_run_does_not_pass(tmp_path):
    case = "test_x.py::test_a"
    clean = BugRun("clean", "-", 1, [CaseResult(case, "passed")])
    killed = BugRun("own-zone", "controller", 1, [CaseResult(case, "failure", "AssertionError: x")])
    survived = BugRun("own-zone", "controller", 1, [CaseResult(case, "skipped", "needs 2 zones")])
    assert report([clean, killed], tmp_path / "m.json", 2) == 0
    assert report([clean, survived], tmp_path / "m.json", 2) == 1
    assert report([BugRun("clean", "-", 1, [CaseResult(case, "failure", "x")]), killed], tmp_path / "m.json", 2) == 1
    assert "KILLED" in kill_table([clean, killed]) and "#1 test_x.py::test_a" in kill_table([clean, killed])


def test_the_kill_matrix_page_shows_a_caught_bug_green_and_a_survivor_red(tmp_path):
    case = "test_x.py::test_a"
    clean = BugRun("clean", "-", 1, [CaseResult(case, "passed")])
    killed = BugRun("own-zone", "controller", 1, [CaseResult(case, "failure", "AssertionError: x")])
    survived = BugRun("delete-keeps-disk", "controller", 1, [CaseResult(case, "passed")])
    report([clean, killed, survived], tmp_path / "kill-matrix.json", 2)
    page = (tmp_path / "kill-matrix.html").read_text()
    assert "1 of 2 bugs caught, clean run passed; survived: delete-keeps-disk" in page
    rows = page.split('<tr><th>')[2:]  # the clean run, then the bugs in order
    assert '<td class="passed" title="">passed</td>' in rows[0]
    assert '<td class="passed" title="AssertionError: x">caught</td>' in rows[1]
    assert '<td class="failed" title="">passed</td>' in rows[2]
    assert bugs.BY_NAME["own-zone"].effect.split("'")[0] in page
