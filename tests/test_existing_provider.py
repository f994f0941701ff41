"""A local cluster handed to zoneproof as an existing one, as a user's cluster would be:
started on its own, the driver deployed on its own, and only its kubeconfig and the ECS
endpoint (in the standard environment variables) given. Zones come from the node labels,
power goes through ECS StopInstances/StartInstances, the oracle reads the cloud through
the ECS API, and the suites and the chaos experiments run unchanged."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from zoneproof import labels
from zoneproof.cluster import ExistingProvider
from zoneproof.cluster.base import ClusterError
from zoneproof.fixtures.driver import provide_driver
from zoneproof.profile import PROFILES

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def driver(cluster):
    yield from provide_driver(cluster)


@pytest.fixture
def cloud_env(driver, monkeypatch) -> dict[str, str]:
    env = driver.cloud().env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def existing(cluster, cloud_env) -> ExistingProvider:
    provider = ExistingProvider(cluster.kubeconfig)
    provider.up()
    return provider


def test_zones_and_region_come_from_the_nodes(existing, cluster):
    assert existing.spec.zones == tuple(sorted(cluster.spec.zones))
    assert existing.spec.region == cluster.spec.region
    assert existing.spec.nodes_per_zone == cluster.spec.nodes_per_zone
    existing.down()  # never deletes a cluster zoneproof did not make
    assert existing.is_up()


def test_without_the_cloud_variables_power_is_refused_by_name(cluster, driver, monkeypatch):
    monkeypatch.delenv("ECS_ENDPOINT", raising=False)
    provider = ExistingProvider(cluster.kubeconfig)
    with pytest.raises(ClusterError, match="ECS_ENDPOINT"):
        provider.stop_node(cluster.nodes()[0])


def test_a_power_cut_goes_through_the_ecs_api(existing, cluster, driver):
    name = cluster.nodes(cluster.spec.zones[0])[0]
    instance = cluster.core.read_node(name).metadata.labels[labels.INSTANCE_ID]
    cloud = driver.cloud()
    try:
        existing.stop_node(name)
        assert cloud.stopped([instance]) == [instance]
        cluster.wait_nodes_ready([name], ready=False, timeout=cluster.spec.timings.not_ready_bound + 10)
        assert cluster.core.read_node(name).metadata.labels[labels.POWER] == labels.POWER_OFF
        existing.start_node(name)
        assert cloud.stopped([instance]) == []
        cluster.wait_nodes_ready([name], timeout=60)
    finally:
        if cloud.stopped([instance]):
            existing.start_node(name)
        cluster.wait_nodes_ready(cluster.nodes(), timeout=60)


def test_check_reads_the_cloud_and_refuses_to_pass_on_nothing(cluster, cloud_env, namespace):
    result = subprocess.run([sys.executable, "-m", "zoneproof.cli", "check", "--provider", "existing",
                             "--kubeconfig", str(cluster.kubeconfig), "-n", namespace],
                            env=dict(os.environ, **cloud_env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 pods checked" in result.stdout and "nothing was checked" in result.stderr


def test_the_suites_and_an_experiment_run_against_it(cluster, cloud_env, tmp_path):
    """One placement case and one power-cut experiment, through the pytest plugin, with only
    the kubeconfig and the environment's ECS endpoint."""
    selection = "test_pods_follow_their_disks and static-nodeaffinity-2zones-3replicas or test_experiment and " \
                "partial-zone-loss"
    junit = tmp_path / "junit.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "zoneproof.suites", "-p", "no:cacheprovider",
                          "-p", "no:xdist", "--provider=existing", f"--kubeconfig={cluster.kubeconfig}",
                          "-k", selection, f"--junitxml={junit}", "-q"],
                         env=dict(os.environ, **cloud_env), capture_output=True, text=True, timeout=600)
    tail = run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    assert "2 passed" in run.stdout, tail


def test_bugs_cannot_be_switched_on_in_the_users_driver(cluster, cloud_env):
    run = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "zoneproof.suites", "-p", "no:cacheprovider",
                          "-p", "no:xdist", "--provider=existing", f"--kubeconfig={cluster.kubeconfig}",
                          "-k", "test_pods_follow_their_disks and static-nodeaffinity-2zones-3replicas", "-q"],
                         env=dict(os.environ, **cloud_env, ZONEPROOF_BUGS="own-zone"), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode != 0
    assert "ZONEPROOF_BUGS names own-zone, but the driver of an existing cluster is yours" in run.stderr + run.stdout


def test_disks_of_the_users_serve_static_pvs_where_the_profile_may_not_create_any(cluster, cloud_env, driver,
                                                                                  tmp_path):
    """A profile with ``static_disks.allowed: false`` takes the disks given with
    ``--static-disk``, one per replica in its zone, and leaves them in place afterwards."""
    profile = _no_disk_creation_profile(tmp_path)
    cloud = driver.cloud()
    disks = {zone: [cloud.api.call("CreateDisk", RegionId=cloud.region, ZoneId=zone, DiskCategory="cloud_ssd",
                                   Size=20)["DiskId"] for _ in range(2)] for zone in cluster.spec.zones}
    try:
        run = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "zoneproof.suites", "-p", "no:cacheprovider",
                              "-p", "no:xdist", "--provider=existing", f"--kubeconfig={cluster.kubeconfig}",
                              f"--driver-profile={profile}", "-k", "static-zone-labels-3zones-3replicas", "-q",
                              *(f"--static-disk={zone}={d}" for zone, ids in disks.items() for d in ids)],
                             env=dict(os.environ, **cloud_env), capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-4000:] + run.stderr[-2000:]
        left = {d["DiskId"]: d["Status"] for d in cloud.describe_disks([d for ids in disks.values() for d in ids])}
        assert len(left) == 6 and set(left.values()) == {"Available"}, left
    finally:
        for ids in disks.values():
            for disk_id in ids:
                cloud.api.wait_disk(disk_id, {"Available"})
                cloud.api.call("DeleteDisk", DiskId=disk_id)


def _no_disk_creation_profile(tmp_path) -> str:
    data = yaml.safe_load(PROFILES.joinpath("reference.yaml").read_text())
    data["static_disks"] = {"allowed": False, "via": "user-supplied"}
    data.pop("run")  # the driver running in the existing cluster is the reference one
    profile = tmp_path / "no-disk-creation.yaml"
    profile.write_text(yaml.safe_dump(data))
    return str(profile)


def _pytest(cluster, cloud_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rse",
                           "--provider=existing", f"--kubeconfig={cluster.kubeconfig}", *args],
                          env=dict(os.environ, **cloud_env), capture_output=True, text=True, timeout=300)


def test_a_static_case_without_disks_on_a_real_cloud_is_skipped_not_errored(cluster, cloud_env, driver, tmp_path):
    """The user's cloud (an existing cluster's), a profile that may not create disks, no
    ``--static-disk``: the static case stops after its watch started, and is reported
    skipped with the reason, not as an error of the watch check at teardown."""
    run = _pytest(cluster, cloud_env, "--pyargs", "zoneproof.suites",
                  f"--driver-profile={_no_disk_creation_profile(tmp_path)}",
                  "-k", "test_pods_follow_their_disks and static-zone-labels-3zones-3replicas")
    tail = run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    assert "1 skipped" in run.stdout and "error" not in run.stdout.splitlines()[-1], tail
    assert "has static_disks.allowed: false, and no free disk of yours in" in run.stdout, tail


def test_a_placement_case_that_ran_and_made_nothing_still_fails_its_watch_check(cluster, cloud_env, driver,
                                                                                 tmp_path):
    """The other half of the rule: a skip anywhere in a case waives its watch check, a case
    that ran keeps it, and a watch that saw nothing of what the case makes is an error; a
    case that failed is reported by its failure alone."""
    (tmp_path / "test_watch_rule.py").write_text(
        "import pytest\n\n\n"
        "def test_skips_after_its_watch_started(placement):\n"
        "    placement('topology')\n"
        "    pytest.skip('a capability this driver lacks')\n\n\n"
        "def test_makes_nothing(placement):\n"
        "    placement('topology')\n\n\n"
        "def test_fails_before_making_anything(placement):\n"
        "    placement('topology')\n"
        "    assert False, 'the driver reports a wrong limit'\n")
    run = _pytest(cluster, cloud_env, "-p", "zoneproof.suites.conftest", str(tmp_path / "test_watch_rule.py"))
    tail = run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 1, tail
    assert "1 failed, 1 passed, 1 skipped, 1 error" in run.stdout.splitlines()[-1], tail
    assert "SKIPPED [1] " in run.stdout and "a capability this driver lacks" in run.stdout, tail
    assert "ERROR at teardown of test_makes_nothing" in run.stdout, tail
    assert "the watcher saw no Pod change" in run.stdout, tail
    assert "ERROR at teardown of test_fails_before_making_anything" not in run.stdout, tail
    assert "the driver reports a wrong limit" in run.stdout, tail
