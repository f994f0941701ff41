"""What the placement suites stand on: a placement environment per test that reaches the
driver under test and the cloud, deploys the article's objects, takes disks for static
PVs as the profile allows, and removes everything again, disks included."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import pytest
from kubernetes import client

from zoneproof import data, labels, results, workloads
from zoneproof.cloud import CloudAccess, CloudError
from zoneproof.data import DataLedger
from zoneproof.obstacles import final_refusals, lasting_refusals
from zoneproof.oracle import LastingViolation, Verdict, check, raise_lasting, take_snapshot
from zoneproof.profile import DriverProfile
from zoneproof.waiting import wait_for
from zoneproof.watcher import Watcher, node_zones, transient_violations

log = logging.getLogger(__name__)

STARTED = pytest.StashKey[float]()
PHASE_REPORTS = pytest.StashKey[dict]()  # a test's setup and call reports, read by its fixtures' teardown
# Codes with which ECS refuses a category a zone does not sell: the next category is tried,
# as drivers do.
CATEGORY_REFUSALS = ("InvalidDataDiskCategory", "InvalidDiskCategory")


def pytest_configure(config):
    # Not pytest_sessionstart: found by import name (--pyargs), this conftest loads after it.
    config.stash[STARTED] = time.monotonic()
    config.addinivalue_line("markers", "placement_matrix(scheme, zones, replicas): the cell of the placement "
                                       "matrix a case fills, tagged for the report")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Before the fixtures: a case skipped in them still has its cell in the matrix.
    cell = item.get_closest_marker("placement_matrix")
    if cell is not None:
        results.tag_case(f"{item.path.name}::{item.name}", matrix=cell.kwargs)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


def failed(item: pytest.Item) -> bool:
    """Whether the test's body failed."""
    report = item.stash.get(PHASE_REPORTS, {}).get("call")
    return report is not None and report.failed


def skip_reason(item: pytest.Item) -> str | None:
    """Why the test was skipped, in its setup or its body; None if it ran (an expected
    failure is not a skip)."""
    for report in item.stash.get(PHASE_REPORTS, {}).values():
        if report.skipped and not hasattr(report, "wasxfail"):
            return str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from zoneproof import tally

    if os.environ.get("ZONEPROOF_TALLY_FILE"):
        return  # `zoneproof e2e` sums its phases and workers into one summary
    stats = terminalreporter.stats
    scenarios = sum(len(stats.get(k, [])) for k in ("passed", "failed", "error"))
    elapsed = time.monotonic() - config.stash.get(STARTED, time.monotonic())
    terminalreporter.section("zoneproof placement summary")
    terminalreporter.line(f"scenarios {scenarios} ({len(stats.get('passed', []))} passed, "
                          f"{len(stats.get('failed', [])) + len(stats.get('error', []))} failed), "
                          f"placement verdicts {tally.counts['verdicts']}, pods checked {tally.counts['pods checked']}, "
                          f"violations {tally.counts['violations']}, time {elapsed:.0f}s")


@pytest.fixture(scope="session")
def user_disks(request, cluster) -> dict[str, list[str]]:
    """Disks the user gave for static PVs (``--static-disk ZONE=ID``), by zone. Parallel
    workers split them, so that no disk serves two tests at once."""
    by_zone: dict[str, list[str]] = {}
    for value in request.config.getoption("--static-disk"):
        zone, sep, disk_id = value.partition("=")
        if not sep or not disk_id or zone not in cluster.spec.zones:
            raise pytest.UsageError(f"--static-disk {value!r}: write ZONE=DISK_ID with ZONE one of "
                                    f"{', '.join(cluster.spec.zones)}")
        by_zone.setdefault(zone, []).append(disk_id)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    return {zone: ids[index::count] for zone, ids in by_zone.items()}


@dataclass
class PlacementEnv:
    cluster: object
    namespace: str
    driver: object  # a DriverDeployment or, on an existing cluster, an ExternalDriver
    profile: DriverProfile
    user_disks: dict[str, list[str]]
    storage_classes: list[str] = field(default_factory=list)
    static_pvs: list[str] = field(default_factory=list)
    created_disks: list[str] = field(default_factory=list)  # static disks this test made, deleted after it
    borrowed_disks: list[str] = field(default_factory=list)  # the user's, left in place
    watcher: Watcher | None = None
    watched_kinds: tuple[str, ...] = ("Pod",)  # kinds the test makes: its watch must see them change
    # Disks a test attaches through the ECS API on purpose, to probe the cloud's own rules:
    # their refused attaches are the test's subject, not violations of the driver.
    cloud_probes: set[str] = field(default_factory=set)
    ledger: DataLedger = field(default_factory=DataLedger)

    def runnable(self, obj: dict) -> dict:
        """A workload as this cluster runs it: on nodes with kubelets, containers that stamp
        their volume (zoneproof.data); elsewhere as written (no container runs)."""
        return data.for_cluster(self.cluster, obj)

    def check_data(self, expected: int) -> None:
        """On nodes with kubelets, every volume must still hold what its pod first wrote."""
        if self.cluster.capabilities.runs_kubelets:
            self.ledger.check(self.cluster.core, self.namespace, expected=expected)

    @property
    def suffix(self) -> str:
        """The namespace's random tail: keeps cluster-wide names (PVs, StorageClasses) of
        concurrent tests apart while staying short enough for labels."""
        return self.namespace.rsplit("-", 1)[-1]

    @property
    def cloud(self) -> CloudAccess:
        return self.driver.cloud()

    def static_disk(self, zone: str, name: str) -> str:
        """A disk in ``zone`` for a static PV: created through the ECS API in the first of
        the profile's categories the zone sells, or, where the profile may not create
        disks in the cloud under test (a real one: on the fake ECS zoneproof started, a disk
        costs nothing), one the user gave; skips the test naming what is missing."""
        if not self.profile.static_disks.allowed and not self.driver.cloud_is_ours:
            free = [d for d in self.user_disks.get(zone, []) if d not in self.borrowed_disks]
            if not free:
                pytest.skip(f"profile {self.profile.name!r} has static_disks.allowed: false, and no free disk of "
                            f"yours in {zone} (give them with --static-disk {zone}=DISK_ID)")
            self.borrowed_disks.append(free[0])
            return free[0]
        refused = []
        for category in self.profile.disk_categories:
            try:
                disk_id = self.cloud.api.call("CreateDisk", RegionId=self.cloud.region, ZoneId=zone,
                                              DiskCategory=category, Size=self.profile.min_size_gib,
                                              DiskName=name)["DiskId"]
            except CloudError as err:
                if not err.code.startswith(CATEGORY_REFUSALS):
                    raise
                refused.append(f"{category}: {err.code}")
                continue
            self.created_disks.append(disk_id)
            return disk_id
        raise AssertionError(f"no disk category of profile {self.profile.name!r} is sold in {zone}: "
                             + "; ".join(refused))

    def create_static_pvs(self, pvs: list[dict]) -> None:
        """Create static PVs, ready for their claims (see :func:`workloads.create_static_pvs`)."""
        self.static_pvs += [pv["metadata"]["name"] for pv in pvs]
        workloads.create_static_pvs(self.cluster.core, pvs, wake=self.watcher)

    def disks_seen(self, history) -> set[str]:
        """Disks of this test: its static disks and those behind PVs claimed from its namespace
        (other tests may share the cloud at the same time)."""
        disks = set(self.created_disks) | set(self.borrowed_disks)
        for change in history.changes:
            spec = change.obj.get("spec") or {}
            if change.kind == "PersistentVolume" and (spec.get("claimRef") or {}).get("namespace") == self.namespace:
                disks.add((spec.get("csi") or {}).get("volumeHandle", ""))
        return disks - self.cloud_probes

    def verdict(self) -> Verdict:
        return check(take_snapshot(self.cluster.api_client, self.cloud, self.namespace, driver=self.profile.driver),
                     driver=self.profile.driver)

    def raise_lasting(self) -> None:
        """End a wait at once on what cannot heal: the oracle's lasting violations, and claims
        refused for good although their StorageClass allows a zone they may go to."""
        raise_lasting(self.verdict())
        refused = final_refusals(self.watcher.changes_so_far(), self.namespace)
        if not refused:
            return
        api = self.cluster.api_client
        classes = {sc.metadata.name: api.sanitize_for_serialization(sc)
                   for sc in client.StorageV1Api(api).list_storage_class().items}
        found = lasting_refusals(refused, classes, node_zones(api), (*self.profile.zone_keys, *labels.NODE_ZONE_KEYS),
                                 self.profile.zone_parameters, self.profile.driver)
        if found:
            raise LastingViolation("claims refused for good:\n" + "\n".join(found))

    def wait_for(self, check, **kwargs):
        """:func:`zoneproof.waiting.wait_for`, looking again whenever the test's watcher
        sees a change and saying on time-out what the watcher saw stand in the way."""
        return wait_for(check, wake=self.watcher, explain=self.watcher.obstacles, **kwargs)

    def clean_up(self) -> None:
        """Remove what the test made, in the order that lets every disk detach and go."""
        workloads.remove_workload(self.cluster.api_client, self.namespace, static_pvs=tuple(self.static_pvs),
                                  wake=self.watcher, explain=self.watcher.obstacles)
        for disk_id in self.created_disks:
            self.cloud.api.call("DeleteDisk", DiskId=disk_id)
        for name in self.storage_classes:
            client.StorageV1Api(self.cluster.api_client).delete_storage_class(name)


@pytest.fixture
def placement(request, cluster, namespace, profile, deployments, user_disks):
    """A factory: ``placement(policy)`` deploys the driver with that zone policy (if it is
    not already) and returns the test's environment; clean-up runs whatever happened."""
    envs: list[PlacementEnv] = []
    marker = request.node.get_closest_marker("zone_policy")

    def make(policy: str = "topology", *, watch_nodes: bool = False) -> PlacementEnv:
        # The marker orders the session (zoneproof.pytest_plugin); it must say what the test does.
        if policy != (marker.args[0] if marker else "topology"):
            pytest.fail(f"this test needs zone policy {policy!r}; mark it @pytest.mark.zone_policy({policy!r}) "
                        "so that its session groups it with the other tests of that policy")
        env = PlacementEnv(cluster, namespace, deployments.get(policy), profile, user_disks)
        env.watcher = Watcher(cluster.api_client, namespace, env.cloud.admin, nodes=watch_nodes).start()
        envs.append(env)
        return env

    yield make
    transient, unwatched = [], []
    for env in envs:
        # Cleaned up while still watched: its waits wake on the watcher, and a violation
        # on the way out is one all the same.
        try:
            env.clean_up()
        finally:
            history = env.watcher.stop()
        unwatched += history.problems(env.watched_kinds)
        transient += transient_violations(history, node_zones(cluster.api_client),
                                          disks=env.disks_seen(history))
        log.info("watched %d changes and %d ECS calls%s", len(history.changes), len(history.audit),
                 "" if env.cloud.admin else " (no ECS audit: the cloud is not the fake)")
        for gap in history.commentary_gaps:
            log.warning("what explains this test may be incomplete: %s", gap)
    # Checked after the test's own verdicts: a violation that came and went still fails it,
    # and so does a history that cannot vouch for what happened.
    assert not transient, "transient placement violations:\n" + "\n".join(transient)
    # A test skipped for a capability stopped before it made what its watch expects to see:
    # it is reported skipped, with its reason, not as an error of this check; a test that
    # failed is reported by its own failure, which a second error here would only bury.
    skipped = skip_reason(request.node)
    if skipped is not None or failed(request.node):
        if unwatched:
            log.info("%s: not asking its watch for changes", f"skipped ({skipped})" if skipped else "failed")
        return
    assert not unwatched, "the watch of this test is incomplete:\n" + "\n".join(unwatched)
