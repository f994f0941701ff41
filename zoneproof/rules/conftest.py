"""The rules' fixtures: one controller of the driver under test (``--driver-profile``,
``--driver-binary``, and ``--kubeconfig`` where its controller reads a cluster) over a
fake ECS of its own, for the whole session; bugs of the catalogue from ZONEPROOF_BUGS; the
volumes each rule makes, removed after it."""

from __future__ import annotations

import pytest

from zoneproof import bugs as bug_catalogue
from zoneproof.cluster.spec import DEFAULT_REGION, DEFAULT_ZONES
from zoneproof.deploy.driver import DriverError
from zoneproof.rules.target import RulesSetupError, rules_target


@pytest.fixture(scope="session")
def target(request, profile, tmp_path_factory):
    opt = request.config.getoption
    zones = tuple(z for z in opt("--zones").split(",") if z) or DEFAULT_ZONES
    if len(zones) < 2:
        raise pytest.UsageError(f"the rules need 2 zones or more; --zones gives {list(zones)}")
    try:
        with rules_target(profile, tmp_path_factory.mktemp("rules"), zones=zones, region=opt("--region") or
                          DEFAULT_REGION, driver_binary=opt("--driver-binary"), kubeconfig=opt("--kubeconfig"),
                          bugs=bug_catalogue.from_env()) as running:
            yield running
    except (RulesSetupError, DriverError, bug_catalogue.BugError) as err:
        raise pytest.UsageError(str(err)) from None


@pytest.fixture
def volumes(target):
    """Volumes a test makes, detached and deleted after it (straight through ECS, so that
    clean-up does not lean on the driver under test)."""
    made: list[str] = []
    yield made
    for volume_id in made:
        disk = target.cloud.describe_disk(volume_id)
        if disk is None:
            continue
        for attachment in disk["Attachments"]["Attachment"]:
            target.cloud.call("DetachDisk", DiskId=volume_id, InstanceId=attachment["InstanceId"])
        target.cloud.wait_disk(volume_id, {"Available"})
        target.cloud.call("DeleteDisk", DiskId=volume_id)
