"""What the placement suites stand on: the driver deployment for a zone policy, the
driver profile, and a placement environment per test that deploys the article's objects
and removes them again, disks included."""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field

import pytest
from kubernetes import client

from zoneproof import workloads
from zoneproof.csi.cloud import EcsCloud, EcsSettings
from zoneproof.csi.deploy import LocalDriver
from zoneproof.ecs.admin import EcsAdmin
from zoneproof.ecs.server import DEFAULT_CREDENTIALS
from zoneproof.oracle import Verdict, check, take_snapshot
from zoneproof.profile import DriverProfile, load_profile
from zoneproof.watcher import Watcher, node_zones, transient_violations

log = logging.getLogger(__name__)


STARTED = pytest.StashKey[float]()


def pytest_sessionstart(session):
    session.config.stash[STARTED] = time.monotonic()


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


def pytest_addoption(parser):
    group = parser.getgroup("zoneproof", "zoneproof cluster")
    group.addoption("--driver-profile", default="reference", help="driver profile name or file")
    group.addoption("--seed", type=int, default=None, help="seed of every random choice (default: random)")


@pytest.fixture(scope="session")
def seed(request) -> int:
    value = request.config.getoption("--seed")
    value = value if value is not None else random.SystemRandom().randrange(1 << 31)
    log.info("random seed %d (rerun with --seed %d)", value, value)
    return value


@pytest.fixture(scope="session")
def profile(request) -> DriverProfile:
    return load_profile(request.config.getoption("--driver-profile"))


class Deployments:
    """The driver deployment tests run against. One that is already running with the zone
    policy a test needs is used as it is (``zoneproof e2e`` deploys one for its parallel
    phase); otherwise this session deploys its own, redeploying when a test needs another
    policy, which only a serial run may do."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.current: LocalDriver | None = None
        self.owned = False

    def get(self, policy: str) -> LocalDriver:
        if self.current and self.current.zone_policy == policy:
            return self.current
        running = LocalDriver(self.cluster).running_policy()
        if running == policy:
            self.stop()
            self.current, self.owned = LocalDriver(self.cluster, zone_policy=policy), False
            return self.current
        if os.environ.get("PYTEST_XDIST_WORKER"):
            pytest.fail(f"this test needs a driver with zone policy {policy!r}, but the deployment shared by "
                        f"parallel workers runs {running!r}; tests that switch policies must be marked serial")
        self.stop()
        deployment = LocalDriver(self.cluster, zone_policy=policy)
        if deployment.is_up():
            deployment.down()
        deployment.up()
        self.current, self.owned = deployment, True
        return deployment

    def stop(self) -> None:
        if self.current and self.owned:
            self.current.down()
        self.current, self.owned = None, False


@pytest.fixture(scope="session")
def deployments(cluster, profile):
    if profile.deployment != "local":
        pytest.skip(f"profile {profile.name!r} is deployed externally; these suites deploy the driver locally "
                    "(the kind and existing providers are not built yet)")
    holder = Deployments(cluster)
    yield holder
    holder.stop()


@dataclass
class PlacementEnv:
    cluster: object
    namespace: str
    driver: LocalDriver
    profile: DriverProfile
    storage_classes: list[str] = field(default_factory=list)
    static_pvs: list[str] = field(default_factory=list)
    static_disks: list[str] = field(default_factory=list)
    watcher: Watcher | None = None

    @property
    def suffix(self) -> str:
        """The namespace's random tail: keeps cluster-wide names (PVs, StorageClasses) of
        concurrent tests apart while staying short enough for labels."""
        return self.namespace.rsplit("-", 1)[-1]

    @property
    def ecs(self) -> EcsAdmin:
        return EcsAdmin(self.driver.ecs_endpoint)

    def cloud(self) -> EcsCloud:
        key_id, secret = next(iter(DEFAULT_CREDENTIALS.items()))
        return EcsCloud(EcsSettings(self.driver.ecs_endpoint, key_id, secret, self.cluster.spec.region))

    def disks_seen(self, history) -> set[str]:
        """Disks of this test: its static disks and those behind PVs claimed from its namespace
        (other tests may share the fake ECS at the same time)."""
        disks = set(self.static_disks)
        for change in history.changes:
            spec = change.obj.get("spec") or {}
            if change.kind == "PersistentVolume" and (spec.get("claimRef") or {}).get("namespace") == self.namespace:
                disks.add((spec.get("csi") or {}).get("volumeHandle", ""))
        return disks

    def verdict(self) -> Verdict:
        return check(take_snapshot(self.cluster.api_client, self.ecs.state(), self.namespace),
                     driver=self.profile.driver)

    def clean_up(self) -> None:
        """Remove what the test made, in the order that lets every disk detach and go."""
        workloads.remove_workload(self.cluster.api_client, self.namespace, static_pvs=tuple(self.static_pvs))
        cloud = self.cloud()
        for disk_id in self.static_disks:
            cloud.call("DeleteDisk", DiskId=disk_id)
        for name in self.storage_classes:
            client.StorageV1Api(self.cluster.api_client).delete_storage_class(name)


@pytest.fixture
def placement(cluster, namespace, profile, deployments):
    """A factory: ``placement(policy)`` deploys the driver with that zone policy (if it is
    not already) and returns the test's environment; clean-up runs whatever happened."""
    envs: list[PlacementEnv] = []

    def make(policy: str = "topology") -> PlacementEnv:
        env = PlacementEnv(cluster, namespace, deployments.get(policy), profile)
        env.watcher = Watcher(cluster.api_client, namespace, env.ecs).start()
        envs.append(env)
        return env

    yield make
    transient = []
    for env in envs:
        history = env.watcher.stop()
        transient += transient_violations(history, node_zones(cluster.api_client),
                                          disks=env.disks_seen(history))
        log.info("watched %d changes and %d ECS calls", len(history.changes), len(history.audit))
        env.clean_up()
    # Checked after the test's own verdicts: a violation that came and went still fails it.
    assert not transient, "transient placement violations:\n" + "\n".join(transient)
