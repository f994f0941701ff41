"""The fake ECS refuses what ECS refuses: integers that are not plain ASCII digits, page
tokens it never handed out, names, descriptions and tags outside ECS's rules, and tag
indexes that would silently merge."""

from __future__ import annotations

import base64

import pytest

from tests.ecs_clients import ApiError, RpcSdk
from zoneproof.ecs.backend import EcsConfig
from zoneproof.ecs.server import DEFAULT_CREDENTIALS, EcsServer

KEY_ID, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))
REGION, ZONE = "cn-shanghai", "cn-shanghai-b"


@pytest.fixture(scope="module")
def server():
    srv = EcsServer(EcsConfig(region=REGION, zones={ZONE: ("cloud_essd",)})).start()
    yield srv
    srv.stop()


@pytest.fixture
def sdk(server):
    return RpcSdk(server.endpoint, KEY_ID, SECRET, REGION)


def disks(server) -> int:
    with server.store.transaction() as db:
        return db.execute("SELECT count(*) FROM disks").fetchone()[0]


def create(sdk, **params) -> dict:
    return sdk.call("CreateDisk", **{"RegionId": REGION, "ZoneId": ZONE, "DiskCategory": "cloud_essd",
                                     "Size": "20", **params})


def refused(server, sdk, code: str, **params) -> ApiError:
    before = disks(server)
    with pytest.raises(ApiError) as caught:
        create(sdk, **params)
    assert caught.value.code == code, caught.value
    assert disks(server) == before, "a refused CreateDisk must not create a disk"
    return caught.value


@pytest.mark.parametrize("size", ["2_0", "+20", " 20 ", "\u0662\u0660", "\uff12\uff10", "20.0", "0x14", "-20",
                                  "9" * 5000])
def test_integers_are_ascii_digits_only(server, sdk, size):
    error = refused(server, sdk, "InvalidParameter", Size=size)
    assert "Size" in error.message


def test_a_plain_integer_is_accepted(sdk):
    assert create(sdk, Size="20")["DiskId"]


def test_a_negative_or_foreign_next_token_is_refused(server, sdk):
    for n in range(3):
        create(sdk, DiskName=f"page{n}")
    first = sdk.call("DescribeDisks", RegionId=REGION, MaxResults=2)
    assert len(first["Disks"]["Disk"]) == 2 and first["NextToken"]
    second = sdk.call("DescribeDisks", RegionId=REGION, MaxResults=2, NextToken=first["NextToken"])
    assert second["Disks"]["Disk"] and first["Disks"]["Disk"][0] not in second["Disks"]["Disk"]
    for offset in ("o:-1", "o:-100", "o:+1", "o:99999", "-1", "o:\u0661"):
        token = base64.urlsafe_b64encode(offset.encode()).decode()
        with pytest.raises(ApiError) as caught:
            sdk.call("DescribeDisks", RegionId=REGION, MaxResults=2, NextToken=token)
        assert caught.value.code == "InvalidParameter", offset


@pytest.mark.parametrize("name", ["x" * 129, "a", "1disk", "http://disk", "https://disk", "disk\x00name",
                                  "disk\x1bname", "disk name", "_disk", "a" * 10_000])
def test_disk_names_follow_ecs_rules(server, sdk, name):
    refused(server, sdk, "InvalidDiskName.Malformed", DiskName=name)


@pytest.mark.parametrize("name", ["pvc-1f0e", "ab", "data.disk:1_x-y", "数据盘", "a" * 128])
def test_good_disk_names_are_accepted(sdk, name):
    assert create(sdk, DiskName=name)["DiskId"]


@pytest.mark.parametrize("description", ["x", "x" * 257, "http://example", "https://example", "bad\x00text",
                                         "d" * 10_000])
def test_descriptions_follow_ecs_rules(server, sdk, description):
    refused(server, sdk, "InvalidDescription.Malformed", Description=description)


@pytest.mark.parametrize("key,code", [("k" * 129, "InvalidTagKey.Malformed"), ("k" * 10_000, "InvalidTagKey.Malformed"),
                                      ("aliyun-owned", "InvalidTagKey.Malformed"),
                                      ("acs:x", "InvalidTagKey.Malformed"),
                                      ("see http://x", "InvalidTagKey.Malformed"),
                                      ("key\x00", "InvalidTagKey.Malformed")])
def test_tag_keys_follow_ecs_rules(server, sdk, key, code):
    refused(server, sdk, code, Tag=[{"Key": key, "Value": "v"}])


@pytest.mark.parametrize("value", ["v" * 129, "acs:v", "https://x", "v\x1b"])
def test_tag_values_follow_ecs_rules(server, sdk, value):
    refused(server, sdk, "InvalidTagValue.Malformed", Tag=[{"Key": "k", "Value": value}])


def test_real_driver_tags_are_accepted(sdk):
    tags = [{"Key": "k8s.aliyun.com", "Value": "true"}, {"Key": "createdby", "Value": "alibabacloud-csi-plugin"},
            {"Key": "csi.alibabacloud.com/volume-name", "Value": "pvc-" + "f" * 36}]
    assert create(sdk, Tag=tags)["DiskId"]


def test_tag_indexes_with_leading_zeros_do_not_merge(server, sdk):
    refused(server, sdk, "InvalidParameter", **{"Tag.01.Key": "a", "Tag.1.Key": "b"})
    refused(server, sdk, "InvalidParameter", **{"Tag.01.Key": "a"})
