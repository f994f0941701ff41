"""The cloud is reached only through the ECS API: from the environment variables the
Alibaba plugin reads, with what is missing named; ids batched as ECS takes them."""

from __future__ import annotations

import pytest

from zoneproof.cloud import BATCH, CloudAccess, CloudConfigError
from zoneproof.ecs.backend import EcsConfig
from zoneproof.ecs.server import EcsServer

from tests.ecs_clients import register_instances

GOOD = {"ECS_ENDPOINT": "127.0.0.1:1", "ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s",
        "REGION_ID": "cn-x"}


def test_from_env_takes_the_plugins_variables():
    access = CloudAccess.from_env(environ={**GOOD, "ALICLOUD_CLIENT_SCHEME": "HTTP"})
    assert (access.endpoint, access.region, access.protocol) == ("127.0.0.1:1", "cn-x", "http")
    assert CloudAccess.from_env(environ=GOOD).protocol == "https"  # the plugin's default too
    assert CloudAccess.from_env("cn-y", environ={k: v for k, v in GOOD.items() if k != "REGION_ID"}).region == "cn-y"


@pytest.mark.parametrize("missing", ["ECS_ENDPOINT", "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                                     "REGION_ID"])
def test_what_is_missing_is_named(missing):
    with pytest.raises(CloudConfigError, match=missing):
        CloudAccess.from_env(environ={k: v for k, v in GOOD.items() if k != missing})


def test_a_bad_scheme_is_named():
    with pytest.raises(CloudConfigError, match="ALICLOUD_CLIENT_SCHEME must be http or https, not 'ftp'"):
        CloudAccess.from_env(environ={**GOOD, "ALICLOUD_CLIENT_SCHEME": "ftp"})


@pytest.fixture
def fake():
    config = EcsConfig(region="cn-beijing", zones={"cn-beijing-a": ("cloud_ssd",), "cn-beijing-b": ("cloud_ssd",)})
    with EcsServer(config.validate()) as server:
        yield CloudAccess.fake(server.endpoint, "cn-beijing"), server


def test_reads_and_power_through_the_api_in_batches(fake):
    access, server = fake
    instances = [f"i-{n:03d}" for n in range(BATCH + 5)]  # more than one batch
    register_instances(server, {instance: "cn-beijing-a" if n % 2 else "cn-beijing-b"
                                for n, instance in enumerate(instances)})
    disks = [access.api.call("CreateDisk", RegionId="cn-beijing", ZoneId="cn-beijing-a", DiskCategory="cloud_ssd",
                             Size=20)["DiskId"] for _ in range(3)]
    state = access.state(disks + ["d-unknown"], instances)
    assert sorted(d["DiskId"] for d in state["disks"]) == sorted(disks)
    assert len(state["instances"]) == len(instances)
    access.stop_instances(instances)
    assert access.stopped(instances) == sorted(instances)
    access.start_instances(instances[:2])
    assert access.stopped(instances) == sorted(instances[2:])
    assert access.admin is not None  # the fake's admin API answers at the same endpoint
